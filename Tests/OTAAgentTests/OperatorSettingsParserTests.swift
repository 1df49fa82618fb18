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

private func request(_ arguments: [String], _ extra: [String: String] = [:]) throws -> ConfigurationParser.Request {
    try ConfigurationParser.parse(arguments: arguments, environment: baseEnvironment.merging(extra) { _, new in new })
}

private func parsed(_ arguments: [String] = [], _ extra: [String: String] = [:]) throws -> AgentConfiguration {
    guard case .run(let configuration) = try request(arguments, extra) else {
        throw AgentError(.internal, "expected a run request")
    }
    return configuration
}

private func refusal(_ arguments: [String] = [], _ extra: [String: String] = [:],
                     sourceLocation: SourceLocation = #_sourceLocation) -> String
{
    let error = #expect(throws: AgentError.self, sourceLocation: sourceLocation) {
        _ = try request(arguments, extra)
    }
    #expect(error?.kind == .configuration, sourceLocation: sourceLocation)
    return error?.message ?? ""
}

/// --log-format, --result-file and the check subcommand.
@Suite("Operator settings")
struct OperatorSettingsParserTests {
    @Test("logs are text and no result file is written unless asked")
    func defaults() throws {
        let configuration = try parsed()
        #expect(configuration.logFormat == .text)
        #expect(configuration.resultFilePath == nil)
    }

    @Test("--log-format and OTA_LOG_FORMAT take text or json, in any case; the flag wins",
          arguments: [
              ([] as [String], ["OTA_LOG_FORMAT": "json"], LogFormat.json),
              (["--log-format", "json"], [:], .json),
              (["--log-format=JSON"], [:], .json),
              (["--log-format", "text"], ["OTA_LOG_FORMAT": "json"], .text),
              ([], ["OTA_LOG_FORMAT": ""], .text),
          ])
    func logFormat(arguments: [String], environment: [String: String], expected: LogFormat) throws {
        #expect(try parsed(arguments, environment).logFormat == expected)
    }

    @Test("an unknown log format is refused, naming the flag or the variable as given")
    func badLogFormat() {
        let byFlag = refusal(["--log-format", "yaml"])
        #expect(byFlag.contains("--log-format") && byFlag.contains("'yaml'") && byFlag.contains("text or json"),
                "\(byFlag)")
        let byVariable = refusal([], ["OTA_LOG_FORMAT": "logfmt"])
        #expect(byVariable.contains("OTA_LOG_FORMAT") && byVariable.contains("'logfmt'"), "\(byVariable)")
    }

    @Test("--progress-interval and OTA_PROGRESS_INTERVAL: 1 s unless set, 0 allowed, the flag wins")
    func progressInterval() throws {
        #expect(try parsed().progressInterval == .seconds(1))
        #expect(try parsed(["--progress-interval", "0"]).progressInterval == .zero)
        #expect(try parsed([], ["OTA_PROGRESS_INTERVAL": "2.5"]).progressInterval == .milliseconds(2500))
        #expect(try parsed(["--progress-interval=0.2"], ["OTA_PROGRESS_INTERVAL": "9"]).progressInterval
                == .milliseconds(200))
        let negative = refusal(["--progress-interval", "-1"])
        #expect(negative.contains("--progress-interval") && negative.contains("from 0"), "\(negative)")
        #expect(refusal([], ["OTA_PROGRESS_INTERVAL": "often"]).contains("OTA_PROGRESS_INTERVAL"))
    }

    @Test("--result-file and OTA_RESULT_FILE name the result file; the flag wins")
    func resultFile() throws {
        #expect(try parsed(["--result-file", "/run/ota/result.json"]).resultFilePath == "/run/ota/result.json")
        #expect(try parsed([], ["OTA_RESULT_FILE": "/tmp/r.json"]).resultFilePath == "/tmp/r.json")
        #expect(try parsed(["--result-file=/a.json"], ["OTA_RESULT_FILE": "/b.json"]).resultFilePath == "/a.json")
        #expect(refusal(["--result-file", ""]).contains("--result-file"))
    }

    @Test("check, first, asks for the checks with the same settings as a run")
    func checkRequest() throws {
        let asked = try request(["check", "--port", "4500", "--log-format", "json"], ["OTA_MODE": "serve"])
        guard case .check(let configuration) = asked else {
            Issue.record("expected a check request, got \(asked)")
            return
        }
        #expect(configuration.port == 4500 && configuration.mode == .serve && configuration.logFormat == .json)
        #expect(configuration.imagePath == "/srv/firmware.bin")
    }

    @Test("check reads the settings the same way: a missing or bad one is a configuration error")
    func checkRefusals() {
        let error = #expect(throws: AgentError.self) {
            _ = try ConfigurationParser.parse(arguments: ["check"], environment: [:])
        }
        #expect(error?.message.contains("NEW_FIRMWARE_PATH") == true, "\(String(describing: error))")
        #expect(refusal(["check", "--port", "x"]).contains("--port"))
    }

    @Test("check anywhere but first is refused, saying where it goes")
    func checkPlacement() {
        let message = refusal(["--serve", "check"])
        #expect(message.contains("must come first"), "\(message)")
    }

    @Test("the help text names the subcommand, the new settings and exit code 4")
    func help() {
        let text = ConfigurationParser.helpText
        for name in ["ota-agent check", "--log-format", "OTA_LOG_FORMAT", "--result-file", "OTA_RESULT_FILE", "4 "] {
            #expect(text.contains(name), "\(name) missing from --help")
        }
    }
}
