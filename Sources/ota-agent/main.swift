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

/// Takes the stop signals, pending ones first, on a thread of their own and stops the agent.
func handleStopSignals(_ set: sigset_t, _ agent: Agent) {
    let thread = Thread {
        var waited = set
        while true {
            var number: Int32 = 0
            if sigwait(&waited, &number) == 0 { agent.stop(signal: number) }
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

func main() -> Never {
    let stopSet = blockStopSignals()
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
        // Before start: a stop asked for while starting is honoured once the agent runs.
        handleStopSignals(stopSet, agent)
        do {
            try agent.start()
        } catch {
            fail(error)
        }
        exit(ExitCode.of(agent.run().outcome))
    }
}

main()
