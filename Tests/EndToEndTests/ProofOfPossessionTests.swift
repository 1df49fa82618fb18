import Foundation
import OTAAgent
import Testing

/// A certificate is public data: sending it proves nothing. A device that presents it as its
/// TLS client certificate proves, by the handshake's signature, that it holds the key (the
/// OpenSSL build asks every device for one; the mbedTLS build cannot, and says so). On top of
/// that the orchestrator can demand the proof and pin the device it expects, by fingerprint
/// and by address. Every refusal here is before Dice-Auth is asked, with zero image bytes.
@Suite("Proof of possession and device pinning")
struct ProofOfPossessionTests {
    /// The OpenSSL build asks devices for a client certificate; the mbedTLS build (2.28) never does.
    static let backendAsks = AgentVersion.text.contains("(openssl:")

    /// The simulator options of a device that proves possession of its certificate's key.
    static func proving(key: String = "device.key") -> [String] {
        ["--proof", "--key", Fixtures.certificate(key).path]
    }

    /// `session-end` number `number`, which must exist.
    static func sessionEnd(_ agent: Agent, number: Int = 1,
                           sourceLocation: SourceLocation = #_sourceLocation) async throws -> LogLine {
        try #require(await agent.waitForLog("session-end", number: number), "\(agent.transcript)",
                     sourceLocation: sourceLocation)
    }

    /// A refusal by the policy: zero bytes on both sides, the reason logged with the
    /// fingerprint, and Dice-Auth never asked about it.
    static func expectRefusedByPolicy(_ run: SimulatorRun, _ testbed: Testbed, session number: Int,
                                      fingerprint: String, reason: String, proof: String = "no",
                                      sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let agent = testbed.agent
        expectRefused(run.onlyDevice(), "\(run.transcript)\n\(agent.transcript)", sourceLocation: sourceLocation)
        let ended = try await sessionEnd(agent, number: number, sourceLocation: sourceLocation)
        #expect(ended["outcome"] == "refused" && ended.integer("bytes") == 0, "\(ended)",
                sourceLocation: sourceLocation)
        #expect(ended["verdict"] == "none" && ended["proof"] == proof, "\(ended)", sourceLocation: sourceLocation)
        #expect(ended["reason"]?.contains(reason) == true, "\(ended)", sourceLocation: sourceLocation)
        let refusal = agent.log("policy-refused").last
        #expect(refusal?["cert_sha256"] == fingerprint, "\(agent.transcript)", sourceLocation: sourceLocation)
        #expect(refusal?["fp"] == String(fingerprint.prefix(12)), "\(agent.transcript)",
                sourceLocation: sourceLocation)
        #expect(testbed.verifier.requests.isEmpty, "Dice-Auth was asked\n\(testbed.verifier.child.transcript)",
                sourceLocation: sourceLocation)
    }

    @Test func legacyAndProvingDevicesBothUpdateAndTheLogSaysWhichProved() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(settings: ["OTA_MODE": "serve"])
        defer { testbed.stop() }
        let agent = testbed.agent
        let policy = try #require(agent.log("device-policy").first, "\(agent.transcript)")
        #expect(policy["proof_supported"] == (Self.backendAsks ? "yes" : "no"), "\(policy)")

        // Today's field device: no client certificate, even though the OpenSSL agent asks for one.
        let legacy = try await DeviceSimulator.run(port: agent.port)
        expectUpdated(legacy.onlyDevice(), with: image, "\(legacy.transcript)\n\(agent.transcript)")
        let legacyEnd = try await Self.sessionEnd(agent)
        #expect(legacyEnd["outcome"] == "updated" && legacyEnd["proof"] == "no", "\(legacyEnd)")

        let proving = try await DeviceSimulator.run(port: agent.port, options: Self.proving())
        expectUpdated(proving.onlyDevice(), with: image, "\(proving.transcript)\n\(agent.transcript)")
        let provingEnd = try await Self.sessionEnd(agent, number: 2)
        // The mbedTLS agent never asks, so the same device is a legacy device there.
        let expectedProof = Self.backendAsks ? "yes" : "no"
        #expect(provingEnd["outcome"] == "updated" && provingEnd["proof"] == expectedProof, "\(provingEnd)")
        #expect(agent.log("verdict").last?["proof"] == expectedProof, "\(agent.transcript)")

        agent.child.send(SIGTERM)
        #expect(await agent.child.waitForExit(within: .seconds(10)) == .exited(0), "\(agent.transcript)")
    }

    @Test func handshakeCertificateOtherThanTheOneSentIsRefusedWithZeroBytes() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start()
        defer { testbed.stop() }
        let fingerprint = try await sha256Digest(of: Fixtures.certificate("device.der"))

        // device-2 proves its own key in the handshake, then sends device's certificate as data.
        let run = try await DeviceSimulator.run(port: testbed.agent.port, options: [
            "--handshake-cert", Fixtures.certificate("device-2.der").path,
            "--handshake-key", Fixtures.certificate("device-2.key").path,
        ])

        guard Self.backendAsks else {
            // Not asked for a certificate, it is a legacy device sending a certificate Dice-Auth verifies.
            expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(testbed.agent.transcript)")
            #expect(try await Self.sessionEnd(testbed.agent)["proof"] == "no", "\(testbed.agent.transcript)")
            return
        }
        try await Self.expectRefusedByPolicy(run, testbed, session: 1, fingerprint: fingerprint,
                                             reason: "not the one presented in the TLS handshake")
        let device2 = try await sha256Digest(of: Fixtures.certificate("device-2.der"))
        #expect(testbed.agent.log("policy-refused").first?["presented_fp"] == String(device2.prefix(12)),
                "\(testbed.agent.transcript)")
        #expect(testbed.agent.child.isRunning, "a refusal must not end the run\n\(testbed.agent.transcript)")
    }

    @Test func copiedCertificateWithoutItsKeyFailsTheHandshake() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start()
        defer { testbed.stop() }
        let agent = testbed.agent

        // device's public certificate, signed for with another device's key.
        let run = try await DeviceSimulator.run(port: agent.port, options: Self.proving(key: "device-2.key"))

        guard Self.backendAsks else {
            expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
            #expect(try await Self.sessionEnd(agent)["proof"] == "no", "\(agent.transcript)")
            return
        }
        let device = try #require(run.onlyDevice())
        #expect(device.outcome == "error" && device.line["phase"] == "handshake", "\(run.transcript)")
        #expect(device.bytes == 0, "\(run.transcript)")
        let ended = try await Self.sessionEnd(agent)
        #expect(ended["phase"] == "handshake" && ended["outcome"] == "failed", "\(ended)")
        #expect(ended.integer("bytes") == 0, "\(ended)")
        #expect(ended["reason"]?.contains("bad signature") == true, "\(ended)")
        #expect(testbed.verifier.requests.isEmpty, "\(testbed.verifier.child.transcript)")

        // The real device, key and all, is still served.
        let genuine = try await DeviceSimulator.run(port: agent.port, options: Self.proving())
        expectUpdated(genuine.onlyDevice(), with: image, "\(genuine.transcript)\n\(agent.transcript)")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
    }

    /// A DICE-style device certificate under the fleet's root (CA:TRUE, keyCertSign only, the
    /// critical DICE extension) valid from `start` to `end` (YYYYMMDDHHMMSSZ): DER and key.
    static func deviceCertificate(in scratch: ScratchFolder, from start: String, to end: String) async throws
        -> (der: URL, key: URL)
    {
        let config = """
            [ca]
            default_ca = fleet
            [fleet]
            database = \(scratch.file("index.txt").path)
            new_certs_dir = \(scratch.url.path)
            serial = \(scratch.file("serial").path)
            default_md = sha256
            policy = anything
            unique_subject = no
            [anything]
            commonName = supplied
            organizationName = optional
            [device]
            basicConstraints = critical, CA:TRUE
            keyUsage = critical, keyCertSign
            1.3.6.1.4.1.11129.2.1.24 = critical, DER:30:00
            """
        let configFile = try scratch.write("ca.cnf", Array(config.utf8))
        _ = try scratch.write("index.txt", [])
        _ = try scratch.write("serial", Array("01\n".utf8))
        let (key, request, pem, der) = (scratch.file("device.key"), scratch.file("device.csr"),
                                        scratch.file("device.crt"), scratch.file("device.der"))
        try await StartupCheckTests.runTool("openssl", [
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key.path,
            "-subj", "/CN=esp32-device-dated/O=ota-agent demo fleet", "-out", request.path,
        ])
        try await StartupCheckTests.runTool("openssl", [
            "ca", "-batch", "-config", configFile.path, "-cert", Fixtures.certificate("dice-root.crt").path,
            "-keyfile", Fixtures.certificate("dice-root.key").path, "-extensions", "device", "-in", request.path,
            "-out", pem.path, "-startdate", start, "-enddate", end, "-notext",
        ])
        try await StartupCheckTests.runTool("openssl", ["x509", "-in", pem.path, "-outform", "DER", "-out", der.path])
        return (der, key)
    }

    /// Dates say nothing about who holds the key: the TLS layer lets an expired (or not yet
    /// valid) certificate prove possession, and Dice-Auth, as for a legacy device, judges the
    /// dates (and refuses).
    @Test(.enabled(if: Fixtures.systemProgram("openssl") != nil, "the openssl command is not installed"),
          arguments: [("20200101000000Z", "20210101000000Z"), ("20900101000000Z", "20910101000000Z")])
    func certificateOutsideItsDatesStillProvesItsKeyAndDiceAuthJudgesTheDates(start: String, end: String)
        async throws
    {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let (der, key) = try await Self.deviceCertificate(in: scratch, from: start, to: end)
        let testbed = try await Testbed.start()
        defer { testbed.stop() }
        let agent = testbed.agent

        let run = try await DeviceSimulator.run(port: agent.port, payload: der,
                                                options: ["--handshake-cert", der.path, "--handshake-key", key.path])

        expectRefused(run.onlyDevice(), "\(run.transcript)\n\(agent.transcript)")
        let ended = try await Self.sessionEnd(agent)
        #expect(ended["phase"] == "attestation" && ended["verdict"] == "rejected", "\(ended)")
        #expect(ended["proof"] == (Self.backendAsks ? "yes" : "no"), "\(ended)")
        #expect(ended["cert"]?.contains("esp32-device-dated") == true, "\(ended)")
        let requests = await testbed.verifier.waitForRequests(1)
        #expect(requests.count == 1, "Dice-Auth must judge the dates\n\(testbed.verifier.child.transcript)")
    }

    @Test func requireProofRefusesALegacyReplayAndUpdatesTheProvingDevice() async throws {
        guard Self.backendAsks else {
            // The mbedTLS build cannot check the proof, so demanding it is a configuration error.
            for (settings, arguments, name) in [(["OTA_REQUIRE_PROOF": "1"], [String](), "OTA_REQUIRE_PROOF"),
                                                ([:], ["--require-proof"], "--require-proof")] {
                let environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
                    .merging(settings) { _, new in new }
                let agent = try Agent.launch(environment: environment, arguments: arguments)
                defer { agent.kill() }
                #expect(await agent.waitForExit(within: .seconds(15)) == .exited(2), "\(agent.transcript)")
                let text = agent.stderr.text
                #expect(text.contains("configuration error: \(name): the "), "named as given: \(text)")
                #expect(text.contains("mbedTLS 2.28") && text.contains("use the OpenSSL build"), "\(text)")
            }
            return
        }
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(settings: ["OTA_REQUIRE_PROOF": "1"])
        defer { testbed.stop() }
        let agent = testbed.agent
        #expect(agent.log("device-policy").first?["require_proof"] == "yes", "\(agent.transcript)")
        let fingerprint = try await sha256Digest(of: Fixtures.certificate("device.der"))

        // Anyone who has seen the certificate can send it as data: refused.
        let replay = try await DeviceSimulator.run(port: agent.port)
        try await Self.expectRefusedByPolicy(replay, testbed, session: 1, fingerprint: fingerprint,
                                             reason: "legacy device")

        let proving = try await DeviceSimulator.run(port: agent.port, options: Self.proving())
        expectUpdated(proving.onlyDevice(), with: image, "\(proving.transcript)\n\(agent.transcript)")
        let ended = try await Self.sessionEnd(agent, number: 2)
        #expect(ended["outcome"] == "updated" && ended["proof"] == "yes", "\(ended)")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
    }

    @Test func fingerprintPinningServesOnlyTheExpectedDevice() async throws {
        let image = try await ServedImage.sample()
        let fingerprint = try await sha256Digest(of: Fixtures.certificate("device.der"))
        let other = try await sha256Digest(of: Fixtures.certificate("device-2.der"))
        // Upper case with colons, as certificate tools print fingerprints.
        let pairs = stride(from: 0, to: 64, by: 2).map { offset -> String in
            let start = fingerprint.index(fingerprint.startIndex, offsetBy: offset)
            return fingerprint[start..<fingerprint.index(start, offsetBy: 2)].uppercased()
        }
        let testbed = try await Testbed.start(settings: ["OTA_EXPECTED_DEVICES": pairs.joined(separator: ":")])
        defer { testbed.stop() }
        let agent = testbed.agent
        #expect(agent.log("device-policy").first?["expected_devices"] == fingerprint, "\(agent.transcript)")

        // A second device of the fleet, one Dice-Auth would verify, proving its own key even.
        let second = try await DeviceSimulator.run(port: agent.port, attestation: "device-2.der",
                                                   options: Self.proving(key: "device-2.key"))
        try await Self.expectRefusedByPolicy(second, testbed, session: 1, fingerprint: other,
                                             reason: "not an expected device",
                                             proof: Self.backendAsks ? "yes" : "no")

        // A legacy replay of that second device's certificate: refused the same way.
        let replay = try await DeviceSimulator.run(port: agent.port, attestation: "device-2.der")
        try await Self.expectRefusedByPolicy(replay, testbed, session: 2, fingerprint: other,
                                             reason: "not an expected device")

        // The device the job is for is still served, and the once run ends with it.
        let expected = try await DeviceSimulator.run(port: agent.port)
        expectUpdated(expected.onlyDevice(), with: image, "\(expected.transcript)\n\(agent.transcript)")
        let ended = try await Self.sessionEnd(agent, number: 3)
        #expect(ended["outcome"] == "updated" && ended["fp"] == String(fingerprint.prefix(12)), "\(ended)")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
    }
}

