import Foundation
import Testing

/// One line of `ota-agent check`: `<mark> <name>: <detail>`.
struct CheckLine: Sendable, CustomStringConvertible {
    let mark: String
    let name: String
    let detail: String
    let description: String

    init?(_ text: String) {
        let parts = text.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, ["ok", "warn", "FAIL"].contains(String(parts[0])) else { return nil }
        let rest = parts[1].drop { $0 == " " }
        guard let colon = rest.firstIndex(of: ":") else { return nil }
        mark = String(parts[0])
        name = String(rest[..<colon])
        detail = rest[rest.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        description = text
    }
}

/// What a run of `ota-agent check` printed and how it ended.
struct CheckRun: Sendable {
    let ending: Termination?
    let lines: [CheckLine]
    let elapsed: Duration
    let transcript: String

    func line(_ name: String) -> CheckLine? { lines.first { $0.name == name } }

    static func run(_ environment: [String: String], arguments: [String] = []) async throws -> CheckRun {
        let clock = ContinuousClock()
        let start = clock.now
        let child = try Agent.launch(environment: environment, arguments: ["check"] + arguments)
        defer { child.kill() }
        let ending = await child.waitForExit(within: .seconds(60))
        return CheckRun(ending: ending, lines: child.stdout.lines.compactMap(CheckLine.init),
                        elapsed: clock.now - start, transcript: child.transcript)
    }
}

/// `ota-agent check`: the same settings as a run, checked without serving.
@Suite("Check command")
struct CheckCommandTests {
    @Test func goodConfigurationPassesEveryCheckAndExitsZero() async throws {
        let verifier = try await Verifier.start()
        defer { verifier.child.kill() }
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        var environment = Agent.environment(diceAuthURL: verifier.url)
        environment["OTA_RESULT_FILE"] = scratch.file("result.json").path

        let run = try await CheckRun.run(environment)

        #expect(run.ending == .exited(0), "\(run.transcript)")
        let names = run.lines.map(\.name)
        for name in ["settings", "image", "certificate-and-key", "certificate-name", "certificate-dates",
                     "key-permissions", "device-policy", "dice-auth", "port", "result-file"] {
            #expect(names.contains(name), "no \(name) line\n\(run.transcript)")
        }
        #expect(!run.lines.contains { $0.mark == "FAIL" }, "\(run.transcript)")
        #expect(run.line("image")?.detail.contains("ESP-IDF app image for ESP32") == true, "\(run.transcript)")
        // An empty POST answered by any status: the verifier is there.
        #expect(run.line("dice-auth")?.detail.contains("answered HTTP 400") == true, "\(run.transcript)")
        #expect(run.transcript.contains("checks passed"), "\(run.transcript)")
        // Nothing was served, nothing left behind, and no key text printed.
        #expect(verifier.requests.allSatisfy { $0["status"] != "200" }, "\(verifier.child.transcript)")
        #expect(!FileManager.default.fileExists(atPath: scratch.file("result.json").path))
        #expect(!run.transcript.contains("PRIVATE KEY") && !run.transcript.contains("listening"), "\(run.transcript)")
    }

    @Test func everyProblemIsItsOwnFailLineAndTheExitCodeIsFour() async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let (busy, busyPort) = try LoopbackSocket.listening()
        defer { close(busy) }
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL,
                                            image: try scratch.writeRandom("not-an-app.bin", count: 4096))
        environment["OTA_ALLOW_ANY_IMAGE"] = nil
        environment["OTA_PORT"] = String(busyPort)
        environment["SERVER_KEY_PATH"] = Fixtures.certificate("agent-ec.key").path
        environment["OTA_RESULT_FILE"] = "/nonexistent-folder/result.json"

        let run = try await CheckRun.run(environment)

