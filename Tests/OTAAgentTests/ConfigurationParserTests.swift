import Foundation
import Testing
@testable import OTAAgent

/// The four settings every deployment sets, as environment variables.
private let requiredEnvironment = [
    "NEW_FIRMWARE_PATH": "/srv/firmware.bin",
    "DICE_AUTH_URL": "http://dice-auth.local:8080/verify",
    "SERVER_CRT_PATH": "/etc/ota/server.crt",
    "SERVER_KEY_PATH": "/etc/ota/server.key",
]

/// Parses and expects a run request.
private func configuration(_ arguments: [String], environment: [String: String] = requiredEnvironment)
    throws -> AgentConfiguration
{
    let request = try ConfigurationParser.parse(arguments: arguments, environment: environment)
    guard case .run(let configuration) = request else {
        throw AgentError(.internal, "expected a run request, got \(request)")
    }
    return configuration
}

/// Parses and expects a configuration error; returns its message.
private func refusal(_ arguments: [String], environment: [String: String] = requiredEnvironment,
                     sourceLocation: SourceLocation = #_sourceLocation) -> String
{
    let error = #expect(throws: AgentError.self, sourceLocation: sourceLocation) {
        _ = try ConfigurationParser.parse(arguments: arguments, environment: environment)
    }
    #expect(error?.kind == .configuration, sourceLocation: sourceLocation)
    return error?.message ?? ""
}

/// A bad value for one setting, given by flag, by `--flag=value`, or by variable; the message
/// must name the way it was given.
struct BadValue: Sendable, CustomTestStringConvertible {
    let flag: String
    let variable: String
    let value: String

    var testDescription: String { "\(flag) '\(value)'" }
}

private let badValues: [BadValue] = [
    BadValue(flag: "--port", variable: "OTA_PORT", value: "65536"),
    BadValue(flag: "--port", variable: "OTA_PORT", value: "-1"),
    BadValue(flag: "--port", variable: "OTA_PORT", value: "http"),
    BadValue(flag: "--port", variable: "OTA_PORT", value: "44 33"),
    BadValue(flag: "--timeout", variable: "OTA_TIMEOUT", value: "0"),
    BadValue(flag: "--timeout", variable: "OTA_TIMEOUT", value: "-3"),
    BadValue(flag: "--timeout", variable: "OTA_TIMEOUT", value: "ten"),
    BadValue(flag: "--timeout", variable: "OTA_TIMEOUT", value: "nan"),
    BadValue(flag: "--timeout", variable: "OTA_TIMEOUT", value: "inf"),
    BadValue(flag: "--handshake-timeout", variable: "OTA_HANDSHAKE_TIMEOUT", value: "5s"),
    BadValue(flag: "--grace-period", variable: "OTA_GRACE_PERIOD", value: "0"),
    BadValue(flag: "--transfer-timeout", variable: "OTA_TRANSFER_TIMEOUT", value: "99999999999"),
    BadValue(flag: "--mode", variable: "OTA_MODE", value: "sometimes"),
    BadValue(flag: "--max-concurrent", variable: "OTA_MAX_CONCURRENT", value: "0"),
    BadValue(flag: "--max-handshakes", variable: "OTA_MAX_HANDSHAKES", value: "0"),
    BadValue(flag: "--max-per-address", variable: "OTA_MAX_PER_ADDRESS", value: "0"),
    BadValue(flag: "--max-unattested", variable: "OTA_MAX_UNATTESTED", value: "-1"),
    BadValue(flag: "--deadline-scale", variable: "OTA_DEADLINE_SCALE", value: "0"),
    BadValue(flag: "--deadline-scale", variable: "OTA_DEADLINE_SCALE", value: "1001"),
    BadValue(flag: "--deadline-scale", variable: "OTA_DEADLINE_SCALE", value: "double"),
    BadValue(flag: "--log-level", variable: "OTA_LOG_LEVEL", value: "loud"),
    BadValue(flag: "--tls-min-version", variable: "OTA_TLS_MIN_VERSION", value: "1.1"),
    BadValue(flag: "--tls-min-version", variable: "OTA_TLS_MIN_VERSION", value: "TLSv1.3"),
    BadValue(flag: "--dice-auth-url", variable: "DICE_AUTH_URL", value: "ftp://dice-auth.local/verify"),
    BadValue(flag: "--dice-auth-url", variable: "DICE_AUTH_URL", value: "http://"),
    BadValue(flag: "--dice-auth-url", variable: "DICE_AUTH_URL", value: "https:///verify"),
    BadValue(flag: "--dice-auth-url", variable: "DICE_AUTH_URL", value: "garbage"),
    BadValue(flag: "--dice-auth-url", variable: "DICE_AUTH_URL", value: "dice-auth.local:8080/verify"),
]

