import Foundation
import Testing

/// Floods of connections that prove nothing cannot keep a real device from being served: one
/// address holds a bounded number of connections, and at the bound on connections still
/// before their certificate the oldest silent one makes room.
@Suite("Connection limits")
struct ConnectionLimitTests {
    /// Whether the agent ended the connection on `descriptor` (EOF or reset) within `timeout`.
    static func endedByAgent(_ descriptor: Int32, within timeout: Duration) -> Bool {
        var watched = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&watched, 1, Int32(timeout.timeInterval * 1000)) == 1 else { return false }
        var byte: UInt8 = 0
        return read(descriptor, &byte, 1) <= 0
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

    /// Connections that have sent part of a hello are not silent; at the bound a device waits
    /// in the listen queue until their handshake deadlines free the room, and is then served.
    @Test func atTheUnattestedBoundADeviceWaitsForRoomRatherThanBeingRefused() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(settings: [
            "OTA_MODE": "serve", "OTA_MAX_UNATTESTED": "2", "OTA_HANDSHAKE_TIMEOUT": "1",
        ])
        defer { testbed.stop() }
        let agent = testbed.agent
        let stalled = try (0..<2).map { _ in try LoopbackSocket.connectSendingPartialHello(port: agent.port) }
        defer { stalled.forEach { close($0) } }
        try await Task.sleep(for: .milliseconds(200))

        let run = try await DeviceSimulator.run(port: agent.port)

        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        _ = await agent.waitForLog("session-end", number: 3)
        let ends = agent.log("session-end")
        #expect(ends.map { $0["phase"] } == ["handshake", "handshake", "done"], "\(agent.transcript)")
        #expect(agent.log("refused-connection").isEmpty, "\(agent.transcript)")
    }
}
