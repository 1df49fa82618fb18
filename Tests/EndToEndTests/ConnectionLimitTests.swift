import Foundation
import Testing

/// Floods of connections that prove nothing cannot keep a real device from being served: one
/// address holds a bounded number of connections, and at the bound on connections still
/// before their certificate the one that kept the agent waiting longest makes room.
@Suite("Connection limits")
struct ConnectionLimitTests {
    /// Whether the agent ended the connection on `descriptor` (EOF or reset) within `timeout`;
    /// what it sent before (a handshake flight) is read and dropped.
    static func endedByAgent(_ descriptor: Int32, within timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let left = max(0, Int32((deadline - .now).timeInterval * 1000))
            var watched = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&watched, 1, left) == 1 else { return false }
            if read(descriptor, &buffer, buffer.count) <= 0 { return true }
        }
    }

    @Test func oneAddressHoldsAtMostItsShareAndTheNextIsRefusedAtOnce() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(settings: [
            "OTA_MODE": "serve", "OTA_MAX_PER_ADDRESS": "2", "OTA_HANDSHAKE_TIMEOUT": "10",
        ])
        defer { testbed.stop() }
        let agent = testbed.agent
        let held = try (0..<2).map { _ in try LoopbackSocket.connect(port: agent.port, from: "127.0.0.2") }
        defer { held.forEach { close($0) } }

        let third = try LoopbackSocket.connect(port: agent.port, from: "127.0.0.2")
        defer { close(third) }

        #expect(Self.endedByAgent(third, within: .seconds(5)), "the third connection was not refused")
        let refusal = try #require(await agent.waitForLog("refused-connection"), "\(agent.transcript)")
        #expect(refusal["device"]?.hasPrefix("127.0.0.2:") == true, "\(refusal)")
        #expect(refusal["reason"]?.contains("OTA_MAX_PER_ADDRESS") == true, "\(refusal)")
        #expect(!held.contains { Self.endedByAgent($0, within: .milliseconds(100)) },
                "a connection within the bound was closed")

        // Another address is not affected by the first one's bound.
        let run = try await DeviceSimulator.run(port: agent.port)
        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
    }

    @Test func atTheUnattestedBoundTheOldestSilentConnectionMakesRoomForADevice() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(settings: [
            "OTA_MODE": "serve", "OTA_MAX_UNATTESTED": "2", "OTA_HANDSHAKE_TIMEOUT": "20",
        ])
        defer { testbed.stop() }
        let agent = testbed.agent
        let older = try LoopbackSocket.connect(port: agent.port)
        defer { close(older) }
        try await Task.sleep(for: .milliseconds(100))
        let newer = try LoopbackSocket.connect(port: agent.port)
        defer { close(newer) }

        let run = try await DeviceSimulator.run(port: agent.port)

        // Updated long before the silent connections' 20 s deadline: room was made for it.
        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        #expect(Self.endedByAgent(older, within: .seconds(2)), "the oldest silent connection is still open")
        #expect(!Self.endedByAgent(newer, within: .milliseconds(200)), "the newer silent connection was closed too")
        // The agent logs a session's end after the device's own report: wait for both lines.
        _ = await agent.waitForLog("session-end", number: 2)
        let ends = agent.log("session-end")
        let evicted = ends.filter { $0["reason"]?.contains("closed to make room") == true }
        #expect(evicted.count == 1 && evicted.first?["phase"] == "handshake", "\(agent.transcript)")
        #expect(ends.contains { $0["outcome"] == "updated" }, "\(agent.transcript)")
    }

    /// When idle connections take every session slot (below the unattested bound), they make
    /// room all the same.
    @Test func idleConnectionsHoldingEverySessionSlotMakeRoom() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(settings: [
            "OTA_MODE": "serve", "OTA_MAX_CONCURRENT": "2", "OTA_HANDSHAKE_TIMEOUT": "30",
        ])
        defer { testbed.stop() }
        let agent = testbed.agent
        let idle = try (0..<2).map { _ in try LoopbackSocket.connect(port: agent.port) }
        defer { idle.forEach { close($0) } }

        let run = try await DeviceSimulator.run(port: agent.port)

        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        _ = await agent.waitForLog("session-end", number: 2)
        #expect(agent.log("session-end").contains { $0["reason"]?.contains("closed to make room") == true },
                "\(agent.transcript)")
    }

    /// A connection that sent part of a hello owes the rest at once: at the bound it makes room
    /// as a silent one does, long before its handshake deadline.
    @Test func atTheUnattestedBoundAConnectionStalledInItsHelloMakesRoom() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(settings: [
            "OTA_MODE": "serve", "OTA_MAX_UNATTESTED": "2", "OTA_HANDSHAKE_TIMEOUT": "30",
        ])
        defer { testbed.stop() }
        let agent = testbed.agent
        let stalled = try (0..<2).map { _ in try LoopbackSocket.connectSendingPartialHello(port: agent.port) }
        defer { stalled.forEach { close($0) } }

        let run = try await DeviceSimulator.run(port: agent.port)

        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        // Both owed the rest of their hello since about the same moment: either may go first.
        let closed = stalled.filter { Self.endedByAgent($0, within: .seconds(2)) }
        #expect(closed.count == 1, "\(closed.count) of the 2 stalled connections were closed\n\(agent.transcript)")
        _ = await agent.waitForLog("session-end", number: 2)
        let ends = agent.log("session-end")
        #expect(ends.count == 2 && ends.contains { $0["outcome"] == "updated" }, "\(agent.transcript)")
        #expect(ends.contains { $0["phase"] == "handshake" && $0["reason"]?.contains("closed to make room") == true },
                "\(agent.transcript)")
        #expect(agent.log("refused-connection").isEmpty, "\(agent.transcript)")
    }

    /// Trickling a hello a byte at a time is no way to stay: patience counts from the moment
    /// the hello was owed, not from the last byte.
    @Test func aHelloTrickledAByteAtATimeMakesRoomLikeASilentOne() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(settings: [
            "OTA_MODE": "serve", "OTA_MAX_UNATTESTED": "2", "OTA_HANDSHAKE_TIMEOUT": "60",
        ])
        defer { testbed.stop() }
        let agent = testbed.agent
        // Each trickler's thread owns its socket and closes it when done or refused, so the
        // descriptor cannot be reused under it by another test.
        for _ in 0..<2 {
            let descriptor = try LoopbackSocket.connect(port: agent.port)
            let thread = Thread {
                defer { close(descriptor) }
                for byte in HandMadeTLS.tls12Hello.dropLast() {
                    var one = byte
                    guard send(descriptor, &one, 1, Int32(MSG_NOSIGNAL)) == 1 else { return }
                    usleep(100_000)
                }
            }
            thread.start()
        }
        try await Task.sleep(for: .milliseconds(300))

        let run = try await DeviceSimulator.run(port: agent.port)

        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        _ = await agent.waitForLog("session-end", number: 2)
        #expect(agent.log("session-end").contains { $0["reason"]?.contains("closed to make room") == true },
                "\(agent.transcript)")
    }

    /// A client that got the agent's handshake flight may be a device computing its answer: it
    /// is given longer (2 s) before it is closed to make room, and meanwhile a device waits in
    /// the listen queue rather than being refused.
    @Test func aClientStalledAfterTheAgentsFlightMakesRoomOnlyAfterTheLongerPatience() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(settings: [
            "OTA_MODE": "serve", "OTA_MAX_UNATTESTED": "1", "OTA_HANDSHAKE_TIMEOUT": "30",
        ])
        defer { testbed.stop() }
        let agent = testbed.agent
        let stalled = try LoopbackSocket.connectStallingAfterServerFlight(port: agent.port)
        defer { close(stalled) }
        let flightReceived = ContinuousClock.now

        async let device = DeviceSimulator.run(port: agent.port)
        let closed = await onThreadOfItsOwn { Self.endedByAgent(stalled, within: .seconds(20)) }
        let stalledFor = ContinuousClock.now - flightReceived
        let run = try await device

        #expect(closed, "the stalled handshake was never closed\n\(agent.transcript)")
        #expect(stalledFor >= .milliseconds(1900), "closed after only \(stalledFor)")
        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        _ = await agent.waitForLog("session-end", number: 2)
        let ends = agent.log("session-end")
        #expect(ends.first?["reason"]?.contains("handshake: closed to make room") == true, "\(agent.transcript)")
        #expect(ends.last?["outcome"] == "updated", "\(agent.transcript)")
        #expect(agent.log("refused-connection").isEmpty, "\(agent.transcript)")
    }

    /// Many addresses, each within its share, together far beyond the unattested bound: idle
    /// and half-sent connections turn over fast enough that a device is served long before any
    /// of them reaches its handshake deadline.
    @Test func aFloodFromManyAddressesDoesNotKeepADeviceOut() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(settings: [
            "OTA_MODE": "serve", "OTA_MAX_UNATTESTED": "16", "OTA_HANDSHAKE_TIMEOUT": "60",
        ])
        defer { testbed.stop() }
        let agent = testbed.agent
        var flood: [Int32] = []
        defer { flood.forEach { close($0) } }
        for number in 0..<40 {
            let address = "127.0.1.\(number + 1)"
            for _ in 0..<2 { flood.append(try LoopbackSocket.connect(port: agent.port, from: address)) }
            flood.append(try LoopbackSocket.connectSendingPartialHello(port: agent.port, from: address))
        }

        let run = try await DeviceSimulator.run(port: agent.port)

        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        let ends = agent.log("session-end")
        #expect(ends.contains { $0["reason"]?.contains("closed to make room") == true }, "\(agent.transcript)")
        #expect(!ends.contains { $0["reason"] == "handshake: deadline passed" }, "\(agent.transcript)")
        #expect(agent.log("refused-connection").isEmpty, "\(agent.transcript)")
    }
}