@Suite("ConfigurationParser")
struct ConfigurationParserTests {
    @Test("the four required variables are enough; the defaults apply")
    func defaults() throws {
        let parsed = try configuration([])
        #expect(parsed.imagePath == "/srv/firmware.bin")
        #expect(parsed.diceAuthURL == "http://dice-auth.local:8080/verify")
        #expect(parsed.certificatePath == "/etc/ota/server.crt")
        #expect(parsed.keyPath == "/etc/ota/server.key")
        #expect(parsed.port == 4433)
        #expect(parsed.bindAddress == nil)
        #expect(parsed.mode == .once)
        #expect(parsed.timeout == nil)
        #expect(parsed.maxConcurrent == 64)
        #expect(parsed.maxHandshakes == 8 * ProcessInfo.processInfo.activeProcessorCount)
        #expect(parsed.maxPerAddress == 8)
        #expect(parsed.maxUnattested == 64)
        #expect(parsed.gracePeriod == .seconds(60))
        #expect(parsed.deadlines == Deadlines())
        #expect(parsed.logLevel == .info)
        #expect(parsed.diceAuth.caPath == nil)
        #expect(parsed.diceAuth.clientCertificatePath == nil && parsed.diceAuth.clientKeyPath == nil)
    }

    @Test("each missing required setting is a configuration error naming its variable and flag",
          arguments: [("NEW_FIRMWARE_PATH", "--image"), ("DICE_AUTH_URL", "--dice-auth-url"),
                      ("SERVER_CRT_PATH", "--cert"), ("SERVER_KEY_PATH", "--key")])
    func missingRequired(variable: String, flag: String) {
        var environment = requiredEnvironment
        environment[variable] = nil
        let message = refusal([], environment: environment)
        #expect(message.contains(variable), "message: \(message)")
        #expect(message.contains(flag), "message: \(message)")

        environment[variable] = ""
        let emptyMessage = refusal([], environment: environment)
        #expect(emptyMessage.contains(variable), "an empty variable counts as unset; message: \(emptyMessage)")
    }

    @Test("the required settings can all come from flags, with no environment")
    func requiredFromFlags() throws {
        let parsed = try configuration(["--image", "/a.bin", "--dice-auth-url=https://verifier.example/v",
                                        "--cert", "/c.pem", "--key=/k.pem"], environment: [:])
        #expect(parsed.imagePath == "/a.bin")
        #expect(parsed.diceAuthURL == "https://verifier.example/v")
        #expect(parsed.certificatePath == "/c.pem")
        #expect(parsed.keyPath == "/k.pem")
    }

    @Test("a flag wins over its variable")
    func flagsWin() throws {
        var environment = requiredEnvironment
        environment["OTA_PORT"] = "1234"
        environment["OTA_MODE"] = "serve"
        environment["OTA_TIMEOUT"] = "7"
        environment["OTA_LOG_LEVEL"] = "error"
        let parsed = try configuration(["--image", "/flag.bin", "--port", "5678", "--mode=once", "--timeout", "9",
                                        "--log-level", "debug"], environment: environment)
        #expect(parsed.imagePath == "/flag.bin")
        #expect(parsed.port == 5678)
        #expect(parsed.mode == .once)
        #expect(parsed.timeout == .seconds(9))
        #expect(parsed.logLevel == .debug)

        let fromEnvironment = try configuration([], environment: environment)
        #expect(fromEnvironment.port == 1234)
        #expect(fromEnvironment.mode == .serve)
        #expect(fromEnvironment.timeout == .seconds(7))
        #expect(fromEnvironment.logLevel == .error)
    }

    @Test("--port=0 and --port 0 both ask for any free port", arguments: [["--port=0"], ["--port", "0"]])
    func portZero(arguments: [String]) throws {
        #expect(try configuration(arguments).port == 0)
    }

    @Test("port bounds 1 and 65535 are accepted", arguments: [1, 65535])
    func portBounds(port: Int) throws {
        #expect(try configuration(["--port", "\(port)"]).port == UInt16(port))
    }

