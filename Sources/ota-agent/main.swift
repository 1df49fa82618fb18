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

/// SIGINT, SIGTERM and SIGHUP stop the agent gracefully (a second one stops it at once);
/// the handlers run on a dispatch queue.
func installStopHandlers(_ agent: Agent) -> [DispatchSourceSignal] {
    [SIGINT, SIGTERM, SIGHUP].map { number in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler { agent.stop(signal: number) }
        source.resume()
        return source
    }
}

func fail(_ error: AgentError) -> Never {
    let prefix = error.kind == .configuration ? "configuration error" : "error"
    FileHandle.standardError.write(Data("ota-agent: \(prefix): \(error.message)\n".utf8))
    exit(ExitCode.of(error))
}

func main() -> Never {
    ignoreSIGPIPE()
    raiseOpenFileLimit()

    let request: ConfigurationParser.Request
    do {
        request = try ConfigurationParser.parse(arguments: Array(CommandLine.arguments.dropFirst()),
                                                environment: ProcessInfo.processInfo.environment)
    } catch {
        fail(error)
    }

    switch request {
    case .help:
        print(ConfigurationParser.helpText)
        exit(0)
    case .version:
        print("ota-agent \(AgentVersion.text)")
        exit(0)
    case .run(let configuration):
        let agent = Agent(configuration: configuration, logger: Logger(level: configuration.logLevel))
        do {
            try agent.start()
        } catch {
            fail(error)
        }
        let handlers = installStopHandlers(agent)
        let summary = agent.run()
        withExtendedLifetime(handlers) {}
        exit(ExitCode.of(summary.outcome))
    }
}

main()
