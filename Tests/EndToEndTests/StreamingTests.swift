import Foundation
import OTAAgent
import Testing

/// The image arrives byte for byte whatever its size, in records the device can take.
@Suite("Streaming")
struct StreamingTests {
    /// A testbed whose agent serves `size` random bytes, written into `scratch`.
    private static func serveRandomImage(of size: Int, in scratch: ScratchFolder) async throws
        -> (ServedImage, Testbed)
    {
        let image = try await ServedImage.of(try scratch.writeRandom("image.bin", count: size))
        return (image, try await Testbed.start(image: image.url))
    }

    /// Edges of the 16 KiB record: one byte, exactly one and three records, one byte over, and
    /// an image larger than 64 MiB.
    @Test(arguments: [1, 16_384, 3 * 16_384, 3 * 16_384 + 1, 3 * 1024 * 1024 + 7, 64 * 1024 * 1024 + 1])
    func imageOfAnySizeArrivesByteForByte(size: Int) async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let (image, testbed) = try await Self.serveRandomImage(of: size, in: scratch)
        defer { testbed.stop() }
        let agent = testbed.agent

        let run = try await DeviceSimulator.run(
            port: agent.port, options: ["--read-size", "16384"], within: .seconds(60))

        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        #expect(run.onlyDevice()?.end == "close_notify", "\(run.transcript)")
        #expect(await agent.child.waitForExit(within: .seconds(20)) == .exited(0), "\(agent.transcript)")
        let sessionEnd = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)")
        #expect(sessionEnd.integer("bytes") == size, "\(sessionEnd)")
        Self.expectRecordEngine(sessionEnd, aesGCM: true)
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
        #expect(device?.end == "close_notify", "\(run.transcript)")
        Self.expectRecordEngine(sessionEnd, aesGCM: true)
    }

    /// An OpenSSL client, not only the mbedTLS simulator, reads the records the agent seals: every
    /// suite of the policy's TLS 1.2 list, at a record's edges and across a few MiB, byte for byte
    /// and up to a clean close_notify (s_client exits 0 only then).
    @Test(.enabled(if: openSSL != nil, "the openssl command is not installed"),
          arguments: ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"],
          [1, 16_384, 2 * 16_384 + 15, 3 * 1024 * 1024 + 7])
    func anOpenSSLClientReadsTheImageByteForByte(suite: String, size: Int) async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let (image, testbed) = try await Self.serveRandomImage(of: size, in: scratch)
        defer { testbed.stop() }
        let agent = testbed.agent

        let received = scratch.file("received.bin")
        let client = try ChildProcess(
            name: "openssl s_client", executable: try #require(Self.openSSL),
            arguments: ["s_client", "-connect", "127.0.0.1:\(agent.port)", "-tls1_2", "-cipher", suite,
                        "-CAfile", Fixtures.certificate("agent-rsa.crt").path,
                        "-verify_hostname", "ota-agent", "-verify_return_error", "-quiet"],
            environment: Fixtures.baseEnvironment,
            stdinFile: Fixtures.certificate("device.der"), stdoutFile: received)
        defer { client.kill() }
        #expect(await client.waitForExit(within: .seconds(60)) == .exited(0), "\(transcripts(client, agent.child))")
        #expect(try await sha256Digest(of: received) == image.sha256, "\(transcripts(client, agent.child))")

        let sessionEnd = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)")
        #expect(sessionEnd["outcome"] == "updated", "\(sessionEnd)")
        #expect(sessionEnd.integer("bytes") == size, "\(sessionEnd)")
        Self.expectRecordEngine(sessionEnd, aesGCM: !suite.contains("CHACHA20"))
    }

    /// A ChaCha20-Poly1305 session has no AES-GCM sealer: mbedTLS keeps encrypting, and the note
    /// says why. The device still gets the image and a clean end.
    @Test func aChaChaSessionStaysWithTheLibraryAndSaysWhy() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(settings: ["OTA_TLS_CIPHERS": "ECDHE-RSA-CHACHA20-POLY1305"])
        defer { testbed.stop() }
        let agent = testbed.agent

        let run = try await DeviceSimulator.run(port: agent.port, options: ["--read-size", "16384"])
        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        #expect(run.onlyDevice()?.end == "close_notify", "\(run.transcript)")
        let sessionEnd = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)")
        #expect(sessionEnd["cipher"].map { $0.contains("CHACHA20") } ?? true, "\(sessionEnd)")
        Self.expectRecordEngine(sessionEnd, aesGCM: false)
        if sessionEnd["path"] == "pread" && Self.backend == "mbedtls" {
            #expect(sessionEnd["path_note"]?.contains("CHACHA20-POLY1305") == true, "\(sessionEnd)")
        }
    }

    static let openSSL = Fixtures.systemProgram("openssl")

    /// The backend the agent was built with, from its version text ("... (mbedtls: ...)").
    static let backend = AgentVersion.text.contains("(openssl:") ? "openssl" : "mbedtls"

    /// Whether this CPU has what the mbedTLS build's own AES-GCM needs (AES-NI and PCLMULQDQ).
    static let cpuCanSeal: Bool = {
        #if arch(x86_64)
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flags = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
        else { return false }
        let names = Set(flags.split(separator: " ").map(String.init))
        return names.contains("aes") && names.contains("pclmulqdq") && names.contains("sse4_1")
        #else
        return false
        #endif
    }()

    /// On the pread path the note ends by naming who encrypted the records: the mbedTLS build's
    /// own AES-GCM for an AES-GCM suite on a CPU that has the instructions, the library otherwise
    /// (with the reason, on mbedTLS). The kernel path says nothing of the kind.
    static func expectRecordEngine(_ sessionEnd: LogLine, aesGCM: Bool,
                                   sourceLocation: SourceLocation = #_sourceLocation)
    {
        guard sessionEnd["path"] == "pread" else { return }
        let note = sessionEnd["path_note"] ?? ""
        let expected: String
        switch (backend, aesGCM && cpuCanSeal) {
        case ("openssl", _): expected = "records: user-space (OpenSSL)"
        case (_, true): expected = "records: user-space AES-GCM (AES-NI)"
        case (_, false): expected = "records: user-space (mbedTLS): "
        }
        #expect(note.contains(expected), "\(sessionEnd)", sourceLocation: sourceLocation)
    }
}
