import Foundation
import Testing

/// The Dice-Auth cases of hardening that AttestationTests does not cover: Dice-Auth refusing
/// connections and coming back, answering past the deadline, 503 and 429 with Retry-After
/// before 200, huge, odd and truncated answers, redirects, and https with a private CA and
/// mutual TLS. In every case a refused device gets no image byte and the agent keeps serving:
/// where Dice-Auth allows it, the same agent then updates a real device.
@Suite("Dice-Auth edge cases")
struct DiceAuthEdgeTests {
    /// Files of firmware-sample/make-dice-auth-certs.sh.
    static func diceAuthFile(_ name: String) -> String {
        Fixtures.certificate("dice-auth/\(name)").path
    }

    /// The verifier serving https with its test certificate, and an agent that asks it.
    static func httpsTestbed(verifierOptions: [String] = [], settings: [String: String]) async throws -> Testbed {
        let tlsOptions = ["--tls-cert", diceAuthFile("server.crt"), "--tls-key", diceAuthFile("server.key")]
        let verifier = try await Verifier.start(tlsOptions + verifierOptions)
        do {
            let environment = Agent.environment(diceAuthURL: "https://127.0.0.1:\(verifier.port)/verify")
                .merging(settings) { _, new in new }
            return Testbed(verifier: verifier, agent: try await Agent.start(environment: environment))
        } catch {
            verifier.child.kill()
            throw error
        }
    }

