// ota-agent: the command-line tool. Reads flags and environment, runs the agent, and maps
// every ending to one exit code (see ExitCode).

import Foundation
import OTAAgent

/// The process's exit codes, documented in the README and in --help.
enum ExitCode: Int32 {
    case updated = 0
    case internalError = 1
    case configuration = 2
    case timedOut = 3
    case checkFailed = 4
    case interrupted = 128

    static func of(_ outcome: RunOutcome) -> Int32 {
        switch outcome {
        case .updated, .stopped: ExitCode.updated.rawValue
        case .timedOut: ExitCode.timedOut.rawValue
        case .imageChanged: ExitCode.configuration.rawValue
        case .interrupted(let signal): ExitCode.interrupted.rawValue + signal
        }
    }

    static func of(_ error: AgentError) -> Int32 {
        error.kind == .configuration ? configuration.rawValue : internalError.rawValue
    }
}

/// A write to a device that has gone away must be an error, not the end of the process.
func ignoreSIGPIPE() {
    signal(SIGPIPE, SIG_IGN)
}

/// Many concurrent devices need many descriptors; the hard limit is ours to take.
func raiseOpenFileLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}

/// The signals that stop the agent: gracefully, and at once when repeated.
let stopSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP]

/// Blocks the stop signals in this thread and every thread started after it, so that one that
/// arrives before the agent is ready stays pending instead of being lost. Call it first thing.
func blockStopSignals() -> sigset_t {
    var set = sigset_t()
    sigemptyset(&set)
    for number in stopSignals { sigaddset(&set, number) }
    pthread_sigmask(SIG_BLOCK, &set, nil)
    return set
}

/// Whether the agent has finished starting, for a stop signal that may come first.
final class StartGate: @unchecked Sendable {
    private let lock = NSLock()
    private var started = false
    private var stoppedBeforeStart = false

    /// The start is over, well or not; false when a stop signal came first and is ending the
    /// process.
    func endStart() -> Bool {
        lock.withLock {
            started = !stoppedBeforeStart
            return started
        }
    }

    /// True, once, when a stop came before the start was over: nothing is served yet.
    func claimStopBeforeStart() -> Bool {
        lock.withLock {
            guard !started, !stoppedBeforeStart else { return false }
            stoppedBeforeStart = true
            return true
        }
    }
}

/// Takes the stop signals, pending ones first, on a thread of their own and stops the agent.
/// A stop during the start (which may read a large image for a while) ends the process at
/// once: nothing is served yet, so there is nothing to drain. `beforeStart` writes what must be
/// written first (the result file).
func handleStopSignals(_ set: sigset_t, _ agent: Agent, gate: StartGate,
                      beforeStart: @escaping @Sendable (Int32) -> Void)
{
    let thread = Thread {
        var waited = set
        while true {
            var number: Int32 = 0
            guard sigwait(&waited, &number) == 0 else { continue }
            if gate.claimStopBeforeStart() {
                beforeStart(number)
                // Not exit(): the main thread may be inside a TLS library, whose clean-up at
                // exit must not run under it.
                _exit(ExitCode.interrupted.rawValue + number)
            }
            agent.stop(signal: number)
        }
    }
    thread.name = "ota-agent-signals"
    thread.start()
}

func fail(_ error: AgentError) -> Never {
    let prefix = error.kind == .configuration ? "configuration error" : "error"
    FileHandle.standardError.write(Data("ota-agent: \(prefix): \(error.message)\n".utf8))
    exit(ExitCode.of(error))
}

/// A start that failed after the configuration was read: the message as before, and for an
/// orchestrator that asked for one, a result file saying so (when it can be written).
func failToStart(_ error: AgentError, _ configuration: AgentConfiguration, startedAt: Date) -> Never {
    if configuration.resultFilePath != nil {
        let outcome = error.kind == .configuration ? "configuration-error" : "internal-error"
        let document = ResultFile.document(outcome: outcome, exitCode: ExitCode.of(error), image: nil,
                                           sessions: [], reason: error.message, startedAt: startedAt)
        try? ResultFile.write(document, for: configuration)
    }
    fail(error)
}