    @Test("a bad value is a configuration error naming the flag it came from", arguments: badValues)
    func badFlagValue(_ bad: BadValue) {
        for arguments in [[bad.flag, bad.value], ["\(bad.flag)=\(bad.value)"]] {
            let message = refusal(arguments)
            #expect(message.contains(bad.flag), "message: \(message)")
            #expect(!message.contains(bad.variable), "message: \(message)")
        }
    }

    @Test("a bad value from the environment is an error naming the variable", arguments: badValues)
    func badVariableValue(_ bad: BadValue) {
        var environment = requiredEnvironment
        environment[bad.variable] = bad.value
        let message = refusal([], environment: environment)
        #expect(message.contains(bad.variable), "message: \(message)")
    }

    @Test("Dice-Auth URLs over http and https with a host are accepted",
          arguments: ["http://dice-auth.local:8080/verify", "https://verifier.example/v1/attest", "HTTPS://h",
                      "http://127.0.0.1:9000", "http://[::1]:8443/verify"])
    func goodURLs(url: String) throws {
        #expect(try configuration(["--dice-auth-url", url]).diceAuthURL == url)
    }

    @Test("an unknown option is refused, naming it", arguments: ["--bogus", "--bogus=1", "-p", "image.bin"])
    func unknownOption(option: String) {
        let message = refusal([option])
        #expect(message.contains(option), "message: \(message)")
    }

    @Test("an option without its value is refused, naming it")
    func missingValue() {
        let message = refusal(["--port"])
        #expect(message.contains("--port"), "message: \(message)")
    }

    @Test("--help and -h ask for help, --version for the version, even with nothing else set",
          arguments: [(["--help"], "help"), (["-h"], "help"), (["--version"], "version"),
                      (["--port", "1", "--help"], "help"), (["--version", "--bogus"], "version")])
    func helpAndVersion(arguments: [String], expected: String) throws {
        let request = try ConfigurationParser.parse(arguments: arguments, environment: [:])
        switch request {
        case .help: #expect(expected == "help")
        case .version: #expect(expected == "version")
        case .run: Issue.record("\(arguments) gave a run request")
        case .check: Issue.record("\(arguments) gave a check request")
        }
    }

    @Test("the help text lists every flag and the four deployment variables")
    func helpText() {
        let text = ConfigurationParser.helpText
        for setting in ConfigurationParser.settings {
            #expect(text.contains(setting.flag))
        }
        for variable in ["NEW_FIRMWARE_PATH", "DICE_AUTH_URL", "SERVER_CRT_PATH", "SERVER_KEY_PATH"] {
            #expect(text.contains(variable))
        }
        #expect(text.contains("--serve"))
    }

    @Test("--serve sets the serve mode; with --mode as well it is --mode given twice")
    func serveFlag() throws {
        #expect(try configuration(["--serve"]).mode == .serve)
        #expect(try configuration(["--mode", "serve"]).mode == .serve)
        let twice = refusal(["--serve", "--mode", "once"])
        #expect(twice.contains("--mode is given more than once (--serve is --mode serve)"), "\(twice)")
        var environment = requiredEnvironment
        environment["OTA_MODE"] = "once"
        #expect(try configuration(["--serve"], environment: environment).mode == .serve)
    }

    @Test("deadlines are parsed in seconds, fractions rounded up to whole milliseconds")
    func deadlines() throws {
        let parsed = try configuration([
            "--handshake-timeout", "2.5", "--certificate-timeout", "3", "--dice-auth-timeout", "4",
            "--stall-timeout", "0.0001", "--transfer-timeout", "600", "--close-timeout", "1.25",
        ])
        #expect(parsed.deadlines.handshake == .milliseconds(2500))
        #expect(parsed.deadlines.certificate == .seconds(3))
        #expect(parsed.deadlines.diceAuth == .seconds(4))
        #expect(parsed.deadlines.stall == .milliseconds(1))
        #expect(parsed.deadlines.transfer == .seconds(600))
        #expect(parsed.deadlines.close == .milliseconds(1250))
    }

