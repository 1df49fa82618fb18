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
        let testbed = try await Testbed.start(settings: ["OTA_STALL_TIMEOUT": "0.25"], image: image.url)
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

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

    /// A device that keeps reading, but too slowly to finish within the whole-transfer deadline,
    /// never stalls; the transfer deadline ends it all the same, with a reset.
    @Test(.enabled(if: simulatorHasReadPause, "ota-device-sim has no --read-pause-ms to play a slow reader"))
    func transferPastItsWholeDeadlineIsResetThoughTheDeviceNeverStalls() async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        // Far more than both ends' socket buffers hold, so the transfer phase lasts.
        let imageURL = try scratch.write("large.bin", [UInt8](repeating: 0x3C, count: 16 << 20))
        let image = try await ServedImage.of(imageURL)
        let testbed = try await Testbed.start(
            settings: ["OTA_MODE": "serve", "OTA_TRANSFER_TIMEOUT": "1.5", "OTA_STALL_TIMEOUT": "10"],
            image: image.url)
        defer { testbed.stop() }
        let agent = testbed.agent

        // About 320 kB/s: some progress every 50 ms, 50 s for the whole image.
        let run = try await DeviceSimulator.run(
            port: agent.port, options: ["--read-size", "16384", "--read-pause-ms", "50"], within: .seconds(25))

        let sessionEnd = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)")
        #expect(sessionEnd["outcome"] == "failed" && sessionEnd["phase"] == "transfer", "\(sessionEnd)")
        #expect(sessionEnd["reason"] == "transfer: whole-transfer deadline passed", "\(sessionEnd)")
        #expect(sessionEnd.integer("ms").map { $0 >= 1500 && $0 < 8000 } == true, "\(sessionEnd)")
        let device = try #require(run.onlyDevice())
        #expect(device.outcome == "error" && device.end == nil, "\(device)\n\(run.transcript)")
        #expect((device.bytes ?? .max) < image.size, "\(device)")

        // The agent goes on serving (a next device would get the same 1.5 s, too short for this
        // image on a slow build, so only the process is checked here).
        #expect(agent.child.isRunning, "\(agent.transcript)")
        agent.child.send(SIGTERM)
        #expect(await agent.child.waitForExit(within: .seconds(10)) == .exited(0), "\(agent.transcript)")
    }

    /// The sample image fits in the socket buffers, so the agent's last write returns long before the
    /// device has read it. A device that gives up then must not count as updated, nor end a once run.
    @Test(.enabled(if: simulatorHasReadPause, "ota-device-sim has no --read-pause-ms to play a slow reader"))
    func deviceThatQuitsAfterTheLastWriteIsNotCountedAsUpdated() async throws {
        let image = try await ServedImage.sample()
        // The run's timeout only ends the run (exit 3) after the device; room for a loaded machine
        // to start the simulator first.
        let testbed = try await Testbed.start(settings: ["OTA_TIMEOUT": "10"])
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        // Reads slowly, then quits with most of the image unread (its close is a reset).
        let run = try await DeviceSimulator.run(
            port: agent.port, options: ["--read-pause-ms", "2", "--timeout-ms", "800"], within: .seconds(10))

        let device = try #require(run.onlyDevice())
        #expect(device.outcome == "error" && (device.bytes ?? .max) < image.size, "\(device)")
        let sessionEnd = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)")
        #expect(sessionEnd["outcome"] == "failed" && sessionEnd["phase"] == "close", "\(sessionEnd)")
        #expect(sessionEnd["reason"]?.contains("reset") == true, "\(sessionEnd)")
        #expect(await agent.child.waitForExit(within: .seconds(20)) == .exited(3), "\(agent.transcript)")
    }

    /// Same buffers, a device that stops reading but keeps the connection: the agent's stall deadline
    /// still applies after its last write, and the device then sees a reset, not the end of the image.
    @Test(.enabled(if: simulatorHasReadPause, "ota-device-sim has no --read-pause-ms to play a slow reader"))
    func deviceThatStopsReadingAfterTheLastWriteIsReset() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(settings: ["OTA_STALL_TIMEOUT": "0.5", "OTA_CLOSE_TIMEOUT": "0.5"])
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        let run = try await DeviceSimulator.run(
            port: agent.port, options: ["--read-size", "65536", "--read-pause-ms", "1200"], within: .seconds(20))

        let sessionEnd = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)")
        #expect(sessionEnd["outcome"] == "failed" && sessionEnd["phase"] == "close", "\(sessionEnd)")
        #expect(sessionEnd["reason"]?.contains("stopped reading") == true, "\(sessionEnd)")
        let device = try #require(run.onlyDevice())
        #expect(device.outcome == "error" && device.end == nil, "\(device)\n\(run.transcript)")
        #expect((device.bytes ?? .max) < image.size, "\(device)")
        #expect(agent.child.isRunning, "\(agent.transcript)")
    }

    /// A slow device that keeps reading is waited for after the last write, and is updated.
    @Test(.enabled(if: simulatorHasReadPause, "ota-device-sim has no --read-pause-ms to play a slow reader"))
    func slowDeviceStillReadingAfterTheLastWriteIsUpdated() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(settings: ["OTA_CLOSE_TIMEOUT": "3"])
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        // About 1.5 s of reading, far longer than the close timeout.
        let run = try await DeviceSimulator.run(
            port: agent.port, options: ["--read-size", "1024", "--read-pause-ms", "5"], within: .seconds(20))

        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
    }

    /// A small image is acknowledged at once by the device's TCP stack, read or not: only the
    /// device's close counts, so one that stops reading is not updated.
    @Test(.enabled(if: simulatorHasReadPause, "ota-device-sim has no --read-pause-ms to play a slow reader"))
    func deviceThatAcknowledgesButNeverReadsIsNotUpdated() async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let image = try await ServedImage.of(try scratch.writeRandom("small.bin", count: 4000))
        // As above: the run's timeout must not pass before a slow machine has started the device.
        let testbed = try await Testbed.start(settings: ["OTA_CLOSE_TIMEOUT": "0.5", "OTA_TIMEOUT": "10"],
                                              image: image.url)
        defer { testbed.stop() }
        let agent = testbed.agent

        // Reads 64 bytes, then waits far longer than the agent's close timeout.
        let run = try await DeviceSimulator.run(
            port: agent.port, options: ["--read-pause-ms", "20000", "--timeout-ms", "4000"], within: .seconds(10))

        let sessionEnd = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)")
        #expect(sessionEnd["outcome"] == "failed" && sessionEnd["phase"] == "close", "\(sessionEnd)")
        #expect(run.onlyDevice()?.outcome == "error", "\(run.transcript)")
        #expect(await agent.child.waitForExit(within: .seconds(20)) == .exited(3), "\(agent.transcript)")
    }

    /// Served in place, the image is the file opened at start. Once that file changes on disk,
    /// no transfer can be trusted any more: the one in flight is reset, and the agent stops with
    /// exit 2 so that it is restarted with the new image, instead of failing every device.
    @Test(.enabled(if: simulatorHasReadPause, "ota-device-sim has no --read-pause-ms to play a slow reader"))
    func imageServedInPlaceChangedOnDiskStopsTheAgent() async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let imageURL = try scratch.writeRandom("large.bin", count: 16 << 20)
        let testbed = try await Testbed.start(settings: ["OTA_MODE": "serve", "OTA_IMAGE_IN_PLACE": "1"],
                                              image: imageURL)
        defer { testbed.stop() }
        let agent = testbed.agent

        async let run = DeviceSimulator.run(
            port: agent.port, options: ["--read-size", "16384", "--read-pause-ms", "5"], within: .seconds(30))
        _ = await agent.waitForLog("verdict")
        // Same bytes, new modification time: still a change to the file being served.
        try FileManager.default.setAttributes([.modificationDate: Date()], ofItemAtPath: imageURL.path)

        let device = try await run.onlyDevice()
        #expect(device?.outcome == "error" && device?.end == nil, "\(String(describing: device))")
        let sessionEnd = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)")
        #expect(sessionEnd["outcome"] == "failed" && sessionEnd["reason"]?.contains("changed") == true,
                "\(sessionEnd)")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(2), "\(agent.transcript)")
        #expect(agent.log("image-changed").count == 1, "\(agent.transcript)")
        #expect(agent.log("exiting").first?["outcome"] == "image-changed", "\(agent.transcript)")
    }
}
