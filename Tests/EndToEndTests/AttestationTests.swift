import Foundation
import Testing

/// Only a device Dice-Auth answers 200 for gets the image; every other answer, or none, is a
/// refusal with zero bytes, and the agent goes on serving.
@Suite("Attestation")
struct AttestationTests {
    @Test func rogueDeviceGetsNothingAndAgentServesNext() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start()
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        let rogue = try await DeviceSimulator.run(port: agent.port, attestation: "rogue-device.der")
        expectRefused(rogue.onlyDevice(), "\(rogue.transcript)\n\(agent.transcript)")
        #expect(rogue.termination == .exited(1), "\(rogue.transcript)")
        let refusal = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)")
        #expect(refusal["outcome"] == "refused" && refusal["verdict"] == "rejected", "\(refusal)")
        #expect(refusal["cert"]?.contains("esp32-device-rogue") == true, "\(refusal)")
        #expect(refusal.integer("bytes") == 0, "\(refusal)")
        #expect(agent.child.isRunning, "a refusal must not end the run\n\(agent.transcript)")

        let genuine = try await DeviceSimulator.run(port: agent.port)
        expectUpdated(genuine.onlyDevice(), with: image, "\(genuine.transcript)\n\(agent.transcript)")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
    }

    @Test func unreachableDiceAuthRefusesWithinItsDeadlineAndAgentKeepsServing() async throws {
        let closedPort = try LoopbackSocket.closedPort()
        var environment = Agent.environment(diceAuthURL: "http://127.0.0.1:\(closedPort)/verify")
        environment["OTA_DICE_AUTH_TIMEOUT"] = "3"
        let agent = try await Agent.start(environment: environment)
        defer { agent.child.kill() }

        let run = try await DeviceSimulator.run(port: agent.port, within: .seconds(15))

        expectRefused(run.onlyDevice(), "\(run.transcript)\n\(agent.transcript)")
        #expect((run.onlyDevice()?.milliseconds ?? .max) < 3000 + 2000,
                "not bounded by the deadline\n\(run.transcript)")
        let verdict = try #require((await agent.waitForLog("verdict")), "\(agent.transcript)")
        #expect(verdict["verdict"] == "unavailable", "\(verdict)")
        #expect((verdict.integer("attempts") ?? 0) > 1, "a connection failure is worth a retry: \(verdict)")
        #expect((verdict.integer("dice_auth_ms") ?? .max) <= 3000 + 500, "\(verdict)")

        #expect(agent.child.isRunning, "Dice-Auth being down must not end the run\n\(agent.transcript)")
        agent.child.send(SIGTERM)
        #expect(await agent.child.waitForExit(within: .seconds(10)) == .exited(143), "\(agent.transcript)")
    }

    @Test func diceAuthServerErrorIsRetriedAndDeviceUpdated() async throws {
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start(verifierOptions: ["--fail-first", "1"])
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        let run = try await DeviceSimulator.run(port: agent.port)

        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        let verdict = try #require((await agent.waitForLog("verdict")), "\(agent.transcript)")
        #expect(verdict["verdict"] == "verified", "\(verdict)")
        #expect(verdict.integer("attempts") == 2, "\(verdict)")
        #expect((await verifier.waitForRequests(2)).map { $0["status"] } == ["500", "200"],
                "\(verifier.child.transcript)")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
    }

    /// 503 every time: retried to the attempt limit, then refused as "no verdict", with a
    /// Retry-After the agent honours (the attempts are at least a second apart).
    @Test func diceAuthFailingEveryTimeGivesNoVerdictAfterTheRetries() async throws {
        let testbed = try await Testbed.start(verifierOptions: ["--status", "503", "--retry-after", "1"])
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        let run = try await DeviceSimulator.run(port: agent.port)

        expectRefused(run.onlyDevice(), "\(run.transcript)\n\(agent.transcript)")
        let verdict = try #require(await agent.waitForLog("verdict"), "\(agent.transcript)")
        #expect(verdict["verdict"] == "unavailable" && verdict.integer("attempts") == 4, "\(verdict)")
        #expect((verdict.integer("dice_auth_ms") ?? 0) >= 3000, "Retry-After: 1 ignored? \(verdict)")
        #expect(verdict.level == "warning", "\(verdict)")
        let sessionEnd = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)")
        #expect(sessionEnd["reason"]?.contains("HTTP 503") == true, "\(sessionEnd)")
    }

    @Test func diceAuthRejectionIsFinalAndNotRetried() async throws {
        let testbed = try await Testbed.start(verifierOptions: ["--status", "401"])
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        // The genuine device: only Dice-Auth's answer refuses it.
        let run = try await DeviceSimulator.run(port: agent.port)

        expectRefused(run.onlyDevice(), "\(run.transcript)\n\(agent.transcript)")
        let verdict = try #require((await agent.waitForLog("verdict")), "\(agent.transcript)")
        #expect(verdict["verdict"] == "rejected", "\(verdict)")
        #expect(verdict.integer("http_status") == 401, "\(verdict)")
        #expect(verdict.integer("attempts") == 1, "a 401 must not be retried: \(verdict)")
        #expect((await verifier.waitForRequests(1)).count == 1, "\(verifier.child.transcript)")
        #expect((await agent.waitForLog("session-end"))?["outcome"] == "refused", "\(agent.transcript)")

        agent.child.send(SIGTERM)
        #expect(await agent.child.waitForExit(within: .seconds(10)) == .exited(143), "\(agent.transcript)")
    }

    @Test func hangingDiceAuthRefusesDeviceAtTheDeadline() async throws {
        let testbed = try await Testbed.start(verifierOptions: ["--hang"], settings: ["OTA_DICE_AUTH_TIMEOUT": "2"])
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        let run = try await DeviceSimulator.run(port: agent.port, within: .seconds(15))

        expectRefused(run.onlyDevice(), "\(run.transcript)\n\(agent.transcript)")
        #expect((run.onlyDevice()?.milliseconds ?? .max) < 2000 + 2000,
                "not bounded by the deadline\n\(run.transcript)")
        let verdict = try #require((await agent.waitForLog("verdict")), "\(agent.transcript)")
        #expect(verdict["verdict"] == "unavailable", "\(verdict)")
        // The agent did wait for the answer that never came, and no longer than its deadline.
        let waited = verdict.integer("dice_auth_ms") ?? -1
        #expect((1900...3000).contains(waited), "dice_auth_ms=\(waited): \(verdict)")
        #expect(agent.child.isRunning, "\(agent.transcript)")
    }
}