    @Test("durations and the deadline scale are plain decimals: no hex, exponent, sign or infinity",
          arguments: ["0x10", "1e-300", "1E3", "+5", "-0", "inf", "nan", "1.2.3", ".", "5s", "0x1p3"])
    func notPlainDecimals(text: String) {
        for flag in ["--handshake-timeout", "--timeout", "--progress-interval", "--deadline-scale"] {
            var environment = requiredEnvironment
            environment["OTA_MODE"] = "serve"
            let error = #expect(throws: AgentError.self) {
                _ = try configuration([flag, text], environment: environment)
            }
            #expect(error?.kind == .configuration && error?.message.contains(flag) == true, "\(flag) \(text)")
        }
        #expect(SettingValues.decimal(".25") == 0.25 && SettingValues.decimal("3.") == 3
                && SettingValues.decimal("007") == 7)
    }

    @Test("--deadline-scale 2 doubles every deadline, default or given")
    func deadlineScale() throws {
        let scaled = try configuration(["--deadline-scale", "2", "--handshake-timeout", "2.5"]).deadlines
        let defaults = Deadlines()
        #expect(scaled.handshake == .seconds(5))
        #expect(scaled.certificate == defaults.certificate * 2)
        #expect(scaled.diceAuth == defaults.diceAuth * 2)
        #expect(scaled.stall == defaults.stall * 2)
        #expect(scaled.transfer == defaults.transfer * 2)
        #expect(scaled.close == defaults.close * 2)
        #expect(scaled.certificate == .seconds(20))

        var environment = requiredEnvironment
        environment["OTA_DEADLINE_SCALE"] = "2"
        #expect(try configuration([], environment: environment).deadlines == defaults.scaled(by: 2))
    }

    @Test("the other settings: bind address, bounds, grace period, CA path, log level")
    func otherSettings() throws {
        let parsed = try configuration(["--bind", "::1", "--max-concurrent", "3", "--max-handshakes", "2",
                                        "--max-per-address", "5", "--max-unattested", "7",
                                        "--grace-period", "0.5",
                                        "--dice-auth-ca", "/etc/ota/ca.pem", "--log-level", "WARN",
                                        "--timeout", "30"])
        #expect(parsed.bindAddress == "::1")
        #expect(parsed.maxConcurrent == 3)
        #expect(parsed.maxHandshakes == 2)
        #expect(parsed.maxPerAddress == 5)
        #expect(parsed.maxUnattested == 7)
        #expect(parsed.gracePeriod == .milliseconds(500))
        #expect(parsed.diceAuth.caPath == "/etc/ota/ca.pem")
        #expect(parsed.logLevel == .warning)
        #expect(parsed.timeout == .seconds(30))
    }

    @Test("the Dice-Auth client certificate and key come from flags or variables; a flag wins")
    func diceAuthClientCertificate() throws {
        let fromFlags = try configuration(["--dice-auth-client-cert", "/etc/ota/client.crt",
                                           "--dice-auth-client-key=/etc/ota/client.key"]).diceAuth
        #expect(fromFlags.clientCertificatePath == "/etc/ota/client.crt")
        #expect(fromFlags.clientKeyPath == "/etc/ota/client.key")

        var environment = requiredEnvironment
        environment["DICE_AUTH_CLIENT_CERT_PATH"] = "/env/client.crt"
        environment["DICE_AUTH_CLIENT_KEY_PATH"] = "/env/client.key"
        let fromEnvironment = try configuration([], environment: environment).diceAuth
        #expect(fromEnvironment.clientCertificatePath == "/env/client.crt")
        #expect(fromEnvironment.clientKeyPath == "/env/client.key")

        let mixed = try configuration(["--dice-auth-client-key", "/flag/client.key"], environment: environment)
        #expect(mixed.diceAuth.clientCertificatePath == "/env/client.crt")
        #expect(mixed.diceAuth.clientKeyPath == "/flag/client.key")
    }

    @Test("a Dice-Auth client certificate without its key, or the key alone, is refused naming both",
          arguments: [
              (["--dice-auth-client-cert", "/c.crt"], [:], "--dice-auth-client-cert"),
              (["--dice-auth-client-key", "/c.key"], [:], "--dice-auth-client-key"),
              ([], ["DICE_AUTH_CLIENT_CERT_PATH": "/c.crt"], "DICE_AUTH_CLIENT_CERT_PATH"),
              ([], ["DICE_AUTH_CLIENT_KEY_PATH": "/c.key"], "DICE_AUTH_CLIENT_KEY_PATH"),
              ([], ["DICE_AUTH_CLIENT_KEY_PATH": "/c.key", "DICE_AUTH_CLIENT_CERT_PATH": ""],
               "DICE_AUTH_CLIENT_KEY_PATH"),
          ])
    func diceAuthClientCertificateWithoutKey(arguments: [String], variables: [String: String], given: String) {
        let environment = requiredEnvironment.merging(variables) { _, new in new }
        let message = refusal(arguments, environment: environment)
        #expect(message.contains(given), "names the setting as given: \(message)")
        let missingVariable = given.contains("CERT") || given.contains("cert")
            ? "DICE_AUTH_CLIENT_KEY_PATH" : "DICE_AUTH_CLIENT_CERT_PATH"
        #expect(message.contains(missingVariable), "names the missing one: \(message)")
    }
}

