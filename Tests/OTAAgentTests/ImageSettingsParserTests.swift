import Foundation
import Testing
@testable import OTAAgent

/// The four settings every deployment sets, as environment variables.
private let baseEnvironment = [
    "NEW_FIRMWARE_PATH": "/srv/firmware.bin",
    "DICE_AUTH_URL": "http://dice-auth.local:8080/verify",
    "SERVER_CRT_PATH": "/etc/ota/server.crt",
    "SERVER_KEY_PATH": "/etc/ota/server.key",
]

private func parsed(_ arguments: [String] = [], _ extra: [String: String] = [:]) throws -> AgentConfiguration {
    let environment = baseEnvironment.merging(extra) { _, new in new }
    guard case .run(let configuration) = try ConfigurationParser.parse(arguments: arguments, environment: environment)
    else {
        throw AgentError(.internal, "expected a run request")
    }
    return configuration
}

private func refusal(_ arguments: [String] = [], _ extra: [String: String] = [:],
                     sourceLocation: SourceLocation = #_sourceLocation) -> String
{
    let environment = baseEnvironment.merging(extra) { _, new in new }
    let error = #expect(throws: AgentError.self, sourceLocation: sourceLocation) {
        _ = try ConfigurationParser.parse(arguments: arguments, environment: environment)
    }
    #expect(error?.kind == .configuration, sourceLocation: sourceLocation)
    return error?.message ?? ""
}

private let digest = "226280514bdd4b0f08381c77dd67011ac68371d19da7faf4086bba1d633686ec"

/// A way of setting --allow-any-image and what it must come to.
struct AllowAnyImageCase: Sendable, CustomTestStringConvertible {
    let arguments: [String]
    let variable: String?
    let expected: Bool

    var testDescription: String {
        "\(arguments.joined(separator: " ")) OTA_ALLOW_ANY_IMAGE=\(variable ?? "(unset)") -> \(expected)"
    }
}

private let allowAnyImageCases: [AllowAnyImageCase] = [
    AllowAnyImageCase(arguments: [], variable: nil, expected: false),
    AllowAnyImageCase(arguments: ["--allow-any-image"], variable: nil, expected: true),
    AllowAnyImageCase(arguments: [], variable: "1", expected: true),
    AllowAnyImageCase(arguments: [], variable: "true", expected: true),
    AllowAnyImageCase(arguments: [], variable: "YES", expected: true),
    AllowAnyImageCase(arguments: [], variable: "on", expected: true),
    AllowAnyImageCase(arguments: [], variable: "0", expected: false),
    AllowAnyImageCase(arguments: [], variable: "false", expected: false),
    AllowAnyImageCase(arguments: [], variable: "", expected: false),
    AllowAnyImageCase(arguments: ["--allow-any-image"], variable: "0", expected: true),
    AllowAnyImageCase(arguments: ["--allow-any-image=0"], variable: "1", expected: false),
    AllowAnyImageCase(arguments: ["--allow-any-image=yes"], variable: nil, expected: true),
]

@Suite("ConfigurationParser: image settings")
struct ImageSettingsParserTests {
    @Test("by default the image is checked and no digest is expected")
    func defaults() throws {
        let configuration = try parsed()
        #expect(configuration.allowAnyImage == false)
        #expect(configuration.expectedSHA256 == nil)
    }

    @Test("--allow-any-image is a switch; its variable takes 1 or 0 and the like; a flag wins",
          arguments: allowAnyImageCases)
    func allowAnyImage(_ setting: AllowAnyImageCase) throws {
        let extra = setting.variable.map { ["OTA_ALLOW_ANY_IMAGE": $0] } ?? [:]
        #expect(try parsed(setting.arguments, extra).allowAnyImage == setting.expected)
    }

    @Test("--image-in-place is a switch like --allow-any-image; off by default",
          arguments: [([], [:], false), (["--image-in-place"], [:], true), ([], ["OTA_IMAGE_IN_PLACE": "1"], true),
                      (["--image-in-place=0"], ["OTA_IMAGE_IN_PLACE": "1"], false)])
    func imageInPlace(arguments: [String], extra: [String: String], expected: Bool) throws {
        #expect(try parsed(arguments, extra).imageInPlace == expected)
    }

    @Test("--allow-any-image takes no value: the next argument is parsed on its own")
    func allowAnyImageTakesNoValue() throws {
        let configuration = try parsed(["--allow-any-image", "--port", "5000"])
        #expect(configuration.allowAnyImage)
        #expect(configuration.port == 5000)
    }

    @Test("a switch value other than 1 or 0 is refused naming where it came from",
          arguments: [([], ["OTA_ALLOW_ANY_IMAGE": "maybe"], "OTA_ALLOW_ANY_IMAGE"),
                      (["--allow-any-image=2"], [:], "--allow-any-image")])
    func badSwitch(arguments: [String], extra: [String: String], name: String) {
        let message = refusal(arguments, extra)
        #expect(message.hasPrefix("\(name): '"), "\(message)")
        #expect(message.contains("is not 1 or 0"), "\(message)")
    }

    @Test("the expected SHA-256 comes from the variable or the flag, in either case, kept in lower case")
    func expectedSHA256() throws {
        #expect(try parsed([], ["NEW_FIRMWARE_SHA256": digest.uppercased()]).expectedSHA256 == digest)
        #expect(try parsed(["--expected-sha256", digest]).expectedSHA256 == digest)
        let flagWins = try parsed(["--expected-sha256=\(digest)"],
                                  ["NEW_FIRMWARE_SHA256": String(repeating: "0", count: 64)])
        #expect(flagWins.expectedSHA256 == digest)
    }

    @Test("a malformed SHA-256 is a configuration error naming the setting",
          arguments: [String(digest.dropLast()), digest + "0", "sha256:" + digest, String(digest.dropLast()) + "g",
                      String(digest.dropLast(3)) + "１", " " + String(digest.dropLast()), "not-hex"])
    func malformedSHA256(_ value: String) {
        let fromVariable = refusal([], ["NEW_FIRMWARE_SHA256": value])
        #expect(fromVariable.hasPrefix("NEW_FIRMWARE_SHA256: '"), "\(fromVariable)")
        #expect(fromVariable.contains("is not a SHA-256 digest (64 hex digits)"), "\(fromVariable)")
        let fromFlag = refusal(["--expected-sha256", value])
        #expect(fromFlag.hasPrefix("--expected-sha256: '"), "\(fromFlag)")
    }

    @Test("the help text lists both settings and their variables")
    func help() {
        let help = ConfigurationParser.helpText
        for text in ["--allow-any-image", "OTA_ALLOW_ANY_IMAGE", "--expected-sha256", "NEW_FIRMWARE_SHA256"] {
            #expect(help.contains(text), "\(text) missing from --help")
        }
    }
}
