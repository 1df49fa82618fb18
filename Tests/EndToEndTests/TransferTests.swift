import Foundation
import Testing

/// A transfer that cannot complete must not look complete to the device: the agent resets the
/// connection instead of ending the stream cleanly.
@Suite("Transfer")
struct TransferTests {
    static let simulatorHasReadPause = DeviceSimulator.supports("--read-pause-ms")

    @Test(.enabled(if: simulatorHasReadPause, "ota-device-sim has no --read-pause-ms to play a slow reader"))
    func deviceThatStopsReadingIsResetNotEndedCleanly() async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        // Far more than the socket buffers of both ends hold, so the agent must wait for the device.
        let imageURL = try scratch.write("large.bin", [UInt8](repeating: 0x5A, count: 16 << 20))
        let image = try await ServedImage.of(imageURL)
        let verifier = try await Verifier.start()
        defer { verifier.child.kill() }
        var environment = Agent.environment(diceAuthURL: verifier.url, image: image.url)
        environment["OTA_STALL_TIMEOUT"] = "0.25"
        let agent = try await Agent.start(environment: environment)
        defer { agent.child.kill() }

        // A device that reads a record, then pauses: far slower than the stall deadline allows.
        let run = try await DeviceSimulator.run(
            port: agent.port, options: ["--read-size", "16384", "--read-pause-ms", "400"], within: .seconds(25))

        let sessionEnd = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)")
        #expect(sessionEnd["outcome"] == "failed" && sessionEnd["phase"] == "transfer", "\(sessionEnd)")
        #expect(sessionEnd["reason"]?.contains("stall") == true, "\(sessionEnd)")
        let device = try #require(run.onlyDevice())
        // The device drains what reached it, then meets the reset: no close_notify, no clean EOF.
        #expect(device.outcome == "error", "\(device)\n\(run.transcript)")
        #expect(device.line["phase"] == "receive", "\(device)")
        #expect(device.detail?.lowercased().contains("reset") == true, "\(device)")
        #expect((device.bytes ?? .max) < image.size, "\(device)")
        #expect(device.end == nil, "\(device)")

        #expect(agent.child.isRunning, "\(agent.transcript)")
        agent.child.send(SIGTERM)
        #expect(await agent.child.waitForExit(within: .seconds(10)) == .exited(143), "\(agent.transcript)")
    }
}