@Suite("ConfigurationParser: what a first-time user runs into")
struct ConfigurationFirstUseTests {
    @Test("with nothing set, every missing required setting is named in one message")
    func everyMissingSettingNamedAtOnce() {
        let message = refusal([], environment: [:])
        for name in ["NEW_FIRMWARE_PATH", "DICE_AUTH_URL", "SERVER_CRT_PATH", "SERVER_KEY_PATH"] {
            #expect(message.contains(name), "\(message)")
        }
    }

    @Test("an option given an empty value is an error, not silently the default",
          arguments: [["--port", ""], ["--port="], ["--bind", ""], ["--image="]])
    func emptyOptionValue(arguments: [String]) {
        #expect(refusal(arguments).contains("needs a value"))
    }

    @Test("--help and --version win wherever they stand, even after a mistake",
          arguments: [["--bogus", "--help"], ["--port", "x", "-h"], ["--frobnicate", "--version"]])
    func helpWinsAnywhere(arguments: [String]) throws {
        let request = try ConfigurationParser.parse(arguments: arguments, environment: [:])
        switch request {
        case .help, .version: break
        case .run: Issue.record("expected help or version, got a run")
        case .check: Issue.record("expected help or version, got a check")
        }
    }

    @Test("a Dice-Auth URL curl would refuse is refused at start",
          arguments: ["http://127.0.0.1:99999/verify", "http://[::1/verify"])
    func urlCurlWouldRefuse(url: String) {
        #expect(refusal(["--dice-auth-url", url]).contains("--dice-auth-url"))
    }
}

@Suite("ConfigurationParser: TLS policy settings")
struct TLSSettingsParserTests {
    @Test("by default no cipher list and TLS 1.2 at least")
    func defaults() throws {
        let parsed = try configuration([])
        #expect(parsed.tls.ciphers == nil)
        #expect(parsed.tls.minimumVersion == .tls12)
    }

    @Test("the cipher list and minimum version come from flags or variables; a flag wins")
    func flagsAndVariables() throws {
        var environment = requiredEnvironment
        environment["OTA_TLS_CIPHERS"] = "ECDHE-RSA-AES128-GCM-SHA256"
        environment["OTA_TLS_MIN_VERSION"] = "1.3"
        let fromVariables = try configuration([], environment: environment)
        #expect(fromVariables.tls.ciphers == "ECDHE-RSA-AES128-GCM-SHA256")
        #expect(fromVariables.tls.minimumVersion == .tls13)

        let fromFlags = try configuration(["--tls-ciphers=ECDHE-RSA-AES256-GCM-SHA384", "--tls-min-version", "1.2"],
                                          environment: environment)
        #expect(fromFlags.tls.ciphers == "ECDHE-RSA-AES256-GCM-SHA384")
        #expect(fromFlags.tls.minimumVersion == .tls12)
    }

    @Test("a bad minimum version names the setting and the allowed values")
    func badMinimumVersion() {
        let message = refusal(["--tls-min-version", "1.0"])
        #expect(message.contains("--tls-min-version") && message.contains("1.2 or 1.3"), "\(message)")
    }
}

/// SHA-256 of firmware-sample/certs/device.der, as `sha256sum` prints it.
private let deviceFingerprint = "86d8e904f5c19824d655edc687defe3950678eb0fa44b430bc80791ad11dbbb1"

@Suite("ConfigurationParser: device policy settings")
struct DevicePolicyParserTests {
    @Test("by default any device, from any address, with or without proof")
    func defaults() throws {
        let policy = try configuration([]).devicePolicy
        #expect(policy == DevicePolicy())
        #expect(!policy.requireProof && policy.expectedDevices.isEmpty && policy.allowedPeers.isEmpty)
    }

