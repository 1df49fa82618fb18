import Foundation
import Testing

/// dice-auth-verifier on an ephemeral 127.0.0.1 port, trusting firmware-sample/certs/roots.
struct Verifier {
    let child: ChildProcess
    let port: UInt16

    var url: String { "http://127.0.0.1:\(port)/verify" }

    /// Starts the verifier with extra `options` (--fail-first, --status, --hang, ...) and waits
    /// for its `listening ADDRESS:PORT` line.
    static func start(_ options: [String] = []) async throws -> Verifier {
        let child = try ChildProcess(
            name: "dice-auth-verifier", executable: Fixtures.program("dice-auth-verifier"),
            arguments: ["--roots", Fixtures.trustedRoots.path, "--listen", "127.0.0.1:0"] + options,
            environment: Fixtures.baseEnvironment)
        let line = await child.stdout.firstLine(within: .seconds(10)) { $0.hasPrefix("listening ") }
        guard let line, let port = line.split(separator: ":").last.flatMap({ UInt16($0) }) else {
            child.kill()
            throw HarnessError("dice-auth-verifier did not announce its port\n\(child.transcript)")
        }
        return Verifier(child: child, port: port)
    }

    /// One line per request it answered: `request=N method=M status=S ...`.
    var requests: [KeyValueLine] {
        child.stderr.lines.filter { $0.hasPrefix("request=") }.map(KeyValueLine.init)
    }

    /// The request lines once at least `count` are there: the verifier logs each one just
    /// after answering, so a test that saw the answer may still be ahead of the line.
    func waitForRequests(_ count: Int, within timeout: Duration = .seconds(10)) async -> [KeyValueLine] {
        _ = await child.stderr.monitor.wait(within: timeout) { state in
            state.ended || state.lines.filter { $0.hasPrefix("request=") }.count >= count
        }
        return requests
    }
}

/// The setup most tests share: a verifier, and an agent that asks it.
struct Testbed {
    let verifier: Verifier
    let agent: Agent

    /// Starts both; `settings` override the agent's environment (see `Agent.environment`).
    static func start(verifierOptions: [String] = [], settings: [String: String] = [:],
                      server: String = "agent-rsa", image: URL = Fixtures.sampleImage) async throws -> Testbed
    {
        let verifier = try await Verifier.start(verifierOptions)
        do {
            let environment = Agent.environment(diceAuthURL: verifier.url, server: server, image: image)
                .merging(settings) { _, new in new }
            return Testbed(verifier: verifier, agent: try await Agent.start(environment: environment))
        } catch {
            verifier.child.kill()
            throw error
        }
    }

    /// Kills both, for `defer`.
    func stop() {
        agent.child.kill()
        verifier.child.kill()
    }
}

/// The ota-agent under test, configured by its environment as deployments do.
struct Agent {
    let child: ChildProcess
    let port: UInt16

    /// A complete configuration: sample image, the RSA server certificate, an ephemeral port on
    /// 127.0.0.1. OTA_TIMEOUT is a safety net so that even a leaked agent ends by itself.
    /// Any other image is some bytes of a given size (random, 1 byte to 70 MiB), not an ESP-IDF
    /// app image, so it is served with OTA_ALLOW_ANY_IMAGE=1; the sample goes through the check.
    static func environment(diceAuthURL: String, server: String = "agent-rsa",
                            image: URL = Fixtures.sampleImage) -> [String: String]
    {
        var environment = Fixtures.baseEnvironment.merging([
            "NEW_FIRMWARE_PATH": image.path,
            "DICE_AUTH_URL": diceAuthURL,
            "SERVER_CRT_PATH": Fixtures.certificate("\(server).crt").path,
            "SERVER_KEY_PATH": Fixtures.certificate("\(server).key").path,
            "OTA_PORT": "0",
            "OTA_BIND": "127.0.0.1",
            "OTA_TIMEOUT": "60",
        ]) { _, new in new }
        if image.standardizedFileURL != Fixtures.sampleImage.standardizedFileURL {
            environment["OTA_ALLOW_ANY_IMAGE"] = "1"
        }
        return environment
    }

    /// A Dice-Auth URL that must never be reached, for agents no device talks to.
    static let unusedDiceAuthURL = "http://127.0.0.1:9/verify"

    /// Starts the agent without waiting for anything (for configuration errors).
    static func launch(environment: [String: String], arguments: [String] = []) throws -> ChildProcess {
        try ChildProcess(name: "ota-agent", executable: Fixtures.program("ota-agent"),
                         arguments: arguments, environment: environment)
    }

