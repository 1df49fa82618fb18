import Foundation
import Testing

/// Verified devices get exactly the image, over either TLS stack and either server key type.
@Suite("Updates")
struct UpdateTests {
    @Test func verifiedDeviceReceivesExactlyTheImageAndAgentExitsZero() async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start()
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        let received = scratch.file("received.bin")
        let run = try await DeviceSimulator.run(port: agent.port, options: ["--output", received.path])

        #expect(run.termination == .exited(0), "\(run.transcript)\n\(agent.transcript)")
        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        let bytes = try Data(contentsOf: received)
        #expect(bytes == (try Data(contentsOf: image.url)), "written image differs: \(bytes.count) bytes")

        let ending = await agent.child.waitForExit(within: .seconds(15))
        #expect(ending == .exited(0), "\(agent.transcript)")
        let sessionEnd = try #require((await agent.waitForLog("session-end")), "\(agent.transcript)")
        #expect(sessionEnd["outcome"] == "updated", "\(sessionEnd)")
        #expect(sessionEnd["phase"] == "done", "\(sessionEnd)")
        // Without the kernel's TLS module (this host's kernel has none) the fallback path is used.
        let kernelTLS = FileManager.default.fileExists(atPath: "/proc/net/tls_stat")
        let allowedPaths = kernelTLS ? ["pread", "ktls-sendfile"] : ["pread"]
        #expect(allowedPaths.contains(sessionEnd["path"] ?? ""), "\(sessionEnd)")
        #expect(sessionEnd.integer("bytes") == image.size, "\(sessionEnd)")
        #expect(sessionEnd["cert"]?.contains("CN=esp32-device-0001") == true, "\(sessionEnd)")
        #expect(agent.log("exiting").first?["outcome"] == "updated", "\(agent.transcript)")
    }

    @Test func certificateSentInSmallPiecesWithPausesIsAccepted() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start()
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        // device.der is about 640 bytes: 13 records, 1.2 s in all, well inside the deadline.
        let certificateSize = try Data(contentsOf: Fixtures.certificate("device.der")).count
        let pieces = (certificateSize + 49) / 50
        let run = try await DeviceSimulator.run(port: agent.port, options: ["--chunk", "50", "--pause-ms", "100"])

        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        #expect(run.transcript.contains("sent \(certificateSize) bytes in \(pieces) piece(s)"),
                "the certificate did not go in pieces\n\(run.transcript)")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
    }

    @Test func ecdsaServerCertificateServesTheImage() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(server: "agent-ec")
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        let run = try await DeviceSimulator.run(port: agent.port, server: "agent-ec")

        #expect(run.transcript.contains("ECDSA"), "not an ECDSA handshake\n\(run.transcript)")
        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
    }

    static let openSSL = Fixtures.systemProgram("openssl")

    /// The other TLS stack as the client: OpenSSL's s_client instead of the mbedTLS simulator.
    @Test(.enabled(if: openSSL != nil, "the openssl command is not installed"))
    func openSSLClientReceivesExactlyTheImage() async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start()
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        // -quiet implies -ign_eof: s_client sends stdin (the DER), then prints until the server ends.
        let received = scratch.file("received.bin")
        let client = try ChildProcess(
            name: "openssl s_client", executable: try #require(Self.openSSL),
            arguments: ["s_client", "-connect", "127.0.0.1:\(agent.port)", "-tls1_2",
                        "-CAfile", Fixtures.certificate("agent-rsa.crt").path,
                        "-verify_hostname", "ota-agent", "-verify_return_error", "-quiet"],
            environment: Fixtures.baseEnvironment,
            stdinFile: Fixtures.certificate("device.der"), stdoutFile: received)
        defer { client.kill() }

        let clientEnding = await client.waitForExit(within: .seconds(20))
        #expect(clientEnding == .exited(0), "\(transcripts(client, agent.child))")
        #expect(try await sha256Digest(of: received) == image.sha256, "\(transcripts(client, agent.child))")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
        #expect((await agent.waitForLog("session-end"))?["outcome"] == "updated", "\(agent.transcript)")
    }

    @Test(.enabled(if: LoopbackSocket.ipv6LoopbackAvailable, "::1 cannot be bound on this host"))
    func agentBoundToIPv6LoopbackServesADevice() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(settings: ["OTA_BIND": "::1"])
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)
        #expect(agent.log("listening").first?["address"] == "::1", "\(agent.transcript)")

        let run = try await DeviceSimulator.run(port: agent.port, host: "::1")

        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        #expect((await agent.waitForLog("session-end"))?["device"]?.hasPrefix("[::1]:") == true, "\(agent.transcript)")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
    }

    @Test func serveModeUpdatesSeveralDevicesAtOnceAndStopsCleanly() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(settings: ["OTA_MODE": "serve"])
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        let run = try await DeviceSimulator.run(port: agent.port, options: ["--devices", "4"])

        #expect(run.termination == .exited(0), "\(run.transcript)\n\(agent.transcript)")
        #expect(run.devices.count == 4, "\(run.transcript)")
        for device in run.devices {
            expectUpdated(device, with: image, "\(run.transcript)\n\(agent.transcript)")
        }
        #expect(await agent.waitForLog("session-end", number: 4) != nil, "\(agent.transcript)")
        #expect(agent.child.isRunning, "serve mode must go on after an update\n\(agent.transcript)")

        // Stopped after updating devices: a success, not an interruption.
        agent.child.send(SIGTERM)
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
        let exiting = agent.log("exiting").first
        #expect(exiting?["outcome"] == "updated" && exiting?.integer("updated") == 4, "\(agent.transcript)")
    }
}
