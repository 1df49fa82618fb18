import Foundation
import Testing
@testable import OTAAgent

/// The rules every setting shares, whatever its type: surrounding white space, lists, numeric
/// addresses, repeated flags, and how messages name a setting.
@Suite("Setting syntax")
struct SettingSyntaxParserTests {
    static let fingerprint = String(repeating: "ab", count: 32)

    /// A valid value for every setting, and the variables it needs beside it to be accepted.
    static let samples: [String: (value: String, companion: [String: String])] = [
        "--image": ("/srv/other.bin", [:]),
        "--dice-auth-url": ("https://dice-auth.local/verify", [:]),
        "--cert": ("/etc/ota/other.crt", [:]),
        "--key": ("/etc/ota/other.key", [:]),
        "--expected-sha256": (String(repeating: "AB", count: 32), [:]),
        "--allow-any-image": ("1", [:]),
        "--image-in-place": ("yes", [:]),
        "--port": ("8443", [:]),
        "--bind": ("::1", [:]),
        "--metrics-port": ("9464", [:]),
        "--metrics-bind": ("[::1]", [:]),
        "--mode": ("serve", [:]),
        "--timeout": ("30", [:]),
        "--max-concurrent": ("3", [:]),
        "--max-handshakes": ("4", [:]),
        "--max-per-address": ("5", [:]),
        "--max-unattested": ("6", [:]),
        "--grace-period": ("0.5", [:]),
        "--handshake-timeout": ("2", [:]),
        "--certificate-timeout": ("3", [:]),
        "--dice-auth-timeout": ("4", [:]),
        "--stall-timeout": ("5", [:]),
        "--transfer-timeout": ("6", [:]),
        "--close-timeout": ("7", [:]),
        "--deadline-scale": ("2", [:]),
        "--dice-auth-ca": ("/etc/ota/ca.pem", [:]),
        // A client certificate and key go together; each comes with the other's variable.
        "--dice-auth-client-cert": ("/etc/ota/client.crt", ["DICE_AUTH_CLIENT_KEY_PATH": "/etc/ota/client.key"]),
        "--dice-auth-client-key": ("/etc/ota/client.key", ["DICE_AUTH_CLIENT_CERT_PATH": "/etc/ota/client.crt"]),
        "--dice-auth-concurrency": ("2", [:]),
        "--tls-ciphers": ("ECDHE-ECDSA-AES128-GCM-SHA256", [:]),
        "--tls-min-version": ("1.3", [:]),
        "--require-proof": ("1", [:]),
        "--expect-device": (fingerprint, [:]),
        "--allow-peer": ("192.0.2.7", [:]),
        "--log-level": ("debug", [:]),
        "--log-format": ("json", [:]),
        "--progress-interval": ("0.5", [:]),
        "--result-file": ("/tmp/result.json", [:]),
    ]

    static var flags: [String] { ConfigurationParser.settings.map(\.flag) }

    static func variable(_ flag: String) -> String {
        ConfigurationParser.settings.first { $0.flag == flag }!.key!.rawValue
    }

    /// The settings parsed, as text to compare; how each was given is left out.
    static func values(_ arguments: [String], _ environment: [String: String] = [:]) throws -> String {
        var configuration = try Parsing.parse(arguments, environment)
        configuration.settingNames = SettingNames()
        return "\(configuration)"
    }

    /// The flag with its value, as a switch takes it (`--flag=VALUE`) or as any other does.
    static func given(_ flag: String, _ value: String) -> [String] {
        ConfigurationParser.switches[flag] != nil ? ["\(flag)=\(value)"] : [flag, value]
    }

    @Test("every setting has a sample value here, so none escapes the rules below")
    func everySettingHasASample() {
        for flag in Self.flags {
            #expect(Self.samples[flag] != nil, "\(flag) has no sample value")
        }
    }

    // MARK: - Surrounding white space