/// `--allow-peer` / `OTA_DEVICE_ADDRESS`: connections from any other address are reset at
/// accept, before the TLS handshake; IPv4-mapped IPv6 addresses count as their IPv4 form.
@Suite("Peer address pinning")
struct PeerAddressPinningTests {
    /// A connection refused at accept: the device never completes a handshake, gets nothing, and
    /// the agent logs the address it turned away. The reset reaches the device during its
    /// handshake, or, on a busy machine, before its connect has even reported success.
    static func expectTurnedAway(_ run: SimulatorRun, _ agent: Agent, from source: String, number: Int,
                                 sourceLocation: SourceLocation = #_sourceLocation) async {
        let device = run.onlyDevice(sourceLocation: sourceLocation)
        #expect(device?.outcome == "error" && ["connect", "handshake"].contains(device?.line["phase"] ?? ""),
                "\(run.transcript)", sourceLocation: sourceLocation)
        #expect(device?.bytes == 0, "\(run.transcript)", sourceLocation: sourceLocation)
        let refusal = await agent.waitForLog("refused-connection", number: number)
        #expect(refusal?["device"]?.hasPrefix("\(source):") == true, "\(agent.transcript)",
                sourceLocation: sourceLocation)
        #expect(refusal?["reason"]?.contains("OTA_DEVICE_ADDRESS") == true, "\(agent.transcript)",
                sourceLocation: sourceLocation)
    }

    @Test func onlyTheAllowedAddressIsServedAndStillServedAfterOthers() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(settings: ["OTA_DEVICE_ADDRESS": "127.0.0.2"])
        defer { testbed.stop() }
        let agent = testbed.agent

        // The right certificate, even proving its key, from the wrong addresses.
        let fromDefault = try await DeviceSimulator.run(port: agent.port, options: ProofOfPossessionTests.proving())
        await Self.expectTurnedAway(fromDefault, agent, from: "127.0.0.1", number: 1)
        let replay = try await DeviceSimulator.run(port: agent.port, options: ["--source", "127.0.0.3"])
        await Self.expectTurnedAway(replay, agent, from: "127.0.0.3", number: 2)
        #expect(agent.log("session-end").isEmpty, "a turned-away connection got a session\n\(agent.transcript)")
        #expect(testbed.verifier.requests.isEmpty, "\(testbed.verifier.child.transcript)")

        let allowed = try await DeviceSimulator.run(port: agent.port, options: ["--source", "127.0.0.2"])
        expectUpdated(allowed.onlyDevice(), with: image, "\(allowed.transcript)\n\(agent.transcript)")
        let ended = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)")
        #expect(ended["device"]?.hasPrefix("127.0.0.2:") == true && ended["outcome"] == "updated", "\(ended)")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
    }

    /// On a dual-stack socket IPv4 devices arrive as ::ffff:a.b.c.d; the allowed address may be
    /// written either way. Where the host has no IPv6 the agent listens on IPv4 alone and only
    /// the configured form is mapped.
    @Test(arguments: ["::ffff:127.0.0.2", "::FFFF:7f00:2", "127.0.0.2"])
    func ipv4MappedFormsMatchTheirIPv4Address(allowed: String) async throws {
        let image = try await ServedImage.sample()
        var settings = ["OTA_DEVICE_ADDRESS": allowed]
        if LoopbackSocket.ipv6LoopbackAvailable { settings["OTA_BIND"] = "::" }
        let testbed = try await Testbed.start(settings: settings)
        defer { testbed.stop() }
        let agent = testbed.agent
        #expect(agent.log("device-policy").first?["allowed_peers"] == "127.0.0.2", "\(agent.transcript)")

        let other = try await DeviceSimulator.run(port: agent.port)
        await Self.expectTurnedAway(other, agent, from: "127.0.0.1", number: 1)

        let allowedRun = try await DeviceSimulator.run(port: agent.port, options: ["--source", "127.0.0.2"])
        expectUpdated(allowedRun.onlyDevice(), with: image, "\(allowedRun.transcript)\n\(agent.transcript)")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
    }
}
