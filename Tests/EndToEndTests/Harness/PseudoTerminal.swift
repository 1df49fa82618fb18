import Foundation
import Testing

/// A program whose standard error is a pseudo-terminal, as when an operator runs it by hand:
/// `isatty(2)` is true in the child. The test reads everything written there, raw (with the
/// terminal's own newline translation, "\n" to "\r\n").
final class TerminalChild: Sendable {
    let process: Process
    /// The bytes read from the terminal's controlling side, decoded as UTF-8.
    let output = Monitor(TerminalOutput())

    struct TerminalOutput: Sendable {
        var text = ""
        var ended = false
    }

    /// Starts `executable` with its standard error on a new pseudo-terminal (standard output
    /// and input on /dev/null).
    init(executable: URL, arguments: [String] = [], environment: [String: String]) throws {
        let (controller, process) = try DescriptorCreation.serialized { () throws -> (Int32, Process) in
            let controller = PTY.openpt(O_RDWR | O_NOCTTY | O_CLOEXEC)
            guard controller >= 0, PTY.grantpt(controller) == 0, PTY.unlockpt(controller) == 0,
                  let name = PTY.ptsname(controller) else {
                throw HarnessError("cannot open a pseudo-terminal: errno \(errno)")
            }
            let terminal = open(String(cString: name), O_RDWR | O_NOCTTY | O_CLOEXEC)
            guard terminal >= 0 else {
                close(controller)
                throw HarnessError("cannot open \(String(cString: name)): errno \(errno)")
            }
            let process = Process()
            process.executableURL = executable
            process.arguments = arguments
            process.environment = environment
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle(fileDescriptor: terminal, closeOnDealloc: true)
            do {
                try process.run()
            } catch {
                close(controller)
                throw error
            }
            // Only the child holds the terminal side now: its exit ends the reads below.
            (process.standardError as? FileHandle).map { try? $0.close() }
            return (controller, process)
        }
        self.process = process
        let output = self.output
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 16384)
            while true {
                let count = read(controller, &buffer, buffer.count)
                if count < 0 && errno == EINTR { continue }
                // EIO once no process holds the terminal side any more.
                if count <= 0 { break }
                let chunk = String(decoding: buffer[0..<count], as: UTF8.self)
                output.update { $0.text += chunk }
            }
            close(controller)
            output.update { $0.ended = true }
        }
    }

    var text: String { output.read { $0.text } }

    /// Waits until the output holds `fragment`; false when the time passed or the output ended first.
    func waitFor(_ fragment: String, within timeout: Duration) async -> Bool {
        await output.wait(within: timeout) { $0.text.contains(fragment) || $0.ended }
        return text.contains(fragment)
    }

    /// Waits for the end of the output (the child exited); false if it had not by `timeout`.
    func waitForEnd(within timeout: Duration) async -> Bool {
        await output.wait(within: timeout) { $0.ended }
    }

    func kill() {
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
    }
}

/// glibc's pseudo-terminal calls, which Swift's Glibc module leaves out (its headers declare
/// them only under _XOPEN_SOURCE), looked up by name in the C library already loaded.
private enum PTY {
    typealias OpenFunction = @convention(c) (Int32) -> Int32
    typealias NameFunction = @convention(c) (Int32) -> UnsafeMutablePointer<CChar>?

    private static func function<T>(_ name: String, as type: T.Type) -> T {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else {
            fatalError("\(name) not found in the C library")
        }
        return unsafeBitCast(symbol, to: type)
    }

    static let openpt = function("posix_openpt", as: OpenFunction.self)
    static let grantpt = function("grantpt", as: OpenFunction.self)
    static let unlockpt = function("unlockpt", as: OpenFunction.self)
    static let ptsname = function("ptsname", as: NameFunction.self)
}
