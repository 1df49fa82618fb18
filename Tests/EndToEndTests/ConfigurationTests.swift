import Foundation
import Testing

/// A configuration the agent cannot serve with ends the process at once with exit 2 and a
/// message that says which setting to fix.
@Suite("Configuration")
struct ConfigurationTests {
    /// One broken setting, and the names a good message would use for it.
    struct Misconfiguration: Sendable, CustomTestStringConvertible {
        let testDescription: String
        /// Changes a working environment; the folder is the test's own scratch folder.
        let breakEnvironment: @Sendable (inout [String: String], URL) throws -> Void
        var arguments: [String] = []
        /// Every one of these must be in the message.
        let names: [String]
        /// None of these may be: the message must not blame the wrong setting.
        var wrongNames: [String] = []
    }

    static let cases: [Misconfiguration] = [
        Misconfiguration(testDescription: "NEW_FIRMWARE_PATH unset",
                         breakEnvironment: { env, _ in env["NEW_FIRMWARE_PATH"] = nil },
                         names: ["NEW_FIRMWARE_PATH"]),
        Misconfiguration(testDescription: "DICE_AUTH_URL unset",
                         breakEnvironment: { env, _ in env["DICE_AUTH_URL"] = nil },
                         names: ["DICE_AUTH_URL"]),
        Misconfiguration(testDescription: "SERVER_CRT_PATH unset",
                         breakEnvironment: { env, _ in env["SERVER_CRT_PATH"] = nil },
                         names: ["SERVER_CRT_PATH"]),
        Misconfiguration(testDescription: "SERVER_KEY_PATH unset",
                         breakEnvironment: { env, _ in env["SERVER_KEY_PATH"] = nil },
                         names: ["SERVER_KEY_PATH"]),
        Misconfiguration(testDescription: "image missing",
                         breakEnvironment: { env, folder in
                             env["NEW_FIRMWARE_PATH"] = folder.appendingPathComponent("absent.bin").path
                         },
                         names: ["NEW_FIRMWARE_PATH"]),
        Misconfiguration(testDescription: "image empty",
                         breakEnvironment: { env, folder in
                             let empty = folder.appendingPathComponent("empty.bin")
                             try Data().write(to: empty)
                             env["NEW_FIRMWARE_PATH"] = empty.path
                         },
                         names: ["NEW_FIRMWARE_PATH"]),
        Misconfiguration(testDescription: "image is a directory",
                         breakEnvironment: { env, folder in env["NEW_FIRMWARE_PATH"] = folder.path },
                         names: ["NEW_FIRMWARE_PATH"]),
        Misconfiguration(testDescription: "image is a FIFO",
                         breakEnvironment: { env, folder in
                             let fifo = folder.appendingPathComponent("image.fifo").path
                             guard mkfifo(fifo, 0o600) == 0 else { throw HarnessError("mkfifo: errno \(errno)") }
                             env["NEW_FIRMWARE_PATH"] = fifo
                         },
                         names: ["NEW_FIRMWARE_PATH"]),
        Misconfiguration(testDescription: "certificate and key do not match",
                         breakEnvironment: { env, _ in
                             env["SERVER_KEY_PATH"] = Fixtures.certificate("agent-ec.key").path
                         },
                         names: ["SERVER_KEY_PATH", "SERVER_CRT_PATH"]),
        Misconfiguration(testDescription: "key file missing",
                         breakEnvironment: { env, folder in
                             env["SERVER_KEY_PATH"] = folder.appendingPathComponent("absent.key").path
                         },
                         names: ["SERVER_KEY_PATH"]),
        Misconfiguration(testDescription: "certificate path holding a key",
                         breakEnvironment: { env, _ in
                             env["SERVER_CRT_PATH"] = Fixtures.certificate("agent-rsa.key").path
                         },
                         names: ["SERVER_CRT_PATH"], wrongNames: ["SERVER_KEY_PATH"]),
        Misconfiguration(testDescription: "key path holding a certificate",
                         breakEnvironment: { env, _ in
                             env["SERVER_KEY_PATH"] = Fixtures.certificate("agent-rsa.crt").path
                         },
                         names: ["SERVER_KEY_PATH"], wrongNames: ["SERVER_CRT_PATH"]),
        Misconfiguration(testDescription: "Dice-Auth URL with a port over 65535",
                         breakEnvironment: { env, _ in env["DICE_AUTH_URL"] = "http://127.0.0.1:99999/verify" },
                         names: ["DICE_AUTH_URL"]),
        Misconfiguration(testDescription: "Dice-Auth CA file missing",
                         breakEnvironment: { env, folder in
                             env["DICE_AUTH_CA_PATH"] = folder.appendingPathComponent("absent.pem").path
                         },
                         names: ["DICE_AUTH_CA_PATH"]),
        Misconfiguration(testDescription: "cipher list with no TLS 1.2 suite for the certificate's RSA key",
                         breakEnvironment: { env, _ in env["OTA_TLS_CIPHERS"] = "ECDHE-ECDSA-AES128-GCM-SHA256" },
                         names: ["OTA_TLS_CIPHERS"]),
        Misconfiguration(testDescription: "Dice-Auth CA file that holds no PEM certificate",
                         breakEnvironment: { env, _ in env["DICE_AUTH_CA_PATH"] = Fixtures.sampleImage.path },
                         names: ["DICE_AUTH_CA_PATH"]),
        Misconfiguration(testDescription: "Dice-Auth CA path is a FIFO",
                         breakEnvironment: { env, folder in
                             let fifo = folder.appendingPathComponent("ca.fifo").path
                             guard mkfifo(fifo, 0o600) == 0 else { throw HarnessError("mkfifo: errno \(errno)") }
                             env["DICE_AUTH_CA_PATH"] = fifo
                         },
                         names: ["DICE_AUTH_CA_PATH"]),
        Misconfiguration(testDescription: "--port with an empty value",
                         breakEnvironment: { _, _ in }, arguments: ["--port", ""],
                         names: ["--port"]),
        Misconfiguration(testDescription: "Dice-Auth URL with scheme ftp",
                         breakEnvironment: { env, _ in env["DICE_AUTH_URL"] = "ftp://x" },
                         names: ["DICE_AUTH_URL"]),
        Misconfiguration(testDescription: "Dice-Auth URL that is not a URL",
                         breakEnvironment: { env, _ in env["DICE_AUTH_URL"] = "not a url" },
                         names: ["DICE_AUTH_URL"]),
        Misconfiguration(testDescription: "--port 70000",
                         breakEnvironment: { _, _ in }, arguments: ["--port", "70000"],
                         names: ["--port"]),
        Misconfiguration(testDescription: "unknown flag",
                         breakEnvironment: { _, _ in }, arguments: ["--frobnicate"],
                         names: ["--frobnicate"]),
        Misconfiguration(testDescription: "OTA_PORT not a number",
                         breakEnvironment: { env, _ in env["OTA_PORT"] = "https" },
                         names: ["OTA_PORT"]),
        Misconfiguration(testDescription: "deadline of zero seconds",
                         breakEnvironment: { env, _ in env["OTA_STALL_TIMEOUT"] = "0" },
                         names: ["OTA_STALL_TIMEOUT"]),
        Misconfiguration(testDescription: "unknown mode",
                         breakEnvironment: { env, _ in env["OTA_MODE"] = "twice" },
                         names: ["OTA_MODE"]),
    ]