    @Test("--require-proof needs no value; OTA_REQUIRE_PROOF is 1 or 0; the flag wins over 0")
    func requireProof() throws {
        #expect(try configuration(["--require-proof"]).devicePolicy.requireProof)
        var environment = requiredEnvironment
        environment["OTA_REQUIRE_PROOF"] = "1"
        #expect(try configuration([], environment: environment).devicePolicy.requireProof)
        environment["OTA_REQUIRE_PROOF"] = "0"
        #expect(try !configuration([], environment: environment).devicePolicy.requireProof)
        #expect(try configuration(["--require-proof"], environment: environment).devicePolicy.requireProof)
        #expect(try configuration(["--require-proof=1"]).devicePolicy.requireProof)
        #expect(try !configuration(["--require-proof=0"]).devicePolicy.requireProof)
        #expect(refusal(["--require-proof=maybe"]).contains("--require-proof: 'maybe' is not 1 or 0"))
        environment["OTA_REQUIRE_PROOF"] = "maybe"
        let message = refusal([], environment: environment)
        #expect(message.contains("OTA_REQUIRE_PROOF") && message.contains("1 or 0"), "\(message)")
    }

    @Test("fingerprints: repeatable flag or comma list, any case, colons allowed, kept lower-case once each")
    func expectedDevices() throws {
        let upper = deviceFingerprint.uppercased()
        let colons = stride(from: 0, to: 64, by: 2).map { offset in
            let start = upper.index(upper.startIndex, offsetBy: offset)
            return String(upper[start..<upper.index(start, offsetBy: 2)])
        }.joined(separator: ":")
        let other = String(repeating: "ab", count: 32)
        let fromFlags = try configuration(["--expect-device", upper, "--expect-device=\(other)",
                                           "--expect-device", colons])
        #expect(fromFlags.devicePolicy.expectedDevices == [deviceFingerprint, other])

        var environment = requiredEnvironment
        environment["OTA_EXPECTED_DEVICES"] = "\(colons), \(other)"
        #expect(try configuration([], environment: environment).devicePolicy.expectedDevices
                == [deviceFingerprint, other])
        // A flag replaces the variable's whole list.
        #expect(try configuration(["--expect-device", other], environment: environment).devicePolicy.expectedDevices
                == [other])
    }

    @Test("a fingerprint that is not 64 hex digits is refused, naming the setting",
          arguments: ["86d8e904f5c1", String(repeating: "g", count: 64), String(repeating: "a", count: 65),
                      "86:d8:e9", String(repeating: "a", count: 64) + ",",
                      "sha256:" + String(repeating: "a", count: 64)])
    func badFingerprint(text: String) {
        let fromFlag = refusal(["--expect-device", text])
        #expect(fromFlag.contains("--expect-device") && !fromFlag.contains("OTA_EXPECTED_DEVICES"), "\(fromFlag)")
        var environment = requiredEnvironment
        environment["OTA_EXPECTED_DEVICES"] = text
        let fromVariable = refusal([], environment: environment)
        #expect(fromVariable.contains("OTA_EXPECTED_DEVICES"), "\(fromVariable)")
    }

    @Test("peer addresses: IPv4, IPv6, IPv4-mapped IPv6 equal to its IPv4 form, brackets allowed")
    func allowedPeers() throws {
        let policy = try configuration(["--allow-peer", "127.0.0.2", "--allow-peer", "::ffff:127.0.0.2",
                                        "--allow-peer=[::1]"]).devicePolicy
        #expect(policy.allowedPeers.map(\.description) == ["127.0.0.2", "::1"])
        var environment = requiredEnvironment
        environment["OTA_DEVICE_ADDRESS"] = "::FFFF:10.0.0.7, 0:0:0:0:0:0:0:1"
        #expect(try configuration([], environment: environment).devicePolicy.allowedPeers.map(\.description)
                == ["10.0.0.7", "::1"])
    }

    @Test("a peer address that is not a numeric address is refused, naming the setting",
          arguments: ["ota-device.local", "127.0.0.2:4433", "127.0.0.256", "::1::2", "10.0.0.0/8"])
    func badPeer(text: String) {
        let fromFlag = refusal(["--allow-peer", text])
        #expect(fromFlag.contains("--allow-peer") && fromFlag.contains("numeric"), "\(fromFlag)")
        var environment = requiredEnvironment
        environment["OTA_DEVICE_ADDRESS"] = text
        #expect(refusal([], environment: environment).contains("OTA_DEVICE_ADDRESS"))
    }

    @Test("the help text names the new settings and their variables")
    func help() {
        let text = ConfigurationParser.helpText
        for name in ["--require-proof", "OTA_REQUIRE_PROOF", "--expect-device", "OTA_EXPECTED_DEVICES",
                     "--allow-peer", "OTA_DEVICE_ADDRESS"] {
            #expect(text.contains(name), "\(name) missing from --help")
        }
    }
}
