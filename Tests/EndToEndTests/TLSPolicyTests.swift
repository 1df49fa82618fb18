import Foundation
import OTAAgent
import Testing

/// What one `openssl s_client` handshake against the agent achieved.
private struct ClientProbe: CustomStringConvertible {
    let termination: Termination?
    let transcript: String

    /// The suite s_client reports ("New, TLSv1.2, Cipher is X"); nil when nothing was negotiated.
    var cipher: String? { field(after: "Cipher is ") }
    /// "TLSv1.2" or "TLSv1.3"; nil when nothing was negotiated.
    var version: String? { field(after: "New, ").map { String($0.prefix { $0 != "," }) } }

    private func field(after marker: String) -> String? {
        for line in transcript.split(separator: "\n") where line.hasPrefix("New, ") {
            guard let range = line.range(of: marker) else { continue }
            let value = line[range.upperBound...].prefix { $0 != " " }
            return value.hasPrefix("(NONE)") ? nil : String(value)
        }
        return nil
    }

    var description: String { transcript }
}

/// The policy seen from outside: real clients against a running agent, and after every refusal
/// a real device (the mbedTLS simulator) that still updates wherever the policy lets it.
@Suite("TLS policy")
struct TLSPolicyTests {
    static let openSSL = Fixtures.systemProgram("openssl")
    /// The OpenSSL build has TLS 1.3, the mbedTLS one (2.28) has not; the version text names it.
    static let backendHasTLS13 = AgentVersion.text.contains("(openssl:")

    /// One handshake by s_client with `options`. Standard input is empty, so a client that got
    /// through ends right after the handshake (the agent then counts a device that sent nothing).
    private static func probe(port: UInt16, _ options: [String]) async throws -> ClientProbe {
        let client = try ChildProcess(
            name: "openssl s_client", executable: try #require(openSSL),
            arguments: ["s_client", "-connect", "127.0.0.1:\(port)", "-servername", "ota-agent"] + options,
            environment: Fixtures.baseEnvironment)
        defer { client.kill() }
        let termination = await client.waitForExit(within: .seconds(20))
        return ClientProbe(termination: termination, transcript: client.transcript)
    }

