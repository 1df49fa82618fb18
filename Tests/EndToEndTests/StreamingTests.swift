import Foundation
import Testing

/// The image arrives byte for byte whatever its size, in records the device can take.
@Suite("Streaming")
struct StreamingTests {
    /// Edges of the 16 KiB record: one byte, exactly one and three records, one byte over, and
    /// an image larger than 64 MiB.
    @Test(arguments: [1, 16_384, 3 * 16_384, 3 * 16_384 + 1, 64 * 1024 * 1024 + 1])
    func imageOfAnySizeArrivesByteForByte(size: Int) async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let image = try await ServedImage.of(try scratch.writeRandom("image.bin", count: size))
        let testbed = try await Testbed.start(image: image.url)
        defer { testbed.stop() }
        let agent = testbed.agent

        let run = try await DeviceSimulator.run(
            port: agent.port, options: ["--read-size", "16384"], within: .seconds(60))

        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        #expect(await agent.child.waitForExit(within: .seconds(20)) == .exited(0), "\(agent.transcript)")
        let sessionEnd = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)")
        #expect(sessionEnd.integer("bytes") == size, "\(sessionEnd)")
    }

    /// Without a limit the agent writes full 16 KiB records (so the device's largest read shows
    /// the record size); a device that negotiated max_fragment_length gets records within it,
    /// on the fallback path. (mbedTLS 2.28 cannot take the RSA certificate in 512-byte
    /// records: it does not reassemble handshake messages, so 1024 is the smallest that works.)
    @Test(arguments: [nil, 1024, 4096])
    func recordsStayWithinTheNegotiatedFragmentLength(limit: Int?) async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start()
        defer { testbed.stop() }
        let agent = testbed.agent

        let options = ["--read-size", "16384"] + (limit.map { ["--max-fragment-length", String($0)] } ?? [])
        let run = try await DeviceSimulator.run(port: agent.port, options: options)

        let device = run.onlyDevice()
        expectUpdated(device, with: image, "\(run.transcript)\n\(agent.transcript)")
        #expect(device?.largestRead == (limit ?? 16_384), "\(String(describing: device))")
        let sessionEnd = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)")
        if limit != nil {
            #expect(sessionEnd["path"] == "pread", "\(sessionEnd)")
        }
    }
}