/// The logger a run asks for: on a terminal (text format), with a live progress line.
func makeLogger(_ configuration: AgentConfiguration) -> Logger {
    if configuration.logFormat == .text, let statusLine = TerminalStatusLine.onStandardErrorIfTerminal() {
        return Logger(level: configuration.logLevel, format: .text, statusLine: statusLine)
    }
    return Logger(level: configuration.logLevel, format: configuration.logFormat)
}

/// `ota-agent check`: one line per check on standard output, exit 0 only when none failed.
func check(_ configuration: AgentConfiguration) -> Never {
    let results = PreflightCheck(configuration: configuration).run { result in
        let line: String
        if configuration.logFormat == .json {
            line = result.jsonLine
        } else {
            let mark = result.mark.rawValue.padding(toLength: 4, withPad: " ", startingAt: 0)
            line = "\(mark) \(result.name): \(result.detail)"
        }
        print(line)
        fflush(nil)
    }
    let failed = results.filter { $0.mark == .fail }.count
    let warned = results.filter { $0.mark == .warn }.count
    let summary = failed == 0
        ? "check: all \(results.count) checks passed" + (warned > 0 ? " (\(warned) with a warning)" : "")
        : "check: \(failed) of \(results.count) checks failed"
    if configuration.logFormat == .json {
        print(CheckResult.summaryJSONLine(summary, failed: failed, warnings: warned))
    } else {
        print(summary)
    }
    exit(failed == 0 ? ExitCode.updated.rawValue : ExitCode.checkFailed.rawValue)
}

func main() -> Never {
    let stopSet = blockStopSignals()
    ignoreSIGPIPE()
    raiseOpenFileLimit()

    let request: ConfigurationParser.Request
    do {
        request = try ConfigurationParser.parse(arguments: Array(CommandLine.arguments.dropFirst()),
                                                environment: ProcessInfo.processInfo.environment)
    } catch {
        if CommandLine.arguments.dropFirst().first == "check" {
            print("FAIL settings: \(error.message)")
            print("check: the settings cannot be read; no other check ran")
            exit(ExitCode.of(error))
        }
        fail(error)
    }

    switch request {
    case .help:
        print(ConfigurationParser.helpText)
        exit(0)
    case .version:
        print("ota-agent \(AgentVersion.text)")
        exit(0)
    case .check(let configuration):
        check(configuration)
    case .run(let configuration):
        let startedAt = Date()
        let logger = makeLogger(configuration)
        let agent = Agent(configuration: configuration, logger: logger)
        let gate = StartGate()
        handleStopSignals(stopSet, agent, gate: gate) { number in
            logger.info("stopped-while-starting", [LogField("signal", number)])
            if configuration.resultFilePath != nil {
                let document = ResultFile.document(outcome: RunOutcome.interrupted(signal: number).name,
                                                   exitCode: ExitCode.interrupted.rawValue + number, image: nil,
                                                   sessions: [], reason: "stopped before the start was over",
                                                   startedAt: startedAt)
                try? ResultFile.write(document, for: configuration)
            }
        }
        let failure: AgentError?
        do {
            try agent.start()
            failure = nil
        } catch {
            failure = error
        }
        // A stop that came during the start is ending the process on the signal thread.
        guard gate.endStart() else { while true { pause() } }
        if let failure { failToStart(failure, configuration, startedAt: startedAt) }
        let summary = agent.run()
        let code = ExitCode.of(summary.outcome)
        if let path = configuration.resultFilePath {
            let document = ResultFile.document(outcome: summary.outcome.name, exitCode: code,
                                               image: agent.startedImage, sessions: summary.sessions,
                                               notListed: summary.sessionsNotListed,
                                               devicesUpdated: summary.devicesUpdated, startedAt: startedAt)
            do {
                try ResultFile.write(document, for: configuration)
                logger.info("result-file", [LogField("path", path)])
            } catch {
                // The run's exit code still tells its outcome; the log says what is missing.
                logger.error("result-file", [LogField("path", path), LogField("reason", error.message)])
            }
        }
        exit(code)
    }
}

main()
