import Foundation
import OTAAgent
import Testing

/// The Swift library's async API: in this process (events in order per device, shutdown, a
/// consumer that never reads), and through the example program built with the package.
@Suite("Embedding in Swift")
struct EmbeddingTests {
    /// A serve-mode configuration of the sample image against `verifier`, on a free loopback port.
    static func configuration(_ verifier: Verifier) -> AgentConfiguration {
        var configuration = AgentConfiguration(
            imagePath: Fixtures.sampleImage.path, diceAuthURL: verifier.url,
            certificatePath: Fixtures.certificate("agent-rsa.crt").path,
            keyPath: Fixtures.certificate("agent-rsa.key").path)
        configuration.port = 0
        configuration.bindAddress = "127.0.0.1"
        configuration.mode = .serve
        configuration.maxPerAddress = 100
        configuration.timeout = .seconds(60)
        return configuration
    }

    /// The events, by device, in the order they came.
    static func byDevice(_ events: [AgentEvent]) -> [String: [AgentEvent]] {
        Dictionary(grouping: events, by: \.peer)
    }

    static func kind(_ event: AgentEvent) -> String {
        switch event {
        case .connected: "connected"
        case .verdict: "verdict"
        case .progress: "progress"
        case .ended: "ended"
        }
    }

    @Test func eventsArriveInOrderForEachDeviceAndShutdownReturnsTheSummary() async throws {
        let image = try await ServedImage.sample()
        let verifier = try await Verifier.start()
        defer { verifier.child.kill() }
        let agent = OTAAgent.Agent(configuration: Self.configuration(verifier), logger: Logger(level: .error))
        let events = agent.events()
        try agent.start()
        let port = try #require(agent.port)
        let run = Task { await agent.runDetached() }
        let collected = Task {
            var all: [AgentEvent] = []
            for await event in events { all.append(event) }
            return all
        }

        let fleet = try await DeviceSimulator.run(port: port, options: ["--devices", "3"])
        #expect(fleet.devices.filter { $0.outcome == "updated" && $0.sha256 == image.sha256 }.count == 3,
                "\(fleet.transcript)")
        let rogue = try await DeviceSimulator.run(port: port, attestation: "rogue-device.der")
        expectRefused(rogue.onlyDevice(), "\(rogue.transcript)")

