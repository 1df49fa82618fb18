// OTAAgentEmbeddingExample: the agent inside another Swift program, through the library's
// async API. Takes the same options and environment variables as ota-agent, serves, and
// prints one line per device event on standard output:
//
//     ready port=4433
//     connected device=127.0.0.1:50312
//     verdict device=127.0.0.1:50312 verdict=verified cert="CN=esp32-device-0001" proof=no
//     progress device=127.0.0.1:50312 bytes=0 total=327760
//     progress device=127.0.0.1:50312 bytes=327760 total=327760
//     ended device=127.0.0.1:50312 outcome=updated phase=done bytes=327760 ms=41
//     summary outcome=updated updated=1 sessions=1
//
// SIGINT or SIGTERM shuts the agent down (a second one cuts the grace period short).
//
// A certificate's subject is chosen by the device: it is printed escaped (see `escaped`), never
// raw, so that a device cannot put line breaks or terminal escape sequences on the screen.

import Foundation
import OTAAgent

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("ota-agent-embedding-example: \(message)\n".utf8))
    exit(2)
}

/// Writes one line to standard output at once, even into a pipe.
func say(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

/// Untrusted text (a certificate's subject) made safe to print: printable ASCII as is, `"` and
/// `\` behind a backslash, every other byte of its UTF-8 (LF, CR, ESC, BEL, DEL, C1 controls
/// and any non-ASCII byte) as `\xNN`.
func escaped(_ text: String) -> String {
    var result = ""
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"):
            result += "\\" + String(UnicodeScalar(byte))
        case 0x20..<0x7f:
            result.unicodeScalars.append(UnicodeScalar(byte))
        default:
            let hex = String(byte, radix: 16)
            result += "\\x" + (hex.count == 1 ? "0" + hex : hex)
        }
    }
    return result
}

/// One event as a line of `key=value` fields.
func line(_ event: AgentEvent) -> String {
    switch event {
    case .connected(let peer):
        return "connected device=\(peer)"
    case .verdict(let peer, let verdict, let certificate, let proved):
        let subject = escaped(certificate?.subject ?? "?")
        return "verdict device=\(peer) verdict=\(verdict.name) cert=\"\(subject)\" "
            + "proof=\(proved ? "yes" : "no")"
    case .progress(let peer, let sent, let total):
        return "progress device=\(peer) bytes=\(sent) total=\(total)"
    case .ended(let record):
        let milliseconds = record.duration.components.seconds * 1000
            + record.duration.components.attoseconds / 1_000_000_000_000_000
        return "ended device=\(record.peer) outcome=\(record.outcome.rawValue) phase=\(record.phase.rawValue) "
            + "bytes=\(record.bytesSent) ms=\(milliseconds)"
    }
}

/// Stops the agent on SIGINT and SIGTERM, from a queue of its own.
func handleStopSignals(_ agent: Agent) -> [DispatchSourceSignal] {
    [SIGINT, SIGTERM].map { number in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: DispatchQueue(label: "signals"))
        source.setEventHandler { Task { _ = await agent.shutdown() } }
        source.resume()
        return source
    }
}

/// The whole program, in a function of its own: its values are released when it returns, before
/// the process exits (leak checkers then find nothing of it still held).
func serve() async -> Int32 {
    let request: ConfigurationParser.Request
    do {
        request = try ConfigurationParser.parse(arguments: Array(CommandLine.arguments.dropFirst()),
                                                environment: ProcessInfo.processInfo.environment)
    } catch {
        fail(error.message)
    }
    guard case .run(let configuration) = request else {
        say("usage: OTAAgentEmbeddingExample [ota-agent options]\n\n\(ConfigurationParser.helpText)")
        exit(0)
    }

    // Log lines (warnings and errors only) still go to standard error.
    let agent = Agent(configuration: configuration, logger: Logger(level: .warning))
    // Subscribed before start, so not one event is missed.
    let events = agent.events()
    do {
        try agent.start()
    } catch {
        fail(error.message)
    }
    let signalSources = handleStopSignals(agent)
    say("ready port=\(agent.port ?? 0)" + (agent.metricsPort.map { " metrics_port=\($0)" } ?? ""))

    // The run serves on threads of its own; this task only reads events. The stream ends once
    // the run has ended.
    let run = Task { await agent.runDetached() }
    for await event in events {
        say(line(event))
    }
    let summary = await run.value
    let outcome = switch summary.outcome {
    case .updated: "updated"
    case .stopped: "stopped"
    case .timedOut: "timed-out"
    case .imageChanged: "image-changed"
    case .interrupted(let signal): "interrupted-by-signal-\(signal)"
    }
    say("summary outcome=\(outcome) updated=\(summary.devicesUpdated) sessions=\(summary.sessions.count)")
    withExtendedLifetime(signalSources) {}
    switch summary.outcome {
    case .updated, .stopped: return 0
    case .timedOut: return 3
    case .imageChanged: return 2
    case .interrupted(let signal): return 128 + signal
    }
}

exit(await serve())
