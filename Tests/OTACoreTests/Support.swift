import Dispatch
import Foundation
import OTACore

/// Test fixtures shared by the suites of the C core: sample files, hex, temporary files,
/// threads and the openssl command line tool.
enum Fixture {
    /// The repository root: three levels up from this file (Tests/OTACoreTests/Support.swift).
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let certificates = root.appendingPathComponent("firmware-sample/certs")

    static func path(_ name: String) -> String {
        certificates.appendingPathComponent(name).path
    }

    static func bytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: certificates.appendingPathComponent(name)))
    }

    static func text(_ name: String) throws -> String {
        try String(contentsOf: certificates.appendingPathComponent(name), encoding: .utf8)
    }

    /// The DER bytes inside a one-certificate PEM file, decoded with Foundation's base64.
    static func derFromPEM(_ name: String) throws -> [UInt8] {
        let body = try text(name).split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        guard let data = Data(base64Encoded: body) else { throw FixtureError("\(name): bad base64") }
        return [UInt8](data)
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Lower-case hex of some bytes.
func hexString(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { String(format: "%02x", Int($0)) }.joined()
}

/// The raw value of a status, as the core's functions return it.
func code(_ status: ota_status) -> Int32 { status.rawValue }

/// A fixed-size C character array (a tuple) as a Swift string, up to its first NUL.
func string<T>(fromCArray array: T) -> String {
    withUnsafeBytes(of: array) { bytes in
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }
}

/// A buffer for the core's `detail` parameters, and its text.
struct DetailBuffer {
    var storage = [CChar](repeating: 0, count: 256)

    var text: String {
        storage.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}

/// A fresh directory under the system's temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("ota-core-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let target = path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: target))
        return target
    }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// A C handle carried into another thread. The tests guarantee one user at a time, or use
/// only the functions the core documents as callable from any thread.
struct SendableHandle: @unchecked Sendable {
    let raw: OpaquePointer
}

/// The result of a body run on its own thread (blocking C calls stay off the test's executor).
final class ThreadResult<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value?
    private let finished = DispatchSemaphore(value: 0)

    init(_ body: @escaping @Sendable () -> Value) {
        let thread = Thread { [self] in
            let value = body()
            lock.lock()
            stored = value
            lock.unlock()
            finished.signal()
        }
        thread.start()
    }

    /// The value, or nil when the body did not finish within `seconds`.
    func wait(seconds: Double) -> Value? {
        guard finished.wait(timeout: .now() + seconds) == .success else { return nil }
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
}

/// Runs a program (found on PATH) and returns its standard output.
func run(_ program: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [program] + arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw FixtureError("\(program) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
    }
    return String(decoding: data, as: UTF8.self)
}

/// Milliseconds since `start` on the monotonic clock.
func milliseconds(since start: ContinuousClock.Instant) -> Double {
    let elapsed = ContinuousClock.now - start
    let (seconds, attoseconds) = elapsed.components
    return Double(seconds) * 1000 + Double(attoseconds) / 1e15
}

/// The text of a NUL-terminated C string held in an array.
func text(ofCString array: [CChar]) -> String {
    String(decoding: array.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
