import Foundation
import Testing
@testable import OTAAgent

/// The sample certificates, found from this file: the repository root is three levels up
/// (Tests/OTAAgentTests/Support.swift).
enum Sample {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func bytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: root.appendingPathComponent("firmware-sample/certs/\(name)")))
    }

    static func text(_ name: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent("firmware-sample/certs/\(name)"), encoding: .utf8)
    }
}

/// The parser with the four required variables set: `environment` adds to them or replaces them.
enum Parsing {
    static let required = [
        "NEW_FIRMWARE_PATH": "/srv/firmware.bin",
        "DICE_AUTH_URL": "http://dice-auth.local:8080/verify",
        "SERVER_CRT_PATH": "/etc/ota/server.crt",
        "SERVER_KEY_PATH": "/etc/ota/server.key",
    ]

    static func parse(_ arguments: [String], _ environment: [String: String] = [:]) throws -> AgentConfiguration {
        let request = try ConfigurationParser.parse(arguments: arguments,
                                                    environment: required.merging(environment) { _, new in new })
        guard case .run(let configuration) = request else {
            throw AgentError(.internal, "expected a run request, got \(request)")
        }
        return configuration
    }

    static func refusal(_ arguments: [String], _ environment: [String: String] = [:],
                        sourceLocation: SourceLocation = #_sourceLocation) -> String {
        let error = #expect(throws: AgentError.self, sourceLocation: sourceLocation) {
            _ = try parse(arguments, environment)
        }
        #expect(error?.kind == .configuration, sourceLocation: sourceLocation)
        return error?.message ?? ""
    }
}
