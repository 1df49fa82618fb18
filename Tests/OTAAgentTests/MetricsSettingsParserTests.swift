import Foundation
import Testing
@testable import OTAAgent

/// `--metrics-port` / `OTA_METRICS_PORT` and `--metrics-bind` / `OTA_METRICS_BIND`.
@Suite("Metrics settings")
struct MetricsSettingsParserTests {
    @Test("by default no metrics endpoint, and loopback when one is asked for")
    func defaults() throws {
        let parsed = try Parsing.parse([])
        #expect(parsed.metricsPort == nil)
        #expect(parsed.metricsBindAddress == "127.0.0.1")
    }

    @Test("the port and address come from flags or variables; a flag wins")
    func flagsAndVariables() throws {
        let fromEnvironment = try Parsing.parse([], ["OTA_METRICS_PORT": "9464", "OTA_METRICS_BIND": "::1"])
        #expect(fromEnvironment.metricsPort == 9464 && fromEnvironment.metricsBindAddress == "::1")
        let fromFlags = try Parsing.parse(["--metrics-port", "0", "--metrics-bind=[::1]"],
                                       ["OTA_METRICS_PORT": "9464", "OTA_METRICS_BIND": "127.0.0.2"])
        #expect(fromFlags.metricsPort == 0, "0 asks for any free port")
        #expect(fromFlags.metricsBindAddress == "::1", "brackets are taken off")
        let empty = try Parsing.parse([], ["OTA_METRICS_PORT": ""])
        #expect(empty.metricsPort == nil, "an empty variable counts as unset")
    }

    @Test("a bad port or address is refused naming how it was given",
          arguments: [("--metrics-port", "OTA_METRICS_PORT", "65536"), ("--metrics-port", "OTA_METRICS_PORT", "-1"),
                      ("--metrics-port", "OTA_METRICS_PORT", "http"),
                      ("--metrics-bind", "OTA_METRICS_BIND", "localhost"),
                      ("--metrics-bind", "OTA_METRICS_BIND", "127.0.0.1:9464"),
                      ("--metrics-bind", "OTA_METRICS_BIND", "*")])
    func badValues(flag: String, variable: String, value: String) {
        let byFlag = Parsing.refusal([flag, value])
        #expect(byFlag.hasPrefix("\(flag):") && byFlag.contains("'\(value)'"), "\(byFlag)")
        let byVariable = Parsing.refusal([], [variable: value])
        #expect(byVariable.hasPrefix("\(variable):") && byVariable.contains("'\(value)'"), "\(byVariable)")
    }

    @Test("the help text names both settings and their variables")
    func help() {
        let help = ConfigurationParser.helpText
        for name in ["--metrics-port", "OTA_METRICS_PORT", "--metrics-bind", "OTA_METRICS_BIND", "/healthz"] {
            #expect(help.contains(name), "\(name) missing from --help")
        }
    }

    @Test("loopback addresses are told from the others",
          arguments: [("127.0.0.1", true), ("127.1.2.3", true), ("::1", true), ("::ffff:127.0.0.1", true),
                      ("0.0.0.0", false), ("::", false), ("10.0.0.1", false), ("fe80::1", false),
                      ("128.0.0.1", false)])
    func loopback(address: String, loopback: Bool) throws {
        #expect(try #require(PeerAddress(address)).isLoopback == loopback)
    }
}