        #expect(run.ending == .exited(4), "\(run.transcript)")
        let failed = Set(run.lines.filter { $0.mark == "FAIL" }.map(\.name))
        #expect(failed == ["image", "certificate-and-key", "dice-auth", "port", "result-file"], "\(run.transcript)")
        #expect(run.line("image")?.detail.contains("not a valid ESP-IDF app image") == true, "\(run.transcript)")
        #expect(run.line("dice-auth")?.detail.contains("onnect") == true, "\(run.transcript)")
        #expect(run.line("port")?.detail.contains(String(busyPort)) == true, "\(run.transcript)")
        // The certificate alone is still read for its name and dates.
        #expect(run.line("certificate-name")?.mark == "ok", "\(run.transcript)")
        #expect(run.line("certificate-dates")?.mark == "ok", "\(run.transcript)")
        #expect(run.transcript.contains("check: 5 of"), "\(run.transcript)")
    }

    /// Without a readable certificate the key is still looked at; the metrics port must be
    /// free beside the device port; a TLS 1.3 minimum is worth a warning; and nothing secret in
    /// the Dice-Auth URL is printed.
    @Test func theKeyMetricsPortTLSPolicyAndURLCredentialsAreChecked() async throws {
        let (busy, busyPort) = try LoopbackSocket.listening()
        defer { close(busy) }
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let key = scratch.file("open.key")
        try FileManager.default.copyItem(at: Fixtures.certificate("agent-rsa.key"), to: key)
        chmod(key.path, 0o644)
        var environment = Agent.environment(diceAuthURL: "http://operator:s3cret@127.0.0.1:9/verify?token=abc123")
        environment["SERVER_CRT_PATH"] = scratch.file("missing.crt").path
        environment["SERVER_KEY_PATH"] = key.path
        environment["OTA_METRICS_PORT"] = String(busyPort)
        environment["OTA_TLS_MIN_VERSION"] = "1.3"

        let run = try await CheckRun.run(environment)

        #expect(run.ending == .exited(4), "\(run.transcript)")
        #expect(run.line("key-permissions")?.mark == "warn", "\(run.transcript)")
        #expect(run.line("metrics-port")?.mark == "FAIL", "\(run.transcript)")
        #expect(run.line("dice-auth")?.detail.contains("http://***@127.0.0.1:9/verify?token=***") == true,
                "\(run.transcript)")
        #expect(!run.transcript.contains("s3cret") && !run.transcript.contains("abc123"), "\(run.transcript)")

        environment["SERVER_CRT_PATH"] = Fixtures.certificate("agent-rsa.crt").path
        let policy = try await CheckRun.run(environment)
        #expect(policy.line("tls-policy")?.mark == "warn", "\(policy.transcript)")
    }

    @Test func aDiceAuthThatNeverAnswersFailsWithinTheProbesBound() async throws {
        let verifier = try await Verifier.start(["--hang"])
        defer { verifier.child.kill() }

        var environment = Agent.environment(diceAuthURL: verifier.url)
        environment["OTA_DICE_AUTH_TIMEOUT"] = "120"

        let run = try await CheckRun.run(environment)

        #expect(run.ending == .exited(4), "\(run.transcript)")
        #expect(run.line("dice-auth")?.mark == "FAIL", "\(run.transcript)")
        // The probe gives up after 5 s, not after the 120 s a device's verdict may take; the
        // margin is for a loaded machine.
        #expect(run.elapsed >= .seconds(4) && run.elapsed < .seconds(30), "check took \(run.elapsed)")
    }

    @Test func serviceUnavailableApprovalAndRedirectFailWhileARejectionCountsAsAnAnswer() async throws {
        // 200 to an empty request would approve anything; a redirect is never followed.
        for (status, mark) in [("503", "FAIL"), ("401", "ok"), ("200", "FAIL"), ("302", "FAIL")] {
            let verifier = try await Verifier.start(["--status", status])
            defer { verifier.child.kill() }

            let run = try await CheckRun.run(Agent.environment(diceAuthURL: verifier.url))

            #expect(run.line("dice-auth")?.mark == mark, "\(run.transcript)")
            #expect(run.line("dice-auth")?.detail.contains("HTTP \(status)") == true, "\(run.transcript)")
            #expect(run.ending == .exited(mark == "ok" ? 0 : 4), "\(run.transcript)")
        }
    }

    @Test func httpsDiceAuthIsProbedWithTheAgentsTrustSettings() async throws {
        let tlsOptions = ["--tls-cert", DiceAuthEdgeTests.diceAuthFile("server.crt"),
                          "--tls-key", DiceAuthEdgeTests.diceAuthFile("server.key")]
        let verifier = try await Verifier.start(tlsOptions)
        defer { verifier.child.kill() }
        let url = "https://127.0.0.1:\(verifier.port)/verify"

        let untrusted = try await CheckRun.run(Agent.environment(diceAuthURL: url))
        #expect(untrusted.line("dice-auth")?.mark == "FAIL", "\(untrusted.transcript)")
        #expect(untrusted.line("dice-auth")?.detail.contains("does not verify") == true, "\(untrusted.transcript)")

        var environment = Agent.environment(diceAuthURL: url)
        environment["DICE_AUTH_CA_PATH"] = DiceAuthEdgeTests.diceAuthFile("ca.crt")
        let trusted = try await CheckRun.run(environment)
        #expect(trusted.line("dice-auth")?.mark == "ok", "\(trusted.transcript)")
        #expect(trusted.line("dice-auth-files")?.mark == "ok", "\(trusted.transcript)")
        #expect(trusted.ending == .exited(0), "\(trusted.transcript)")
    }

    @Test func missingSettingsExitTwoWithoutRunningChecks() async throws {
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        environment["DICE_AUTH_URL"] = nil

        let run = try await CheckRun.run(environment)

        #expect(run.ending == .exited(2), "\(run.transcript)")
        #expect(run.lines.map(\.name) == ["settings"] && run.lines.first?.mark == "FAIL", "\(run.transcript)")
        #expect(run.line("settings")?.detail.contains("DICE_AUTH_URL") == true, "\(run.transcript)")
    }

    @Test func jsonFormatPrintsOneObjectPerCheck() async throws {
        let verifier = try await Verifier.start()
        defer { verifier.child.kill() }
        var environment = Agent.environment(diceAuthURL: verifier.url)
        environment["OTA_LOG_FORMAT"] = "json"
        let child = try Agent.launch(environment: environment, arguments: ["check"])
        defer { child.kill() }

        #expect(await child.waitForExit(within: .seconds(30)) == .exited(0), "\(child.transcript)")
        let objects = try child.stdout.lines.map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
        }
        let checks = objects.compactMap { $0["check"] as? String }
        #expect(checks.contains("dice-auth") && checks.contains("port"), "\(child.transcript)")
        #expect(objects.allSatisfy { $0["check"] == nil || ["ok", "warn"].contains($0["result"] as? String) })
        #expect((objects.last?["failed"] as? NSNumber)?.intValue == 0, "\(child.transcript)")
    }
}