    @Test("surrounding white space is trimmed from every value, from a flag or a variable alike",
          arguments: ConfigurationParser.settings.map(\.flag))
    func whiteSpaceIsTrimmed(flag: String) throws {
        let (value, companion) = try #require(Self.samples[flag])
        let padded = " \t\(value) \n"
        let plain = try Self.values(Self.given(flag, value), companion)
        // (Nil where the companion alone is refused: half of a pair.)
        #expect(plain != (try? Self.values([], companion)), "the sample \(value) changes nothing")
        #expect(try Self.values(Self.given(flag, padded), companion) == plain, "\(flag) '\(padded)'")

        let variable = Self.variable(flag)
        #expect(try Self.values([], companion.merging([variable: value]) { $1 }) == plain)
        let fromVariable = try Self.values([], companion.merging([variable: padded]) { $1 })
        #expect(fromVariable == plain, "\(variable)='\(padded)'")
    }

    @Test("the SHA-256 of the image, once refused with a trailing newline, is taken trimmed")
    func expectedDigestWithNewline() throws {
        let digest = String(repeating: "0f", count: 32)
        #expect(try Parsing.parse(["--expected-sha256", digest + "\n"]).expectedSHA256 == digest)
        #expect(try Parsing.parse([], ["NEW_FIRMWARE_SHA256": " \(digest.uppercased())\n"]).expectedSHA256 == digest)
    }

    @Test("a value that is only white space: for a flag, a missing value; for a variable, unset")
    func onlyWhiteSpace() throws {
        let message = Parsing.refusal(["--port", " \n"])
        #expect(message.contains("option --port needs a value"), "\(message)")
        #expect(try Parsing.parse([], ["OTA_PORT": " \n"]).port == 4433)
        let missing = Parsing.refusal([], ["SERVER_CRT_PATH": "\n"])
        #expect(missing.contains("SERVER_CRT_PATH (--cert) is not set"), "\(missing)")
    }

    // MARK: - Lists

    @Test("a list flag takes a comma-separated list as its variable does, and repeats",
          arguments: [("--expect-device", "OTA_EXPECTED_DEVICES"), ("--allow-peer", "OTA_DEVICE_ADDRESS")])
    func listsAreCommaSeparatedEverywhere(flag: String, variable: String) throws {
        let items = flag == "--allow-peer" ? ["192.0.2.7", "::1", "192.0.2.8"]
            : [Self.fingerprint, String(repeating: "cd", count: 32), String(repeating: "ef", count: 32)]
        let list = "\(items[0]), \(items[1]),\(items[2])"
        let oneFlag = try Parsing.parse([flag, list]).devicePolicy
        let repeated = try Parsing.parse([flag, "\(items[0]), \(items[1])", "\(flag)=\(items[2])"]).devicePolicy
        let fromVariable = try Parsing.parse([], [variable: list]).devicePolicy
        #expect(oneFlag == fromVariable && repeated == fromVariable)
        #expect(fromVariable.expectedDevices.count + fromVariable.allowedPeers.count == 3, "\(fromVariable)")
    }

    @Test("an empty list item is refused, quoting the value that holds it",
          arguments: [("--expect-device", "OTA_EXPECTED_DEVICES"), ("--allow-peer", "OTA_DEVICE_ADDRESS")])
    func emptyListItem(flag: String, variable: String) throws {
        let item = try #require(Self.samples[flag]).value
        let message = Parsing.refusal([flag, item, flag, "\(item),"])
        #expect(message == "\(flag): '\(item),' has an empty item in its comma-separated list", "\(message)")
        let fromVariable = Parsing.refusal([], [variable: "\(item),,\(item)"])
        #expect(fromVariable.hasPrefix("\(variable): '\(item),,\(item)' has an empty item"), "\(fromVariable)")
    }

    // MARK: - Numeric addresses

    static let addressFlags = ["--bind", "--metrics-bind", "--allow-peer"]

    @Test("every address setting takes dotted-quad IPv4 and standard IPv6, brackets allowed around IPv6",
          arguments: ["192.0.2.7", "0.0.0.0", "::", "::1", "[::1]", "2001:db8::7", "::ffff:192.0.2.7",
                      "2001:0db8:0000:0000:0000:0000:0000:0007", "[2001:db8::7]"])
    func addressesAccepted(text: String) throws {
        let unbracketed = text.hasPrefix("[") ? String(text.dropFirst().dropLast()) : text
        #expect(try Parsing.parse(["--bind", text]).bindAddress == unbracketed)
        #expect(try Parsing.parse(["--metrics-bind", text]).metricsBindAddress == unbracketed)
        #expect(try Parsing.parse(["--allow-peer", text]).devicePolicy.allowedPeers == [PeerAddress(unbracketed)!])
    }

