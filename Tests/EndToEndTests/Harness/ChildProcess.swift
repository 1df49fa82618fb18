import Foundation
import Testing

/// How a child process ended.
enum Termination: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    var description: String {
        switch self {
        case .exited(let code): "exit \(code)"
        case .signaled(let signal): "killed by signal \(signal)"
        }
    }
}

/// One output stream of a child, split into lines as it arrives.
///
/// A thread of its own reads the pipe with blocking read(2) until the end of file. Foundation's
/// readabilityHandler is not used: its dispatch source can outlive the descriptor and crash
/// libdispatch's event loop, and it does not always report the end of file on Linux.
final class OutputLines: @unchecked Sendable {
    struct State: Sendable {
        var lines: [String] = []
        var partial = Data()
        /// The stream reached its end: no more lines will come.
        var ended = false
    }

    let monitor = Monitor(State())
    /// Kept so the read end stays open for as long as the reader thread uses it.
    private var pipe: Pipe?

    /// Starts reading `pipe` on a thread of its own.
    func attach(to pipe: Pipe) {
        self.pipe = pipe
        let descriptor = pipe.fileHandleForReading.fileDescriptor
        Thread.detachNewThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 16384)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                append(Data(buffer[0..<count]))
            }
            // Closed now, not when the last owner of the Pipe (the Process among them) goes:
            // a run of hundreds of children otherwise holds a thousand pipes, and Foundation's
            // Process.run() reads past its buffer when it lists that many descriptors.
            try? pipe.fileHandleForReading.close()
            finish()
        }
    }

    /// Kept for callers: the reader thread already reads up to the end of file by itself.
    func drain() {}

    private func append(_ chunk: Data) {
        monitor.update { state in
            state.partial.append(chunk)
            while let newline = state.partial.firstIndex(of: UInt8(ascii: "\n")) {
                let line = state.partial[state.partial.startIndex..<newline]
                state.lines.append(String(decoding: line, as: UTF8.self))
                state.partial.removeSubrange(state.partial.startIndex...newline)
            }
        }
    }

    private func finish() {
        monitor.update { state in
            if !state.partial.isEmpty {
                state.lines.append(String(decoding: state.partial, as: UTF8.self))
                state.partial.removeAll()
            }
            state.ended = true
        }
    }

    var lines: [String] { monitor.read { $0.lines } }
    var text: String { lines.joined(separator: "\n") }

    /// The first line that satisfies `predicate`, waiting for it up to `timeout`; nil when the
    /// stream ended or the time passed without one.
    func firstLine(within timeout: Duration,
                   where predicate: @escaping @Sendable (String) -> Bool) async -> String?
    {
        _ = await monitor.wait(within: timeout) { state in
            state.ended || state.lines.contains(where: predicate)
        }
        return monitor.read { $0.lines.first(where: predicate) }
    }

    /// Waits until the stream has ended; false if it had not by `timeout`.
    func waitForEnd(within timeout: Duration) async -> Bool {
        await monitor.wait(within: timeout) { $0.ended }
    }
}

/// Serialises every creation of descriptors in this test process with the spawning of
/// children. Foundation closes the parent's descriptors in a child by listing those open just
/// before the spawn, so a pipe or socket another test creates at that moment would leak into
/// the child: a pipe's end of file would then wait for that child, and a released port would
/// stay open.
enum DescriptorCreation {
    private static let lock = NSLock()

    static func serialized<Value>(_ body: () throws -> Value) rethrows -> Value {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }
}

/// A child process with its standard output and error captured line by line.
///
/// Always follow the creation with `defer { child.kill() }`: a test that fails halfway must
/// not leave servers behind.
final class ChildProcess: Sendable {
    let name: String
    let stdout = OutputLines()
    let stderr = OutputLines()
    private let process: Process
    private let termination = Monitor<Termination?>(nil)

    /// Starts `executable` with exactly `environment` (nothing is inherited) and `arguments`.
    /// Standard input is `stdinFile` or /dev/null; standard output goes to `stdoutFile` when
    /// given, else it is captured.
    init(name: String, executable: URL, arguments: [String] = [], environment: [String: String] = [:],
         stdinFile: URL? = nil, stdoutFile: URL? = nil) throws
    {
        self.name = name
        let (stdout, stderr, termination) = (self.stdout, self.stderr, self.termination)
        process = try DescriptorCreation.serialized {
            try Self.spawn(executable: executable, arguments: arguments, environment: environment,
                           stdinFile: stdinFile, stdoutFile: stdoutFile, stdout: stdout, stderr: stderr,
                           termination: termination)
        }
    }

    private static func spawn(executable: URL, arguments: [String], environment: [String: String],
                              stdinFile: URL?, stdoutFile: URL?, stdout: OutputLines, stderr: OutputLines,
                              termination: Monitor<Termination?>) throws -> Process
    {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        if let stdinFile {
            process.standardInput = try FileHandle(forReadingFrom: stdinFile)
        } else {
            process.standardInput = FileHandle.nullDevice
        }

        let errorPipe = Pipe()
        stderr.attach(to: errorPipe)
        process.standardError = errorPipe
        if let stdoutFile {
            guard FileManager.default.createFile(atPath: stdoutFile.path, contents: nil) else {
                throw HarnessError("cannot create \(stdoutFile.path)")
            }
            process.standardOutput = try FileHandle(forWritingTo: stdoutFile)
            stdout.monitor.update { $0.ended = true }
        } else {
            let outputPipe = Pipe()
            stdout.attach(to: outputPipe)
            process.standardOutput = outputPipe
        }

        process.terminationHandler = { finished in
            let ending: Termination = finished.terminationReason == .exit
                ? .exited(finished.terminationStatus) : .signaled(finished.terminationStatus)
            stdout.drain()
            stderr.drain()
            termination.update { $0 = ending }
        }
        try process.run()
        return process
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { termination.read { $0 == nil } }
    var ended: Termination? { termination.read { $0 } }

    func send(_ signal: Int32) {
        if isRunning {
            Glibc.kill(pid, signal)
        }
    }

    /// Kills the process if it still runs. For `defer`: never waits, never fails.
    func kill() {
        send(SIGKILL)
    }

    /// Waits for the process to end and for its captured output to be complete. On timeout the
    /// process is killed, an issue is recorded, and the result is nil: a test never hangs.
    func waitForExit(within timeout: Duration, sourceLocation: SourceLocation = #_sourceLocation) async
        -> Termination?
    {
        let clock = ContinuousClock()
        let start = clock.now
        guard await termination.wait(within: timeout, until: { $0 != nil }) else {
            kill()
            Issue.record("\(name) still running after \(timeout); killed it.\n\(transcript)",
                         sourceLocation: sourceLocation)
            return nil
        }
        // Output written just before the exit may still be in the pipes.
        let left = max(timeout - (clock.now - start), .seconds(2))
        _ = await stdout.waitForEnd(within: left)
        _ = await stderr.waitForEnd(within: left)
        return ended
    }

    /// Everything the process has printed so far, for failure messages.
    var transcript: String {
        var parts = ["--- \(name) (pid \(pid), \(ended.map(\.description) ?? "running")) ---"]
        let out = stdout.text
        if !out.isEmpty { parts.append("stdout:\n" + out) }
        let err = stderr.text
        if !err.isEmpty { parts.append("stderr:\n" + err) }
        return parts.joined(separator: "\n")
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
