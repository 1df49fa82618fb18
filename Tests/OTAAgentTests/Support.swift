import Foundation

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