    /// A refused probe: s_client failed, nothing was negotiated, and the agent saw the attempt
    /// (its `number`th session ended in the handshake), so the refusal is the agent's, not the
    /// client library's.
    private static func expectRefused(_ probe: ClientProbe, by agent: Agent, session number: Int,
                                      sourceLocation: SourceLocation = #_sourceLocation) async
    {
        #expect(probe.termination != .exited(0), "\(probe)", sourceLocation: sourceLocation)
        #expect(probe.cipher == nil, "\(probe)", sourceLocation: sourceLocation)
        let ended = await agent.waitForLog("session-end", number: number)
        #expect(ended?["phase"] == "handshake", "\(agent.transcript)", sourceLocation: sourceLocation)
    }

    /// The field device updates, and the agent (once mode) exits 0 after it.
    private static func expectDeviceUpdates(_ agent: Agent, server: String = "agent-rsa",
                                            sourceLocation: SourceLocation = #_sourceLocation) async throws
        -> SimulatorRun
    {
        let image = try await ServedImage.sample()
        let run = try await DeviceSimulator.run(port: agent.port, server: server)
        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)",
                      sourceLocation: sourceLocation)
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)",
                sourceLocation: sourceLocation)
        return run
    }

    /// SECLEVEL=0 lets OpenSSL 3's client offer these versions at all.
    @Test(.enabled(if: openSSL != nil, "the openssl command is not installed"),
          arguments: ["-tls1", "-tls1_1"])
    func protocolsBelowTLS12AreRefused(_ version: String) async throws {
        let testbed = try await Testbed.start()
        defer { testbed.stop() }

        let probe = try await Self.probe(port: testbed.agent.port, [version, "-cipher", "DEFAULT@SECLEVEL=0"])
        await Self.expectRefused(probe, by: testbed.agent, session: 1)
        _ = try await Self.expectDeviceUpdates(testbed.agent)
    }

    /// Suites the agent never offers, though OpenSSL's client would take them.
    @Test(.enabled(if: openSSL != nil, "the openssl command is not installed"),
          arguments: ["AES128-GCM-SHA256", "DHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA256",
                      "ECDHE-RSA-AES128-SHA"])
    func suitesWithoutECDHEOrAEADAreRefused(_ suite: String) async throws {
        let testbed = try await Testbed.start()
        defer { testbed.stop() }

        let probe = try await Self.probe(port: testbed.agent.port, ["-tls1_2", "-cipher", suite])
        await Self.expectRefused(probe, by: testbed.agent, session: 1)
        _ = try await Self.expectDeviceUpdates(testbed.agent)
    }

    @Test(.enabled(if: openSSL != nil, "the openssl command is not installed"))
    func tls13NegotiatesOnOpenSSLAndIsRefusedOnMbedTLS() async throws {
        let testbed = try await Testbed.start()
        defer { testbed.stop() }

        let probe = try await Self.probe(port: testbed.agent.port, ["-tls1_3"])
        if Self.backendHasTLS13 {
            #expect(probe.version == "TLSv1.3", "\(probe)")
            // The server's preference: AES-GCM first, AES-128 before AES-256.
            #expect(probe.cipher == "TLS_AES_128_GCM_SHA256", "\(probe)")
            #expect(probe.transcript.contains("Compression: NONE"), "\(probe)")
        } else {
            await Self.expectRefused(probe, by: testbed.agent, session: 1)
        }
        // TLS 1.2 default: the suite ESP-IDF's default build and an RSA certificate share.
        let tls12 = try await Self.probe(port: testbed.agent.port, ["-tls1_2"])
        #expect(tls12.version == "TLSv1.2" && tls12.cipher == "ECDHE-RSA-AES128-GCM-SHA256", "\(tls12)")
        #expect(tls12.transcript.contains("Compression: NONE"), "\(tls12)")
        _ = try await Self.expectDeviceUpdates(testbed.agent)
    }

    @Test(.enabled(if: openSSL != nil, "the openssl command is not installed"))
    func minimumTLS13LocksOutTLS12DevicesOrIsAConfigurationError() async throws {
        if !Self.backendHasTLS13 {
            let environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
            let agent = try Agent.launch(environment: environment, arguments: ["--tls-min-version", "1.3"])
            defer { agent.kill() }
            #expect(await agent.waitForExit(within: .seconds(15)) == .exited(2), "\(agent.transcript)")
            #expect(agent.stderr.text.contains("configuration error: --tls-min-version: "),
                    "named as given, the flag: \(agent.transcript)")
            #expect(agent.stderr.text.contains("TLS 1.2 only"), "\(agent.transcript)")
            return
        }

        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(settings: ["OTA_TLS_MIN_VERSION": "1.3"])
        defer { testbed.stop() }
        let agent = testbed.agent
        let warning = agent.log("tls-policy").first
        #expect(warning?.level == "warning", "\(agent.transcript)")
        #expect(warning?["reason"]?.contains("TLS 1.2-only field devices are locked out") == true,
                "\(agent.transcript)")

        let tls12 = try await Self.probe(port: agent.port, ["-tls1_2"])
        await Self.expectRefused(tls12, by: agent, session: 1)
        let device = try await DeviceSimulator.run(port: agent.port)
        #expect(device.termination != .exited(0), "\(device.transcript)")
        #expect(device.onlyDevice()?.outcome != "updated", "\(device.transcript)")
        #expect((await agent.waitForLog("session-end", number: 2))?["phase"] == "handshake", "\(agent.transcript)")

        // A TLS 1.3 client with a genuine attestation certificate still gets the image.
        let received = scratch.file("received.bin")
        let client = try ChildProcess(
            name: "openssl s_client", executable: try #require(Self.openSSL),
            arguments: ["s_client", "-connect", "127.0.0.1:\(agent.port)", "-tls1_3",
                        "-CAfile", Fixtures.certificate("agent-rsa.crt").path,
                        "-verify_hostname", "ota-agent", "-verify_return_error", "-quiet"],
            environment: Fixtures.baseEnvironment,
            stdinFile: Fixtures.certificate("device.der"), stdoutFile: received)
        defer { client.kill() }
        #expect(await client.waitForExit(within: .seconds(20)) == .exited(0), "\(transcripts(client, agent.child))")
        #expect(try await sha256Digest(of: received) == image.sha256, "\(transcripts(client, agent.child))")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
    }

    @Test(.enabled(if: openSSL != nil, "the openssl command is not installed"))
    func oneSuiteCipherListIsHonoured() async throws {
        let testbed = try await Testbed.start(settings: ["OTA_TLS_CIPHERS": "ECDHE-RSA-AES256-GCM-SHA384",
                                                         "OTA_LOG_LEVEL": "debug"])
        defer { testbed.stop() }
        let agent = testbed.agent
        #expect(agent.log("starting").first?["tls_ciphers"] == "ECDHE-RSA-AES256-GCM-SHA384", "\(agent.transcript)")

        // The suite the agent would otherwise prefer is gone.
        let other = try await Self.probe(port: agent.port, ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"])
        await Self.expectRefused(other, by: agent, session: 1)
        // A client offering everything gets the one suite left, on TLS 1.2 even if it asks for
        // more: with no TLS 1.3 suite named, the agent has no TLS 1.3 to offer.
        let any = try await Self.probe(port: agent.port, [])
        #expect(any.version == "TLSv1.2" && any.cipher == "ECDHE-RSA-AES256-GCM-SHA384", "\(any)")

        let run = try await Self.expectDeviceUpdates(agent)
        #expect(run.transcript.contains("TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384"), "\(run.transcript)")
        let handshakes = agent.log("handshake").compactMap { $0["cipher"] }
        #expect(!handshakes.isEmpty && handshakes.allSatisfy { $0.contains("AES256-GCM-SHA384")
                                                              || $0.contains("AES-256-GCM-SHA384") },
                "\(agent.transcript)")
    }

    /// Settings outside the policy stop the agent before it serves anything.
    @Test(arguments: [
        (["OTA_TLS_CIPHERS": "ECDHE-RSA-AES128-SHA"], [String](), "OTA_TLS_CIPHERS: "),
        ([:], ["--tls-ciphers", "AES128-GCM-SHA256"], "--tls-ciphers: "),
        (["OTA_TLS_MIN_VERSION": "1.1"], [], "OTA_TLS_MIN_VERSION"),
        ([:], ["--tls-min-version", "TLSv1.3"], "--tls-min-version"),
    ])
    func settingOutsideThePolicyExitsTwoNamingIt(_ settings: [String: String], _ arguments: [String],
                                                 _ name: String) async throws
    {
        let environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL).merging(settings) { _, new in new }
        let agent = try Agent.launch(environment: environment, arguments: arguments)
        defer { agent.kill() }
        #expect(await agent.waitForExit(within: .seconds(15)) == .exited(2), "\(agent.transcript)")
        #expect(agent.stderr.text.contains("configuration error: \(name)"), "\(agent.transcript)")
        #expect(!agent.stderr.text.contains("listening"), "\(agent.transcript)")
    }
}