    /// The next device, a genuine one, is updated by the same agent, which then exits 0
    /// (once mode).
    static func expectNextDeviceUpdated(_ agent: Agent, sourceLocation: SourceLocation = #_sourceLocation)
        async throws
    {
        let image = try await ServedImage.sample()
        let run = try await DeviceSimulator.run(port: agent.port)
        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)",
                      sourceLocation: sourceLocation)
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)",
                sourceLocation: sourceLocation)
    }

    /// The device was refused with zero bytes and the agent logged it so; returns the verdict.
    static func expectRefusal(_ run: SimulatorRun, by agent: Agent, verdict expected: String,
                              sourceLocation: SourceLocation = #_sourceLocation) async throws -> LogLine
    {
        expectRefused(run.onlyDevice(), "\(run.transcript)\n\(agent.transcript)", sourceLocation: sourceLocation)
        let verdict = try #require(await agent.waitForLog("verdict"), "\(agent.transcript)",
                                   sourceLocation: sourceLocation)
        #expect(verdict["verdict"] == expected, "\(verdict)", sourceLocation: sourceLocation)
        let sessionEnd = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)",
                                      sourceLocation: sourceLocation)
        #expect(sessionEnd["outcome"] == "refused" && sessionEnd.integer("bytes") == 0, "\(sessionEnd)",
                sourceLocation: sourceLocation)
        #expect(agent.child.isRunning, "a refusal must not end the run\n\(agent.transcript)",
                sourceLocation: sourceLocation)
        return verdict
    }

    // MARK: plain HTTP

    @Test func refusedConnectionsThenDiceAuthBackUpdatesTheNextDevice() async throws {
        let port = try LoopbackSocket.closedPort()
        var environment = Agent.environment(diceAuthURL: "http://127.0.0.1:\(port)/verify")
        environment["OTA_DICE_AUTH_TIMEOUT"] = "2"
        let agent = try await Agent.start(environment: environment)
        defer { agent.child.kill() }

        let refused = try await DeviceSimulator.run(port: agent.port, within: .seconds(15))
        let verdict = try await Self.expectRefusal(refused, by: agent, verdict: "unavailable")
        #expect(verdict["reason"]?.isEmpty == false, "\(verdict)")

        let verifier = try await Verifier.start(["--listen", "127.0.0.1:\(port)"])
        defer { verifier.child.kill() }
        try await Self.expectNextDeviceUpdated(agent)
        #expect((await verifier.waitForRequests(1)).map { $0["status"] } == ["200"], "\(verifier.child.transcript)")
    }

    @Test func answerPastTheDeadlineRefusesThenTheNextDeviceIsUpdated() async throws {
        let testbed = try await Testbed.start(verifierOptions: ["--sequence", "slow=3500"],
                                              settings: ["OTA_DICE_AUTH_TIMEOUT": "1.5"])
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        let late = try await DeviceSimulator.run(port: agent.port, within: .seconds(15))
        let verdict = try await Self.expectRefusal(late, by: agent, verdict: "unavailable")
        let waited = verdict.integer("dice_auth_ms") ?? -1
        #expect((1400...2500).contains(waited), "the deadline, no more: \(verdict)")
        // Dice-Auth answers one request at a time: let it finish the late answer first.
        #expect(await verifier.waitForRequests(1).count == 1, "\(verifier.child.transcript)")

        try await Self.expectNextDeviceUpdated(agent)
    }

    /// 503, then 429 with Retry-After: 1, then a real verification: the third attempt updates
    /// the device, and each Retry-After was waited for.
    @Test func serviceUnavailableThenTooManyRequestsThenVerified() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(verifierOptions: ["--sequence", "503,429", "--retry-after", "1"])
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        let run = try await DeviceSimulator.run(port: agent.port)

        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        let verdict = try #require(await agent.waitForLog("verdict"), "\(agent.transcript)")
        #expect(verdict["verdict"] == "verified" && verdict.integer("attempts") == 3, "\(verdict)")
        #expect((verdict.integer("dice_auth_ms") ?? 0) >= 2000, "Retry-After: 1 not honoured twice? \(verdict)")
        #expect((await verifier.waitForRequests(3)).map { $0["status"] } == ["503", "429", "200"],
                "\(verifier.child.transcript)")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
    }

    /// A Retry-After beyond the decision deadline is not waited for: no verdict at once, and
    /// the device after it is served normally.
    @Test func retryAfterBeyondTheDeadlineGivesUpAtOnce() async throws {
        let testbed = try await Testbed.start(verifierOptions: ["--sequence", "429", "--retry-after", "30"],
                                              settings: ["OTA_DICE_AUTH_TIMEOUT": "3"])
        defer { testbed.stop() }
        let agent = testbed.agent

        let run = try await DeviceSimulator.run(port: agent.port, within: .seconds(15))
        let verdict = try await Self.expectRefusal(run, by: agent, verdict: "unavailable")
        #expect(verdict.integer("attempts") == 1 && verdict.integer("http_status") == 429, "\(verdict)")
        #expect((verdict.integer("dice_auth_ms") ?? .max) < 1000, "waited for nothing: \(verdict)")

        try await Self.expectNextDeviceUpdated(agent)
    }

    /// Only the status decides, and an answer may be at most 64 KiB: a 200 of exactly 64 KiB
    /// verifies, one byte more is no verdict (not retried: it would be as large again).
    @Test(arguments: [(65536, true), (65537, false), (4 * 1024 * 1024, false)])
    func answerOfTwoHundredWithALargeBody(bytes: Int, verifies: Bool) async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(verifierOptions: ["--sequence", "huge=\(bytes)"])
        defer { testbed.stop() }
        let agent = testbed.agent

        let run = try await DeviceSimulator.run(port: agent.port)

        if verifies {
            expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
            #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
            return
        }
        let verdict = try await Self.expectRefusal(run, by: agent, verdict: "unavailable")
        #expect(verdict["reason"]?.contains("64 KiB") == true && verdict.integer("attempts") == 1, "\(verdict)")
        try await Self.expectNextDeviceUpdated(agent)
    }

    /// A 200 whose body is binary noise still verifies (only the status counts), and does not
    /// upset the logs.
    @Test func answerOfTwoHundredWithAnOddBodyVerifies() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(verifierOptions: ["--sequence", "odd"])
        defer { testbed.stop() }
        let agent = testbed.agent

        let run = try await DeviceSimulator.run(port: agent.port)

        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        let verdict = try #require(await agent.waitForLog("verdict"), "\(agent.transcript)")
        #expect(verdict["verdict"] == "verified" && verdict.integer("attempts") == 1, "\(verdict)")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
    }

    /// A 200 that ends before the body it announced is a broken answer, not a verdict: it is
    /// retried, and the retry's real 200 updates the device.
    @Test func truncatedAnswerIsNoVerdictAndIsRetried() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(verifierOptions: ["--sequence", "truncated"])
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        let run = try await DeviceSimulator.run(port: agent.port)

        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        let verdict = try #require(await agent.waitForLog("verdict"), "\(agent.transcript)")
        #expect(verdict["verdict"] == "verified" && verdict.integer("attempts") == 2, "\(verdict)")
        #expect((await verifier.waitForRequests(2)).count == 2, "\(verifier.child.transcript)")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
    }

    /// A 302 to another address (where a verifier would say 200) is not followed: the device is
    /// refused on the 302, the other address never hears of it.
    @Test func redirectToAnotherAddressIsNotFollowed() async throws {
        let elsewhereAddress = LoopbackSocket.ipv6LoopbackAvailable ? "[::1]" : "127.0.0.1"
        let elsewhere = try await Verifier.start(["--listen", "\(elsewhereAddress):0"])
        defer { elsewhere.child.kill() }
        let location = "http://\(elsewhereAddress):\(elsewhere.port)/verify"
        let testbed = try await Testbed.start(verifierOptions: ["--sequence", "redirect", "--redirect-to", location])
        defer { testbed.stop() }
        let agent = testbed.agent

        let run = try await DeviceSimulator.run(port: agent.port)
        let verdict = try await Self.expectRefusal(run, by: agent, verdict: "rejected")
        #expect(verdict.integer("http_status") == 302 && verdict.integer("attempts") == 1, "\(verdict)")

        try await Self.expectNextDeviceUpdated(agent)
        #expect(elsewhere.requests.isEmpty, "the redirect was followed\n\(elsewhere.child.transcript)")
    }

    // MARK: https

    @Test func httpsWithAPrivateCATrustedThroughDiceAuthCAPath() async throws {
        let testbed = try await Self.httpsTestbed(settings: ["DICE_AUTH_CA_PATH": Self.diceAuthFile("ca.crt")])
        defer { testbed.stop() }

        try await Self.expectNextDeviceUpdated(testbed.agent)
        #expect((await testbed.verifier.waitForRequests(1)).map { $0["status"] } == ["200"],
                "\(testbed.verifier.child.transcript)")
    }

    /// A certificate that does not verify (the system store, or another CA than Dice-Auth's) is
    /// a final "no verdict": one attempt, no request ever reaches Dice-Auth unprotected.
    @Test(arguments: [nil, "dice-auth/client-ca.crt", "dice-root.crt"])
    func httpsCertificateThatDoesNotVerifyIsFinal(caFile: String?) async throws {
        let settings = caFile.map { ["DICE_AUTH_CA_PATH": Fixtures.certificate($0).path] } ?? [:]
        let testbed = try await Self.httpsTestbed(settings: settings)
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        let run = try await DeviceSimulator.run(port: agent.port)
        let verdict = try await Self.expectRefusal(run, by: agent, verdict: "unavailable")
        #expect(verdict.integer("attempts") == 1, "a certificate problem is not retried: \(verdict)")
        #expect(verdict["reason"]?.contains("does not verify") == true, "\(verdict)")
        _ = await verifier.child.stderr.firstLine(within: .seconds(5)) { $0.contains("TLS handshake failed") }
        #expect(verifier.requests.isEmpty, "\(verifier.child.transcript)")
        #expect(verifier.child.stderr.lines.contains { $0.contains("TLS handshake failed") },
                "\(verifier.child.transcript)")

        agent.child.send(SIGTERM)
        #expect(await agent.child.waitForExit(within: .seconds(10)) == .exited(143), "\(agent.transcript)")
    }

    /// The server certificate names localhost and 127.0.0.1, not ::1: trusted CA, wrong name.
    @Test(.enabled(if: LoopbackSocket.ipv6LoopbackAvailable, "needs the IPv6 loopback address ::1"))
    func httpsCertificateForAnotherNameIsFinal() async throws {
        let verifier = try await Verifier.start(["--listen", "[::1]:0", "--tls-cert", Self.diceAuthFile("server.crt"),
                                                 "--tls-key", Self.diceAuthFile("server.key")])
        defer { verifier.child.kill() }
        var environment = Agent.environment(diceAuthURL: "https://[::1]:\(verifier.port)/verify")
        environment["DICE_AUTH_CA_PATH"] = Self.diceAuthFile("ca.crt")
        let agent = try await Agent.start(environment: environment)
        defer { agent.child.kill() }

        let run = try await DeviceSimulator.run(port: agent.port)
        let verdict = try await Self.expectRefusal(run, by: agent, verdict: "unavailable")
        #expect(verdict.integer("attempts") == 1 && verdict["reason"]?.contains("does not verify") == true,
                "\(verdict)")
        #expect(verifier.requests.isEmpty, "\(verifier.child.transcript)")
    }

    @Test func mutualTLSWithTheClientCertificateUpdatesTheDevice() async throws {
        let testbed = try await Self.httpsTestbed(
            verifierOptions: ["--tls-client-ca", Self.diceAuthFile("client-ca.crt")],
            settings: ["DICE_AUTH_CA_PATH": Self.diceAuthFile("ca.crt"),
                       "DICE_AUTH_CLIENT_CERT_PATH": Self.diceAuthFile("client.crt"),
                       "DICE_AUTH_CLIENT_KEY_PATH": Self.diceAuthFile("client.key")])
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        try await Self.expectNextDeviceUpdated(agent)
        let request = try #require(await verifier.waitForRequests(1).first, "\(verifier.child.transcript)")
        #expect(request["status"] == "200" && request["client"]?.contains("CN=ota-agent gateway") == true,
                "\(request)")
        let key = try String(contentsOfFile: Self.diceAuthFile("client.key"), encoding: .utf8)
        let keyBody = key.split(separator: "\n").dropFirst().first.map(String.init) ?? "?"
        #expect(!agent.transcript.contains(keyBody), "the client key leaked into the log")
    }

    /// Dice-Auth wants a client certificate it trusts: without one, or with one of another CA,
    /// the agent gets a TLS alert, which is a final "no verdict" that says so, not a retry.
    @Test(arguments: [nil, "other-client"])
    func mutualTLSWithoutATrustedClientCertificateIsFinal(client: String?) async throws {
        var settings = ["DICE_AUTH_CA_PATH": Self.diceAuthFile("ca.crt")]
        if let client {
            settings["DICE_AUTH_CLIENT_CERT_PATH"] = Self.diceAuthFile("\(client).crt")
            settings["DICE_AUTH_CLIENT_KEY_PATH"] = Self.diceAuthFile("\(client).key")
        }
        let testbed = try await Self.httpsTestbed(
            verifierOptions: ["--tls-client-ca", Self.diceAuthFile("client-ca.crt")], settings: settings)
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        let run = try await DeviceSimulator.run(port: agent.port)
        let verdict = try await Self.expectRefusal(run, by: agent, verdict: "unavailable")
        #expect(verdict.integer("attempts") == 1, "\(verdict)")
        #expect(verdict["reason"]?.contains("client certificate") == true, "\(verdict)")
        #expect(verifier.requests.isEmpty, "\(verifier.child.transcript)")

        agent.child.send(SIGTERM)
        #expect(await agent.child.waitForExit(within: .seconds(10)) == .exited(143), "\(agent.transcript)")
    }

    // MARK: configuration

    @Test(arguments: [("DICE_AUTH_CLIENT_CERT_PATH", "client.crt"), ("DICE_AUTH_CLIENT_KEY_PATH", "client.key")])
    func clientCertificateAndKeyGoTogether(variable: String, file: String) async throws {
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        environment[variable] = Self.diceAuthFile(file)
        let child = try Agent.launch(environment: environment)
        defer { child.kill() }

        #expect(await child.waitForExit(within: .seconds(10)) == .exited(2), "\(child.transcript)")
        for name in ["DICE_AUTH_CLIENT_CERT_PATH", "DICE_AUTH_CLIENT_KEY_PATH"] {
            #expect(child.stderr.text.contains(name), "\(child.transcript)")
        }
    }

    /// A certificate with another pair's key would fail every request: the start fails instead,
    /// naming both settings and files, and never showing the key.
    @Test func clientCertificateWithAnotherKeyIsRefusedAtStart() async throws {
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        environment["DICE_AUTH_CLIENT_CERT_PATH"] = Self.diceAuthFile("client.crt")
        environment["DICE_AUTH_CLIENT_KEY_PATH"] = Self.diceAuthFile("other-client.key")
        let child = try Agent.launch(environment: environment)
        defer { child.kill() }

        #expect(await child.waitForExit(within: .seconds(10)) == .exited(2), "\(child.transcript)")
        let message = child.stderr.text
        #expect(message.contains("DICE_AUTH_CLIENT_CERT_PATH") && message.contains("DICE_AUTH_CLIENT_KEY_PATH")
                && message.contains("do not match") && message.contains("other-client.key"), "\(child.transcript)")
        let key = try String(contentsOfFile: Self.diceAuthFile("other-client.key"), encoding: .utf8)
        let keyBody = key.split(separator: "\n").dropFirst().first.map(String.init) ?? "?"
        #expect(!message.contains(keyBody), "the client key leaked into the message")
        #expect(!child.stderr.lines.contains { LogLine($0)?.event == "listening" }, "\(child.transcript)")
    }

    @Test func unreadableClientKeyIsRefusedAtStart() async throws {
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        environment["DICE_AUTH_CLIENT_CERT_PATH"] = Self.diceAuthFile("client.crt")
        environment["DICE_AUTH_CLIENT_KEY_PATH"] = Self.diceAuthFile("no-such.key")
        let child = try Agent.launch(environment: environment)
        defer { child.kill() }

        #expect(await child.waitForExit(within: .seconds(10)) == .exited(2), "\(child.transcript)")
        #expect(child.stderr.text.contains("configuration error: DICE_AUTH_CLIENT_KEY_PATH"), "\(child.transcript)")
        #expect(!child.stderr.lines.contains { LogLine($0)?.event == "listening" }, "\(child.transcript)")
    }
}
