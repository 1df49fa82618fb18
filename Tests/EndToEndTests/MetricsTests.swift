import Foundation
import OTAAgent
import Testing

/// `--metrics-port`: Prometheus text on loopback, scraped over real HTTP while devices are
/// updated, refused and cut off; `/healthz` and `/readyz`; clients that misbehave.
@Suite("Metrics endpoint")
struct MetricsTests {
    static let backendAsksForProof = AgentVersion.text.contains("(openssl:")

    static func start(_ settings: [String: String] = [:]) async throws -> (Testbed, UInt16) {
        let testbed = try await Testbed.start(settings: ["OTA_MODE": "serve", "OTA_METRICS_PORT": "0"]
            .merging(settings) { _, new in new })
        do {
            return (testbed, try MetricsClient.port(of: testbed.agent))
        } catch {
            testbed.stop()
            throw error
        }
    }

    @Test func anUpdateARefusalAndAFailureEachMoveTheirCounters() async throws {
        let image = try await ServedImage.sample()
        let (testbed, port) = try await Self.start()
        defer { testbed.stop() }
        let agent = testbed.agent

        let before = try await MetricsClient.scrape(port: port)
        #expect(before.value("ota_agent_devices_updated_total", ["proof": "no"]) == 0, "\(before)")
        #expect(before.value("ota_agent_bytes_sent_total") == 0, "\(before)")
        #expect(before.value("ota_agent_accepting") == 1, "\(before)")
        #expect(before.text.contains("# TYPE ota_agent_dice_auth_duration_seconds histogram"), "\(before)")

        // An update: counted with its bytes, its path, its verdict's latency and its duration.
        let updated = try await DeviceSimulator.run(port: agent.port)
        expectUpdated(updated.onlyDevice(), with: image, "\(updated.transcript)\n\(agent.transcript)")
        let afterUpdate = try await MetricsClient.waitFor(port: port) {
            $0.value("ota_agent_devices_updated_total", ["proof": "no"]) == 1
        }
        #expect(afterUpdate.value("ota_agent_devices_updated_total", ["proof": "no"]) == 1, "\(afterUpdate)")
        #expect(afterUpdate.value("ota_agent_bytes_sent_total") == Double(image.size), "\(afterUpdate)")
        let paths = ["ktls-sendfile", "pread"].compactMap {
            afterUpdate.value("ota_agent_transfers_total", ["path": $0])
        }
        #expect(paths.reduce(0, +) == 1, "\(afterUpdate)")
        let path = try #require(agent.log("session-end").first?["path"], "\(agent.transcript)")
        #expect(afterUpdate.value("ota_agent_transfers_total", ["path": path]) == 1, "\(afterUpdate)")
        #expect(afterUpdate.value("ota_agent_dice_auth_duration_seconds_count", ["verdict": "verified"]) == 1)
        #expect(afterUpdate.value("ota_agent_dice_auth_duration_seconds_bucket",
                                  ["verdict": "verified", "le": "+Inf"]) == 1, "\(afterUpdate)")
        #expect(afterUpdate.value("ota_agent_transfer_duration_seconds_count", ["outcome": "updated"]) == 1)
        #expect(afterUpdate.value("ota_agent_transfers_in_flight") == 0, "\(afterUpdate)")
        #expect(afterUpdate.value("ota_agent_sessions_in_flight") == 0, "\(afterUpdate)")
        // The process's own figures: an update (a handshake, a signature) costs CPU time, to
        // the microsecond; a Swift process with TLS loaded holds megabytes.
        let cpuBefore = try #require(before.value("process_cpu_seconds_total"), "\(before)")
        let cpuAfter = try #require(afterUpdate.value("process_cpu_seconds_total"), "\(afterUpdate)")
        #expect(cpuBefore > 0 && cpuAfter > cpuBefore, "\(cpuBefore) then \(cpuAfter)")
        #expect(afterUpdate.text.contains("# TYPE process_cpu_seconds_total counter"), "\(afterUpdate)")
        #expect((afterUpdate.value("process_resident_memory_bytes") ?? 0) > 4_000_000, "\(afterUpdate)")

        // A refusal: Dice-Auth rejects the rogue device, which gets nothing.
        let rogue = try await DeviceSimulator.run(port: agent.port, attestation: "rogue-device.der")
        expectRefused(rogue.onlyDevice(), "\(rogue.transcript)\n\(agent.transcript)")
        let afterRefusal = try await MetricsClient.waitFor(port: port) {
            $0.value("ota_agent_devices_refused_total", ["phase": "attestation", "proof": "no"]) == 1
        }
        #expect(afterRefusal.value("ota_agent_devices_refused_total",
                                   ["phase": "attestation", "proof": "no"]) == 1, "\(afterRefusal)")
        #expect(afterRefusal.value("ota_agent_dice_auth_duration_seconds_count", ["verdict": "rejected"]) == 1)
        #expect(afterRefusal.value("ota_agent_bytes_sent_total") == Double(image.size), "\(afterRefusal)")

        // A failure: the device resets the connection partway through the image.
        let cut = try await DeviceSimulator.run(port: agent.port,
                                                options: ["--hang-up", "reset", "--hang-up-after", "4096"])
        #expect(cut.onlyDevice()?.outcome == "hung-up", "\(cut.transcript)")
        // On loopback the whole image may already sit in the socket buffers when the reset
        // comes: the agent then learns of it while waiting for the device's close.
        let failedPhase = try #require(await agent.waitForLog("session-end", number: 3)?["phase"])
        #expect(failedPhase == "transfer" || failedPhase == "close", "\(agent.transcript)")
        let afterFailure = try await MetricsClient.waitFor(port: port) {
            $0.value("ota_agent_devices_failed_total", ["phase": failedPhase]) == 1
        }
        #expect(afterFailure.value("ota_agent_devices_failed_total", ["phase": failedPhase]) == 1,
                "\(afterFailure)\n\(agent.transcript)")
        #expect(afterFailure.value("ota_agent_transfer_duration_seconds_count", ["outcome": "failed"]) == 1)
        #expect(afterFailure.value("ota_agent_devices_updated_total", ["proof": "no"]) == 1)
        #expect(afterFailure.value("ota_agent_transfers_in_flight") == 0, "\(afterFailure)")
        let sent = try #require(afterFailure.value("ota_agent_bytes_sent_total"))
        #expect(sent > Double(image.size) && sent <= Double(2 * image.size), "\(afterFailure)")

        agent.child.send(SIGTERM)
        #expect(await agent.child.waitForExit(within: .seconds(10)) == .exited(0), "\(agent.transcript)")
    }

    @Test func aDeviceProvingItsKeyIsCountedUnderProofYes() async throws {
        let image = try await ServedImage.sample()
        let (testbed, port) = try await Self.start()
        defer { testbed.stop() }
        let run = try await DeviceSimulator.run(
            port: testbed.agent.port, options: ["--proof", "--key", Fixtures.certificate("device.key").path])
        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(testbed.agent.transcript)")
        // The mbedTLS build never asks for the proof: the same device counts as a legacy one there.
        let proof = Self.backendAsksForProof ? "yes" : "no"
        let sample = try await MetricsClient.waitFor(port: port) {
            $0.value("ota_agent_devices_updated_total", ["proof": proof]) == 1
        }
        #expect(sample.value("ota_agent_devices_updated_total", ["proof": proof]) == 1, "\(sample)")
        #expect(sample.value("ota_agent_devices_updated_total", ["proof": proof == "yes" ? "no" : "yes"]) == 0)
    }

    @Test func healthzAndReadyzAreOkWhileAcceptingAndOtherRequestsGetTheirStatus() async throws {
        let (testbed, port) = try await Self.start()
        defer { testbed.stop() }

        let health = try await MetricsClient.get(port: port, "/healthz")
        #expect(health.status == 200 && health.body == "ok\n", "\(health)")
        let ready = try await MetricsClient.get(port: port, "/readyz")
        #expect(ready.status == 200 && ready.body == "ok\n", "\(ready)")
        let metrics = try await MetricsClient.get(port: port, "/metrics?name=ota_agent_accepting")
        #expect(metrics.status == 200, "\(metrics)")
        #expect(metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8", "\(metrics)")
        #expect(metrics.headers["content-length"] == String(metrics.body.utf8.count), "\(metrics)")
        #expect(metrics.body.contains("ota_agent_build_info{version=\""), "\(metrics)")

        let missing = try await MetricsClient.get(port: port, "/")
        #expect(missing.status == 404, "\(missing)")
        let elsewhere = try await MetricsClient.get(port: port, "/metricsx")
        #expect(elsewhere.status == 404, "\(elsewhere)")
        let post = try await MetricsClient.raw(port: port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        #expect(post.status == 405 && post.headers["allow"] == "GET, HEAD", "\(post)")
        let garbage = try await MetricsClient.raw(port: port, "\u{16}\u{03}\u{01} hello\r\n\r\n")
        #expect(garbage.status == 400, "\(garbage)")
        let http09 = try await MetricsClient.raw(port: port, "GET /metrics\n\n")
        #expect(http09.status == 400, "\(http09)")

        // Bytes that cannot begin an HTTP/1.x request, with no empty line ever coming (a TLS
        // ClientHello's start, a lone HTTP/0.9 line): 400 at once, not a reset at the 5 s deadline.
        let clientHello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x9a, 0xe1]
        let tls = HTTPAnswer(try await RawClient.exchange(port: port, sending: clientHello, halfClose: false,
                                                          within: .seconds(5)))
        #expect(tls.status == 400 && tls.exchange.elapsed < .seconds(2), "\(tls)")
        let lone = try await MetricsClient.raw(port: port, "GET /metrics\r\n")
        #expect(lone.status == 400 && lone.exchange.elapsed < .seconds(2), "\(lone)")
    }

    /// Probes and monitors that ask with HEAD get GET's status and headers, without the body.
    @Test func headIsAnsweredLikeGetWithoutABody() async throws {
        let (testbed, port) = try await Self.start()
        defer { testbed.stop() }

        for path in ["/healthz", "/readyz"] {
            let get = try await MetricsClient.get(port: port, path)
            let head = try await MetricsClient.raw(port: port, "HEAD \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            #expect(head.status == 200 && head.body.isEmpty && head.exchange.received.count > 0, "\(head)")
            #expect(head.headers == get.headers, "HEAD \(head)\nGET \(get)")
        }
        // The metrics' text may change between two requests; its length is checked against
        // what the one HEAD answer says about itself.
        let metrics = try await MetricsClient.raw(port: port, "HEAD /metrics HTTP/1.1\r\n\r\n")
        #expect(metrics.status == 200 && metrics.body.isEmpty, "\(metrics)")
        #expect(metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8", "\(metrics)")
        #expect((Int(metrics.headers["content-length"] ?? "") ?? 0) > 100, "\(metrics)")
    }

    /// `/healthz` is liveness: ok through the grace period after a stop, so a probe does not kill
    /// the container while transfers drain. `/readyz` is 503 as soon as devices are no longer
    /// accepted.
    @Test(.enabled(if: DeviceSimulator.supports("--read-pause-ms"), "needs a slow device"))
    func healthzStaysOkWhileDrainingAndReadyzDoesNot() async throws {
        let (testbed, port) = try await Self.start()
        defer { testbed.stop() }
        let agent = testbed.agent

        // About 16 s of reading: still running while the endpoint is asked, even on a loaded
        // machine that notices the verdict late.
        async let slow = DeviceSimulator.run(
            port: agent.port, options: ["--read-size", "4096", "--read-pause-ms", "200"], within: .seconds(90))
        _ = await agent.waitForLog("verdict")
        agent.child.send(SIGTERM)
        _ = await agent.waitForLog("not-accepting")

        let health = try await MetricsClient.get(port: port, "/healthz")
        #expect(health.status == 200 && health.body == "ok\n", "\(health)\n\(agent.transcript)")
        let ready = try await MetricsClient.get(port: port, "/readyz")
        #expect(ready.status == 503, "\(ready)\n\(agent.transcript)")
        let sample = try await MetricsClient.scrape(port: port)
        #expect(sample.value("ota_agent_accepting") == 0, "\(sample)")
        #expect(sample.value("ota_agent_transfers_in_flight") == 1, "the transfer was over already: \(sample)")

        #expect(try await slow.onlyDevice()?.outcome == "updated", "\(agent.transcript)")
        #expect(await agent.child.waitForExit(within: .seconds(30)) == .exited(0), "\(agent.transcript)")
    }

    @Test func hostileMetricsClientsNeitherHangTheEndpointNorHurtTheAgent() async throws {
        let image = try await ServedImage.sample()
        let (testbed, port) = try await Self.start()
        defer { testbed.stop() }
        let agent = testbed.agent

        // More trickling clients than the endpoint keeps open: each sends half a request line
        // and then nothing.
        var trickling: [Int32] = []
        defer { trickling.forEach { close($0) } }
        for _ in 0..<100 {
            let socket = try LoopbackSocket.connect(port: port)
            _ = "GET /met".withCString { send(socket, $0, 8, Int32(MSG_NOSIGNAL)) }
            trickling.append(socket)
        }
        // A request line far beyond the bound: answered 431 (or reset while still sending).
        let huge = "GET /" + String(repeating: "a", count: 1 << 20) + " HTTP/1.1\r\n\r\n"
        let tooLarge = try await MetricsClient.raw(port: port, huge, within: .seconds(10))
        #expect(tooLarge.status == 431 || tooLarge.exchange.ending == .reset, "\(tooLarge)")
        #expect(tooLarge.exchange.elapsed < .seconds(5), "\(tooLarge)")
        // Headers that never end.
        let endless = try await MetricsClient.raw(
            port: port, "GET /metrics HTTP/1.1\r\n" + String(repeating: "X-Filler: 1234567890\r\n", count: 2000),
            within: .seconds(10))
        #expect(endless.status == 431 || endless.exchange.ending == .reset, "\(endless)")

        // A scraper still gets its answer at once, and devices are still served.
        let health = try await MetricsClient.get(port: port, "/healthz")
        #expect(health.status == 200, "\(health)")
        #expect(health.exchange.elapsed < .seconds(2), "scrape took \(health.exchange.elapsed)")
        let run = try await DeviceSimulator.run(port: agent.port)
        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")

        // The trickling clients are closed by their deadline (5 s), not left open.
        let stale = trickling.last!
        let ending = await onThreadOfItsOwn { () -> Bool in
            var poller = pollfd(fd: stale, events: Int16(POLLIN), revents: 0)
            return poll(&poller, 1, 10_000) == 1
        }
        #expect(ending, "a trickling client was still open after 10 s")
        #expect(agent.child.isRunning, "\(agent.transcript)")
        agent.child.send(SIGTERM)
        #expect(await agent.child.waitForExit(within: .seconds(10)) == .exited(0), "\(agent.transcript)")
    }

    /// Many slow transfers keep hundreds of session threads busy; the endpoint answers on its
    /// own thread all the same, and its gauges show them. 50 devices by default: with more, their
    /// handshakes starve the suite's timing tests running beside this one on a small machine.
    /// OTA_METRICS_TEST_DEVICES=1000 (run alone, with `--filter theEndpointStaysResponsive`) is
    /// the measurement the README quotes.
    @Test func theEndpointStaysResponsiveDuringManySlowTransfers() async throws {
        let devices = ProcessInfo.processInfo.environment["OTA_METRICS_TEST_DEVICES"].flatMap { Int($0) } ?? 50
        let (testbed, port) = try await Self.start([
            "OTA_MAX_CONCURRENT": "1000", "OTA_MAX_PER_ADDRESS": "1000", "OTA_MAX_UNATTESTED": "1000",
            "OTA_DICE_AUTH_CONCURRENCY": "16", "OTA_TIMEOUT": "180",
        ])
        defer { testbed.stop() }
        let agent = testbed.agent

        async let fleet = DeviceSimulator.run(
            port: agent.port, options: ["--devices", String(devices), "--read-size", "4096",
                                        "--read-pause-ms", "30", "--quiet"],
            within: .seconds(150))
        var slowest: Duration = .zero
        var mostInFlight = 0.0
        var scrapes = 0
        let until = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < until {
            let answer = try await MetricsClient.get(port: port, "/metrics")
            #expect(answer.status == 200, "\(answer)")
            let sample = MetricsSample(answer.body)
            // Timed on the client's own thread: the test's task may resume late on a busy machine.
            slowest = max(slowest, answer.exchange.elapsed)
            scrapes += 1
            mostInFlight = max(mostInFlight, sample.value("ota_agent_transfers_in_flight") ?? 0)
            if sample.value("ota_agent_devices_updated_total", ["proof": "no"]) == Double(devices) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let run = try await fleet
        #expect(run.devices.filter { $0.outcome == "updated" }.count == devices, "\(run.transcript.suffix(2000))")
        #expect(mostInFlight >= Double(min(10, devices)),
                "transfers_in_flight never above \(mostInFlight) in \(scrapes) scrapes")
        #expect(slowest < .seconds(1), "slowest of \(scrapes) scrapes took \(slowest)")
        print("metrics-responsiveness devices=\(devices) scrapes=\(scrapes) "
            + "slowest_ms=\(Int(slowest.timeInterval * 1000)) most_in_flight=\(Int(mostInFlight))")
    }

    @Test func aMetricsPortInUseIsAConfigurationError() async throws {
        let (occupied, port) = try LoopbackSocket.listening()
        defer { close(occupied) }
        let environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
            .merging(["OTA_METRICS_PORT": String(port)]) { _, new in new }
        let agent = try Agent.launch(environment: environment)
        defer { agent.kill() }
        #expect(await agent.waitForExit(within: .seconds(15)) == .exited(2), "\(agent.transcript)")
        // The port came from its variable; the address was left at its default, so named both ways.
        #expect(agent.stderr.text.contains("OTA_METRICS_BIND (--metrics-bind) / OTA_METRICS_PORT: ")
            && agent.stderr.text.contains("cannot bind"), "\(agent.transcript)")
    }

    @Test func withoutAMetricsPortNothingIsServed() async throws {
        let testbed = try await Testbed.start()
        defer { testbed.stop() }
        #expect(testbed.agent.log("metrics-listening").isEmpty, "\(testbed.agent.transcript)")
    }
}