    @Test(arguments: cases)
    func misconfigurationExitsTwoNamingTheSetting(_ misconfiguration: Misconfiguration) async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        try misconfiguration.breakEnvironment(&environment, scratch.url)

        let child = try Agent.launch(environment: environment, arguments: misconfiguration.arguments)
        defer { child.kill() }

        #expect(await child.waitForExit(within: .seconds(5)) == .exited(2), "\(child.transcript)")
        let message = child.stderr.text
        #expect(message.contains("ota-agent: configuration error: "), "\(child.transcript)")
        #expect(!message.contains("listening"), "served despite the error\n\(child.transcript)")
        for name in misconfiguration.names {
            #expect(message.contains(name), "the message does not name \(name): \(message)")
        }
        for name in misconfiguration.wrongNames {
            #expect(!message.contains(name), "the message blames \(name): \(message)")
        }
    }

    @Test func portInUseIsAConfigurationError() async throws {
        let (socket, port) = try LoopbackSocket.listening()
        defer { close(socket) }
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        environment["OTA_PORT"] = String(port)

        let child = try Agent.launch(environment: environment)
        defer { child.kill() }

        #expect(await child.waitForExit(within: .seconds(5)) == .exited(2), "\(child.transcript)")
        let message = child.stderr.text
        #expect(message.contains("ota-agent: configuration error: ") && message.contains("OTA_PORT"),
                "\(child.transcript)")
        #expect(message.contains(String(port)), "\(child.transcript)")
    }

    @Test func flagWinsOverEnvironmentVariable() async throws {
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        environment["OTA_PORT"] = "not-a-port"
        environment["NEW_FIRMWARE_PATH"] = "/nonexistent/firmware.bin"

        // Each broken variable alone exits 2 (see above); the flags replace them.
        let agent = try await Agent.start(environment: environment,
                                          arguments: ["--port", "0", "--image", Fixtures.sampleImage.path])
        defer { agent.child.kill() }

        #expect(agent.port != 0)
        #expect(agent.log("starting").first?["image"] == Fixtures.sampleImage.path, "\(agent.transcript)")
        agent.child.send(SIGTERM)
        #expect(await agent.child.waitForExit(within: .seconds(10)) == .exited(143), "\(agent.transcript)")
    }
}