    /// inet_aton and getaddrinfo read "127.1" as 127.0.0.1 and "0x7f.0.0.1" or "0177.0.0.1"
    /// by another base; inet_pton, and so every address setting, refuses them.
    @Test("short, hexadecimal and octal IPv4 forms, names, ports and zones are refused by every address setting",
          arguments: ["127.1", "10.1.2", "0x7f.0.0.1", "0177.0.0.1", "127.0.0.01", "2130706433", "[192.0.2.7]",
                      "localhost", "192.0.2.7:4433", "[::1]:4433", "10.0.0.0/8", "::1::2"])
    func addressesRefused(text: String) {
        var messages: [String] = []
        for flag in Self.addressFlags {
            let message = Parsing.refusal([flag, text])
            #expect(message.hasPrefix("\(flag): '\(text)' is not a numeric IPv4 address (dotted quad"), "\(message)")
            messages.append(String(message.dropFirst(flag.count)))
            let variable = Self.variable(flag)
            #expect(Parsing.refusal([], [variable: text]).hasPrefix("\(variable): '\(text)'"))
        }
        #expect(Set(messages).count == 1, "one rule, one message: \(messages)")
    }

    @Test("the listen settings take an IPv6 zone of an interface here; --allow-peer takes none")
    func zones() throws {
        for flag in ["--bind", "--metrics-bind"] {
            for text in ["fe80::1%lo", "[fe80::1%lo]", "fe80::1%1"] {
                let parsed = try Parsing.parse([flag, text])
                let address = flag == "--bind" ? parsed.bindAddress : parsed.metricsBindAddress
                #expect(address == (text.hasSuffix("%1") ? "fe80::1%1" : "fe80::1%lo"), "\(flag) \(text)")
            }
            for text in ["127.0.0.1%lo", "fe80::1%", "fe80::1%no-such-interface", "fe80::1%lo%lo"] {
                let message = Parsing.refusal([flag, text])
                #expect(message.hasPrefix("\(flag): '\(text)' is not a numeric IPv6 address with the zone"),
                        "\(message)")
            }
        }
        #expect(Parsing.refusal(["--allow-peer", "fe80::1%lo"])
            .hasPrefix("--allow-peer: 'fe80::1%lo' is not a numeric IPv4 address"))
    }

    @Test("a refused value is shown with its control characters escaped and cut short when long")
    func refusedValuesAreShownSafely() {
        let escaped = Parsing.refusal(["--port", "1\u{1b}[31m\u{7}"])
        #expect(escaped == "--port: '1\\u{1b}[31m\\u{7}' is not a whole number in 0...65535", "\(escaped)")
        let long = Parsing.refusal(["--mode", String(repeating: "x", count: 10_000)])
        #expect(long.count < 400 && long.contains("...' (10000 characters)"), "\(long)")
    }

    @Test("the mode is read in any case, as the other word-valued settings are")
    func modeInAnyCase() throws {
        #expect(try Parsing.parse([], ["OTA_MODE": "SERVE"]).mode == .serve)
        #expect(try Parsing.parse(["--mode", "Once"]).mode == .once)
        #expect(Parsing.refusal(["--mode", "forever"]) == "--mode: 'forever' is not once or serve")
    }

    @Test("a switch given an empty value is refused; spelled out, it is read as the variable is")
    func switchValues() throws {
        for flag in ["--require-proof", "--allow-any-image", "--image-in-place"] {
            for empty in ["\(flag)=", "\(flag)= "] {
                #expect(Parsing.refusal([empty]).hasPrefix("option \(flag) needs a value after '='"), "\(empty)")
            }
        }
        #expect(try !Parsing.parse(["--require-proof=0"]).devicePolicy.requireProof)
        #expect(try Parsing.parse(["--require-proof"]).devicePolicy.requireProof)
    }

    @Test("an option whose value would be the next option is refused; written inline, such a value is taken")
    func optionIsNoValue() throws {
        let message = Parsing.refusal(["--result-file", "--require-proof"])
        #expect(message.hasPrefix("option --result-file needs a value, and the next argument, "
            + "'--require-proof', is an option"), "\(message)")
        #expect(Parsing.refusal(["--image", "--bind", "127.0.0.1"]).hasPrefix("option --image needs a value"))
        #expect(try Parsing.parse(["--result-file=--name"]).resultFilePath == "--name")
    }

    // MARK: - Repeated flags

    @Test("a single-value flag given twice is a usage error naming it, even with the same value",
          arguments: ConfigurationParser.settings.map(\.flag).filter { !ConfigurationParser.repeatable.contains($0) })
    func repeatedFlagIsRefused(flag: String) throws {
        let (value, companion) = try #require(Self.samples[flag])
        let message = Parsing.refusal(Self.given(flag, value) + Self.given(flag, value), companion)
        #expect(message.hasPrefix("option \(flag) is given more than once"), "\(message)")
        #expect(message.contains("--allow-peer and --expect-device repeat"), "\(message)")
    }

    @Test("a switch given twice is refused as well, alone or with a value")
    func repeatedSwitch() {
        for twice in [["--require-proof", "--require-proof"], ["--image-in-place", "--image-in-place=0"]] {
            #expect(Parsing.refusal(twice).contains("is given more than once"), "\(twice)")
        }
        #expect(Parsing.refusal(["--serve", "--serve"]).contains("option --mode is given more than once"))
    }

    @Test("the repeatable flags are the list settings, and only they")
    func repeatableAreTheLists() {
        #expect(ConfigurationParser.repeatable == ["--expect-device", "--allow-peer"])
    }

    // MARK: - How messages name a setting

    @Test("a setting is named as it was given: the flag, the variable, or both when left at its default")
    func namesFollowTheSource() throws {
        let parsed = try Parsing.parse(["--cert", "/a.crt", "--port", "1"], ["OTA_BIND": "::1"])
        #expect(parsed.settingNames[.certificatePath] == "--cert")
        #expect(parsed.settingNames[.keyPath] == "SERVER_KEY_PATH")
        #expect(parsed.settingNames[.tlsCiphers] == "OTA_TLS_CIPHERS (--tls-ciphers)")
        #expect(parsed.listenerSettingName == "OTA_BIND / --port")
        #expect(parsed.metricsListenerSettingName
                == "OTA_METRICS_BIND (--metrics-bind) / OTA_METRICS_PORT (--metrics-port)")
        let built = AgentConfiguration(imagePath: "/i", diceAuthURL: "http://d", certificatePath: "/c", keyPath: "/k")
        #expect(built.settingNames[.certificatePath] == "SERVER_CRT_PATH (--cert)", "built in code: both")
    }

    @Test("a certificate, key or image failure names the flag when the flag gave it, else the variable")
    func loadFailuresNameTheSource() throws {
        let missing = "/nonexistent/ota-agent-test"
        for (arguments, environment, name) in [(["--cert", missing + ".crt"], [String: String](), "--cert"),
                                               ([], ["SERVER_CRT_PATH": missing + ".crt"], "SERVER_CRT_PATH")] {
            let parsed = try Parsing.parse(arguments, environment)
            let error = #expect(throws: AgentError.self) {
                _ = try ServerCredentials(certificatePath: parsed.certificatePath, keyPath: parsed.keyPath,
                                          names: parsed.settingNames)
            }
            #expect(error?.message.hasPrefix("\(name): ") == true, "\(String(describing: error))")
        }
        let parsed = try Parsing.parse(["--image", missing + ".bin"])
        let error = #expect(throws: AgentError.self) {
            _ = try FirmwareImage(path: parsed.imagePath, settingName: parsed.settingNames[.firmwarePath])
        }
        #expect(error?.message.hasPrefix("--image: ") == true, "\(String(describing: error))")
    }
}