    /// Starts the agent and waits for its `listening ... port=N` line.
    static func start(environment: [String: String], arguments: [String] = []) async throws -> Agent {
        let child = try launch(environment: environment, arguments: arguments)
        let line = await child.stderr.firstLine(within: .seconds(15)) { LogLine($0)?.event == "listening" }
        guard let line, let port = LogLine(line)?.integer("port").flatMap({ UInt16(exactly: $0) }) else {
            child.kill()
            throw HarnessError("ota-agent did not log 'listening ... port=N'\n\(child.transcript)")
        }
        return Agent(child: child, port: port)
    }

    /// The log lines of one event, in order.
    func log(_ event: String) -> [LogLine] {
        child.stderr.lines.compactMap(LogLine.init).filter { $0.event == event }
    }

    /// The `count`th line of `event` (1 = the first), waiting for it up to `timeout`.
    func waitForLog(_ event: String, number count: Int = 1, within timeout: Duration = .seconds(20))
        async -> LogLine?
    {
        _ = await child.stderr.monitor.wait(within: timeout) { state in
            state.ended || state.lines.lazy.compactMap(LogLine.init).filter { $0.event == event }.count >= count
        }
        let lines = log(event)
        return lines.count >= count ? lines[count - 1] : nil
    }

    var transcript: String { child.transcript }
}

/// One device's line of ota-device-sim:
/// `device=N outcome=O bytes=B sha256=HEX ms=M (end=E | phase=P detail="D")`.
struct DeviceReport: Sendable, CustomStringConvertible {
    let line: KeyValueLine

    var outcome: String? { line["outcome"] }
    var bytes: Int? { line.integer("bytes") }
    var sha256: String? { line["sha256"] }
    var milliseconds: Int? { line.integer("ms") }
    var end: String? { line["end"] }
    /// The most one read returned: with large reads, the largest record's payload.
    var largestRead: Int? { line.integer("max_read") }
    var detail: String? { line["detail"] }
    var description: String { line.text }
}

/// What a run of ota-device-sim printed and how it ended.
struct SimulatorRun: Sendable {
    let termination: Termination?
    let devices: [DeviceReport]
    let transcript: String

    /// The report of a single-device run; nil (and an issue) if there is not exactly one.
    func onlyDevice(sourceLocation: SourceLocation = #_sourceLocation) -> DeviceReport? {
        guard devices.count == 1 else {
            Issue.record("expected one device line, got \(devices.count)\n\(transcript)",
                         sourceLocation: sourceLocation)
            return nil
        }
        return devices[0]
    }
}

/// The mbedTLS field-device simulator.
enum DeviceSimulator {
    /// Runs the simulator to its end against an agent on `host`:`port`, pinning the agent's
    /// `server` certificate and sending the `attestation` DER (or the raw `payload` file).
    static func run(port: UInt16, host: String = "127.0.0.1", server: String = "agent-rsa",
                    attestation: String = "device.der", payload: URL? = nil, options: [String] = [],
                    within timeout: Duration = .seconds(30)) async throws -> SimulatorRun
    {
        var arguments = ["--host", host, "--port", String(port),
                         "--ca", Fixtures.certificate("\(server).crt").path]
        if let payload {
            arguments += ["--payload", payload.path]
        } else {
            arguments += ["--cert", Fixtures.certificate(attestation).path]
        }
        // The simulator gives up by itself a little before the harness would kill it.
        let ownTimeout = max(timeout - .seconds(2), .seconds(1))
        arguments += ["--timeout-ms", String(Int(ownTimeout.timeInterval * 1000))] + options

        let child = try ChildProcess(name: "ota-device-sim", executable: Fixtures.program("ota-device-sim"),
                                     arguments: arguments, environment: Fixtures.baseEnvironment)
        defer { child.kill() }
        let termination = await child.waitForExit(within: timeout)
        let devices = child.stdout.lines.filter { $0.hasPrefix("device=") }
            .map { DeviceReport(line: KeyValueLine($0)) }
        return SimulatorRun(termination: termination, devices: devices, transcript: child.transcript)
    }

    /// Whether this build of the simulator has `option` (it lists its options in --help).
    static func supports(_ option: String) -> Bool {
        guard let program = try? Fixtures.program("ota-device-sim") else { return false }
        let process = Process()
        let pipe = Pipe()
        process.executableURL = program
        process.arguments = ["--help"]
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        let started = DescriptorCreation.serialized { (try? process.run()) != nil }
        guard started else { return false }
        let help = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: help, as: UTF8.self).contains(option)
    }
}