        let summary = try #require(await agent.shutdown())
        #expect(summary.outcome == .updated, "serve mode with a device updated")
        #expect(summary.devicesUpdated == 3 && summary.sessions.count == 4)
        #expect(await run.value.sessions.count == 4, "the run's own summary is the same")
        // The stream ended with the run: the collecting task finishes.
        let devices = Self.byDevice(await collected.value)
        #expect(devices.count == 4)
        for (peer, events) in devices {
            let kinds = events.map(Self.kind)
            guard case .ended(let record) = events.last else {
                Issue.record("\(peer): no ended event last: \(kinds)")
                continue
            }
            if record.outcome == .updated {
                #expect(kinds.first == "connected" && kinds[1] == "verdict" && kinds.dropFirst(2).dropLast()
                    .allSatisfy { $0 == "progress" } && kinds.count >= 5, "\(peer): \(kinds)")
                let sent = events.compactMap { event -> UInt64? in
                    if case .progress(_, let bytes, _) = event { bytes } else { nil }
                }
                #expect(sent.first == 0 && sent.last == UInt64(image.size) && sent == sent.sorted(), "\(sent)")
            } else {
                #expect(kinds == ["connected", "verdict", "ended"], "\(peer): \(kinds)")
                #expect(record.outcome == .refused && record.bytesSent == 0)
                if case .verdict(_, let verdict, let certificate, _) = events[1] {
                    #expect(verdict.name == "rejected" && certificate?.subject.contains("rogue") == true)
                }
            }
        }
        #expect(agent.metricsText().contains("ota_agent_devices_updated_total{proof=\"no\"} 3"))
        #expect(agent.metricsPort == nil, "no metrics endpoint unless asked for")
        var late = 0
        for await _ in agent.events() { late += 1 }
        #expect(late == 0, "a stream asked for after the run ends at once")
    }

    @Test func aConsumerThatNeverReadsDoesNotHoldBackTheAgent() async throws {
        let image = try await ServedImage.sample()
        let verifier = try await Verifier.start()
        defer { verifier.child.kill() }
        let agent = OTAAgent.Agent(configuration: Self.configuration(verifier), logger: Logger(level: .error))
        let unread = agent.events(bufferSize: 4)
        try agent.start()
        let run = Task { await agent.runDetached() }

        let fleet = try await DeviceSimulator.run(port: try #require(agent.port), options: ["--devices", "10"])
        #expect(fleet.devices.filter { $0.outcome == "updated" && $0.sha256 == image.sha256 }.count == 10,
                "\(fleet.transcript)")
        let summary = try #require(await agent.shutdown())
        #expect(summary.devicesUpdated == 10)
        _ = await run.value

        // The stream kept the newest four events (the last one a device's end) and dropped the rest.
        var kept: [AgentEvent] = []
        for await event in unread { kept.append(event) }
        #expect(kept.count == 4 && kept.last.map(Self.kind) == "ended", "\(kept.map(Self.kind))")
        let dropped = agent.metricsText().split(separator: "\n")
            .first { $0.hasPrefix("ota_agent_events_dropped_total ") }
        #expect(dropped.flatMap { Int($0.split(separator: " ")[1]) }.map { $0 >= 40 } == true,
                "\(String(describing: dropped))")
    }

    @Test func shutdownWithoutARunClosesTheAgentAndReturnsNil() async throws {
        let verifier = try await Verifier.start()
        defer { verifier.child.kill() }
        var configuration = Self.configuration(verifier)
        configuration.metricsPort = 0
        let agent = OTAAgent.Agent(configuration: configuration, logger: Logger(level: .error))
        try agent.start()
        let metricsPort = try #require(agent.metricsPort)
        #expect(LoopbackSocket.connectError(port: metricsPort) == 0, "the endpoint is up after start")
        #expect(await agent.shutdown() == nil)
        #expect(LoopbackSocket.connectError(port: metricsPort) == ECONNREFUSED, "the endpoint is closed")
    }

    @Test func theExampleProgramServesAndPrintsEachDevicesEvents() async throws {
        let image = try await ServedImage.sample()
        let verifier = try await Verifier.start()
        defer { verifier.child.kill() }
        let environment = Agent.environment(diceAuthURL: verifier.url).merging(["OTA_MODE": "serve"]) { _, new in new }
        let example = try ChildProcess(name: "OTAAgentEmbeddingExample",
                                       executable: Fixtures.program("OTAAgentEmbeddingExample"),
                                       environment: environment)
        defer { example.kill() }
        let ready = await example.stdout.firstLine(within: .seconds(15)) { $0.hasPrefix("ready ") }
        let port = try #require(ready.flatMap { KeyValueLine($0).integer("port") }.flatMap { UInt16(exactly: $0) },
                                "\(example.transcript)")

        let device = try await DeviceSimulator.run(port: port)
        expectUpdated(device.onlyDevice(), with: image, "\(device.transcript)\n\(example.transcript)")
        let rogue = try await DeviceSimulator.run(port: port, attestation: "rogue-device.der")
        expectRefused(rogue.onlyDevice(), "\(rogue.transcript)\n\(example.transcript)")
        _ = await example.stdout.firstLine(within: .seconds(10)) { $0.hasPrefix("ended ") && $0.contains("refused") }

        example.send(SIGTERM)
        #expect(await example.waitForExit(within: .seconds(10)) == .exited(0), "\(example.transcript)")
        let lines = example.stdout.lines.map(KeyValueLine.init)
        let devices = Dictionary(grouping: lines.filter { $0["device"] != nil }) { $0["device"]! }
        let sequences = devices.values.map { $0.map { $0.words.first ?? "" } }
        #expect(sequences.count == 2, "\(example.transcript)")
        #expect(sequences.contains { $0.first == "connected" && $0[1] == "verdict" && $0.last == "ended"
            && $0.dropFirst(2).dropLast().allSatisfy { $0 == "progress" } && $0.count >= 5 }, "\(sequences)")
        #expect(sequences.contains(["connected", "verdict", "ended"]), "\(sequences)")
        let ended = lines.filter { $0.words.first == "ended" }
        #expect(Set(ended.compactMap { $0["outcome"] }) == ["updated", "refused"], "\(example.transcript)")
        #expect(lines.last?.text == "summary outcome=updated updated=1 sessions=2", "\(example.transcript)")
    }
}
