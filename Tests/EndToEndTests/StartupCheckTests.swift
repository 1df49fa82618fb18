import Foundation
import Testing

/// What the agent says at start about credentials that work but put devices or the key at
/// risk. These are warnings: the agent still serves.
@Suite("Start-up checks")
struct StartupCheckTests {
    /// Runs a command to its end; throws with its transcript unless it exits 0.
    static func runTool(_ name: String, _ arguments: [String]) async throws {
        guard let tool = Fixtures.systemProgram(name) else { throw HarnessError("\(name) is not installed") }
        let child = try ChildProcess(name: name, executable: tool, arguments: arguments,
                                     environment: Fixtures.baseEnvironment)
        defer { child.kill() }
        guard await child.waitForExit(within: .seconds(30)) == .exited(0) else {
            throw HarnessError("\(name) \(arguments.joined(separator: " ")) failed\n\(child.transcript)")
        }
    }

    /// A self-signed P-256 certificate for CN ota-agent valid between two moments
    /// (YYYYMMDDHHMMSSZ), made with `openssl ca`, the one tool here that sets both dates.
    static func certificate(in scratch: ScratchFolder, from start: String, to end: String) async throws
        -> (certificate: URL, key: URL)
    {
        let config = """
            [ca]
            default_ca = agent
            [agent]
            database = \(scratch.file("index.txt").path)
            new_certs_dir = \(scratch.url.path)
            serial = \(scratch.file("serial").path)
            default_md = sha256
            policy = anything
            [anything]
            commonName = supplied
            """
        let configFile = try scratch.write("ca.cnf", Array(config.utf8))
        _ = try scratch.write("index.txt", [])
        _ = try scratch.write("serial", Array("01\n".utf8))
        let (key, request, certificate) = (scratch.file("server.key"), scratch.file("server.csr"),
                                           scratch.file("server.crt"))
        try await runTool("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                                      "-nodes", "-keyout", key.path, "-subj", "/CN=ota-agent",
                                      "-out", request.path])
        try await runTool("openssl", ["ca", "-batch", "-config", configFile.path, "-selfsign",
                                      "-keyfile", key.path, "-in", request.path, "-out", certificate.path,
                                      "-startdate", start, "-enddate", end, "-notext"])
        chmod(key.path, 0o600)
        return (certificate, key)
    }

    @Test(arguments: [
        ("20200101000000Z", "20210101000000Z", "has expired", "2021-01-01T00:00:00Z"),
        ("20900101000000Z", "20910101000000Z", "is not valid yet", "2091-01-01T00:00:00Z"),
    ])
    func certificateOutsideItsDatesIsAWarningWithTheDates(start: String, end: String, words: String,
                                                           notAfter: String) async throws
    {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let (certificate, key) = try await Self.certificate(in: scratch, from: start, to: end)
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        environment["SERVER_CRT_PATH"] = certificate.path
        environment["SERVER_KEY_PATH"] = key.path

        let agent = try await Agent.start(environment: environment)
        defer { agent.child.kill() }

        let warning = agent.log("server-certificate").first
        #expect(warning?.level == "warning", "\(agent.transcript)")
        #expect(warning?["reason"]?.contains(words) == true, "\(agent.transcript)")
        #expect(warning?["not_after"] == notAfter, "\(agent.transcript)")
    }

    @Test func certificateWithinItsDatesGivesNoDateWarning() async throws {
        let agent = try await Agent.start(environment: Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL))
        defer { agent.child.kill() }
        #expect(agent.log("server-certificate").isEmpty, "\(agent.transcript)")
    }

    @Test(arguments: [(0o644 as mode_t, true), (0o640, true), (0o600, false), (0o400, false)])
    func keyFileOpenToOthersIsAWarningThatNeverShowsTheKey(mode: mode_t, warned: Bool) async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let keyBytes = try Data(contentsOf: Fixtures.certificate("agent-rsa.key"))
        let key = try scratch.write("agent.key", Array(keyBytes))
        #expect(chmod(key.path, mode) == 0)
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        environment["SERVER_KEY_PATH"] = key.path

        let agent = try await Agent.start(environment: environment)
        defer { agent.child.kill() }

        let warning = agent.log("private-key-permissions").first
        #expect((warning != nil) == warned, "\(agent.transcript)")
        if warned {
            #expect(warning?["mode"] == String(mode, radix: 8), "\(agent.transcript)")
        }
        // The key's contents never reach the log, whatever the warning says.
        let body = String(decoding: keyBytes, as: UTF8.self).split(separator: "\n").dropFirst().first ?? ""
        #expect(!agent.transcript.contains("PRIVATE KEY") && !agent.transcript.contains(body),
                "key material in the log")
    }

    /// The name is never looked up: no device comes, so the agent never calls Dice-Auth here.
    @Test(arguments: [("http://dice-auth.example.invalid/verify", true),
                      ("https://dice-auth.example.invalid/verify", false),
                      ("http://127.0.0.1:9/verify", false), ("http://[::1]:9/verify", false)])
    func plainHTTPDiceAuthBeyondLoopbackIsAWarning(url: String, warned: Bool) async throws {
        let agent = try await Agent.start(environment: Agent.environment(diceAuthURL: url))
        defer { agent.child.kill() }
        let warning = agent.log("dice-auth-plain-http").first
        #expect((warning != nil) == warned, "\(agent.transcript)")
        if warned {
            #expect(warning?.level == "warning" && warning?["reason"]?.contains("https") == true,
                    "\(agent.transcript)")
        }
    }
}
