import Foundation
import OTAAgent
import Testing

/// How a run ends without an update, and what the tool says about itself.
@Suite("Lifecycle")
struct LifecycleTests {
    /// A stop signal that arrives while the agent is still starting is not lost (nor does it
    /// kill the process outright): the agent stops as soon as it runs, with its own exit code.
    @Test(arguments: [0, 2, 5, 20])
    func stopSignalDuringStartIsHonoured(afterMilliseconds delay: Int) async throws {
        let child = try Agent.launch(environment: Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL))
        defer { child.kill() }
        try await Task.sleep(for: .milliseconds(delay))
        child.send(SIGTERM)

        #expect(await child.waitForExit(within: .seconds(15)) == .exited(143), "\(child.transcript)")
    }

    /// A start that reads a large image takes a while; a stop then ends it at once (nothing is
    /// served yet), with the signal's exit code, instead of after the whole file was read.
    @Test func aStopWhileStartingEndsTheStartAtOnce() async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let large = scratch.file("large-sparse.bin")
        #expect(FileManager.default.createFile(atPath: large.path, contents: Data([1])))
        #expect(truncate(large.path, 8 << 30) == 0)
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL, image: large)
        environment["OTA_IMAGE_IN_PLACE"] = "1"
        let child = try Agent.launch(environment: environment)
        defer { child.kill() }

        try await Task.sleep(for: .milliseconds(500))
        child.send(SIGTERM)

        // Hashing 8 GiB takes far longer than this on these machines.
        #expect(await child.waitForExit(within: .seconds(20)) == .exited(143), "\(child.transcript)")
        let events = child.stderr.lines.compactMap(LogLine.init).map(\.event)
        #expect(events.contains("stopped-while-starting") && !events.contains("listening"), "\(child.transcript)")
    }

    @Test func timeoutWithNoDeviceExitsThree() async throws {
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        environment["OTA_TIMEOUT"] = "1"
        let clock = ContinuousClock()
        let start = clock.now
        let agent = try await Agent.start(environment: environment)
        defer { agent.child.kill() }

        // Bounded by the wait, not timed: a loaded machine may start the agent slowly.
        let ending = await agent.child.waitForExit(within: .seconds(30))
        let elapsed = clock.now - start

        #expect(ending == .exited(3), "\(agent.transcript)")
        #expect(elapsed >= .milliseconds(900), "ended after \(elapsed), before its timeout")
        #expect(agent.log("exiting").first?["outcome"] == "timed-out", "\(agent.transcript)")
    }

    struct StopSignal: Sendable, CustomTestStringConvertible {
        let number: Int32
        let name: String
        let exitCode: Int32
        var testDescription: String { name }
    }

    @Test(arguments: [StopSignal(number: SIGTERM, name: "SIGTERM", exitCode: 143),
                      StopSignal(number: SIGINT, name: "SIGINT", exitCode: 130)])
    func stopSignalWithNoDeviceUpdatedExitsWithSignalCode(_ signal: StopSignal) async throws {
        let agent = try await Agent.start(environment: Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL))
        defer { agent.child.kill() }

        agent.child.send(signal.number)

        #expect(await agent.child.waitForExit(within: .seconds(10)) == .exited(signal.exitCode),
                "\(agent.transcript)")
        #expect(agent.log("exiting").first?["outcome"] == "interrupted-by-signal-\(signal.number)",
                "\(agent.transcript)")
    }

    @Test func serveModeStoppedBySignalExitsZero() async throws {
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        environment["OTA_MODE"] = "serve"
        let agent = try await Agent.start(environment: environment)
        defer { agent.child.kill() }

        agent.child.send(SIGTERM)

        #expect(await agent.child.waitForExit(within: .seconds(10)) == .exited(0), "\(agent.transcript)")
        let stopping = agent.log("stopping").first
        #expect(stopping?["signal"] == String(SIGTERM) && stopping?.integer("in_flight") == 0, "\(agent.transcript)")
        #expect(agent.log("exiting").first?["outcome"] == "stopped", "\(agent.transcript)")
    }

    /// Connections that never sent a certificate (idle, half a hello, stalled after the server's
    /// flight) are closed at the stop: the grace period is for devices being served, and they
    /// would otherwise hold the exit up to their 10 s handshake deadline.
    @Test func aStopClosesConnectionsThatSentNoCertificate() async throws {
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        environment["OTA_MODE"] = "serve"
        environment["OTA_LOG_LEVEL"] = "debug" // for the `connected` lines
        let agent = try await Agent.start(environment: environment)
        defer { agent.child.kill() }
        let sockets = [try LoopbackSocket.connect(port: agent.port),
                       try LoopbackSocket.connectSendingPartialHello(port: agent.port),
                       try LoopbackSocket.connectStallingAfterServerFlight(port: agent.port)]
        defer { sockets.forEach { close($0) } }
        _ = await agent.waitForLog("connected", number: 3)

        let stopped = ContinuousClock.now
        agent.child.send(SIGTERM)

        #expect(await agent.child.waitForExit(within: .seconds(8)) == .exited(0), "\(agent.transcript)")
        #expect(ContinuousClock.now - stopped < .seconds(5), "\(agent.transcript)")
        let ends = agent.log("session-end")
        #expect(ends.count == 3 && ends.allSatisfy { $0["reason"]?.contains("the agent is stopping") == true },
                "\(agent.transcript)")
    }

    /// A second stop cancels a Dice-Auth call in flight: the device failed (the agent stopped),
    /// it was not refused (nothing was judged).
    @Test func aDiceAuthCallCancelledByTheStopIsAFailure() async throws {
        let testbed = try await Testbed.start(verifierOptions: ["--delay-ms", "20000"],
                                              settings: ["OTA_MODE": "serve", "OTA_LOG_LEVEL": "debug"])
        defer { testbed.stop() }
        let agent = testbed.agent
        async let device = DeviceSimulator.run(port: agent.port, within: .seconds(30))
        // The device sends its certificate right after the handshake; the verifier then holds
        // the agent's request for 20 s, well past this pause even on a loaded machine (with
        // 5 s, a busy test run once took that long to send the signals).
        _ = await agent.waitForLog("handshake")
        try await Task.sleep(for: .milliseconds(500))

        agent.child.send(SIGTERM)
        _ = await agent.waitForLog("stopping")
        agent.child.send(SIGTERM)

        #expect(await agent.child.waitForExit(within: .seconds(10)) == .exited(0), "\(agent.transcript)")
        let end = agent.log("session-end").first
        #expect(end?["outcome"] == "failed" && end?["phase"] == "attestation", "\(agent.transcript)")
        #expect(end?["reason"]?.contains("cancelled") == true, "\(agent.transcript)")
        _ = try? await device
    }

    /// Once the first device is updated, a device arriving while another transfer drains is
    /// refused at once (the port is closed), not left waiting for an agent that will not serve it.
    @Test(.enabled(if: DeviceSimulator.supports("--read-pause-ms"), "needs a slow device"))
    func newDevicesAreRefusedWhileTheLastTransfersDrain() async throws {
        let testbed = try await Testbed.start()
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        // A slow device (about 3 s) and then a fast one that ends the once run.
        async let slow = DeviceSimulator.run(
            port: agent.port, options: ["--read-size", "1024", "--read-pause-ms", "10"], within: .seconds(30))
        _ = await agent.waitForLog("verdict")
        let fast = try await DeviceSimulator.run(port: agent.port)
        #expect(fast.onlyDevice()?.outcome == "updated", "\(fast.transcript)")
        _ = await agent.waitForLog("not-accepting")

        #expect(LoopbackSocket.connectError(port: agent.port) == ECONNREFUSED, "\(agent.transcript)")
        #expect(try await slow.onlyDevice()?.outcome == "updated", "\(agent.transcript)")
        #expect(await agent.child.waitForExit(within: .seconds(20)) == .exited(0), "\(agent.transcript)")
    }

    /// A second stop signal ends the grace period: a transfer still running is reset.
    @Test(.enabled(if: DeviceSimulator.supports("--read-pause-ms"), "needs a slow device"))
    func secondStopSignalResetsTransfersInFlight() async throws {
        let testbed = try await Testbed.start()
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        // About 15 s of reading: still running at the second signal even on a slow (sanitized) build.
        async let slow = DeviceSimulator.run(
            port: agent.port, options: ["--read-size", "4096", "--read-pause-ms", "200"], within: .seconds(30))
        _ = await agent.waitForLog("verdict")
        agent.child.send(SIGTERM)
        _ = await agent.waitForLog("stopping")
        agent.child.send(SIGTERM)

        #expect(await agent.child.waitForExit(within: .seconds(10)) == .exited(143), "\(agent.transcript)")
        #expect(await agent.waitForLog("stopping-now") != nil, "\(agent.transcript)")
        let device = try await slow.onlyDevice()
        #expect(device?.outcome == "error" && device?.end == nil, "\(String(describing: device))")
    }

    @Test func helpExitsZeroAndNamesEveryEnvironmentVariable() async throws {
        let child = try Agent.launch(environment: Fixtures.baseEnvironment, arguments: ["--help"])
        defer { child.kill() }

        #expect(await child.waitForExit(within: .seconds(10)) == .exited(0), "\(child.transcript)")
        let help = child.stdout.text
        // The names deployments set today, written out: they must never change.
        let documented = ["NEW_FIRMWARE_PATH", "DICE_AUTH_URL", "SERVER_CRT_PATH", "SERVER_KEY_PATH",
                          "OTA_PORT", "OTA_BIND", "OTA_TIMEOUT", "OTA_MODE", "OTA_HANDSHAKE_TIMEOUT",
                          "OTA_CERTIFICATE_TIMEOUT", "OTA_DICE_AUTH_TIMEOUT", "OTA_STALL_TIMEOUT",
                          "OTA_TRANSFER_TIMEOUT", "OTA_CLOSE_TIMEOUT", "OTA_GRACE_PERIOD"]
        let everyVariable = Set(documented + EnvironmentKey.allCases.map(\.rawValue))
        for name in everyVariable.sorted() {
            #expect(help.contains(name), "--help does not mention \(name)\n\(help)")
        }
    }
}
