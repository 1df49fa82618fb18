import Foundation
import OTACore

/// The agent's counters, gauges and histograms, rendered in the Prometheus text exposition
/// format 0.0.4 (see `render()`). Sessions update them from their own threads: every change
/// and every rendering takes one lock, held for a few additions or one pass over the values.
/// A session takes it a handful of times (connected, verdict, transfer start, a bytes update
/// at most every 250 ms, end), never per block, so a scrape never waits long behind them.
final class AgentMetrics: @unchecked Sendable {
    /// Dice-Auth's verdicts take milliseconds to a minute (its deadline, retries included).
    static let diceAuthBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
    /// Transfers of a 1 MiB image take from well under a second to minutes for slow devices.
    static let transferBuckets: [Double] = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900]

    /// The label values every series is shown with from the start, at 0, so that a rate over
    /// the first event is right and dashboards need no "absent" special case.
    static let proofValues = ["yes", "no"]
    static let refusedPhases: [SessionPhase] = [.certificate, .attestation]
    static let failedPhases: [SessionPhase] = [.handshake, .certificate, .attestation, .transfer, .close]
    static let transferPaths = ["ktls-sendfile", "pread"]
    static let verdictNames = ["verified", "rejected", "unavailable"]
    static let transferOutcomes = [SessionOutcome.updated.rawValue, SessionOutcome.failed.rawValue]

    private let lock = NSLock()
    private var updated = LabeledCounter(labels: ["proof"])
    private var refused = LabeledCounter(labels: ["phase", "proof"])
    private var failed = LabeledCounter(labels: ["phase"])
    private var transfers = LabeledCounter(labels: ["path"])
    private var bytesSent: UInt64 = 0
    private var sessionsInFlight = 0
    private var transfersInFlight = 0
    private var accepting = false
    private var eventsDropped: UInt64 = 0
    private var diceAuth = LabeledHistogram(label: "verdict", bounds: AgentMetrics.diceAuthBuckets)
    private var transferDuration = LabeledHistogram(label: "outcome", bounds: AgentMetrics.transferBuckets)

    init() {
        for proof in Self.proofValues {
            updated.add(0, [proof])
            for phase in Self.refusedPhases { refused.add(0, [phase.rawValue, proof]) }
        }
        for phase in Self.failedPhases { failed.add(0, [phase.rawValue]) }
        for path in Self.transferPaths { transfers.add(0, [path]) }
        for name in Self.verdictNames { diceAuth.touch(name) }
        for outcome in Self.transferOutcomes { transferDuration.touch(outcome) }
    }

    // MARK: - Updates, from any thread

    func setAccepting(_ value: Bool) { lock.withLock { accepting = value } }
    var isAccepting: Bool { lock.withLock { accepting } }

    func sessionStarted() { lock.withLock { sessionsInFlight += 1 } }
    func transferStarted() { lock.withLock { transfersInFlight += 1 } }
    func addBytes(_ count: UInt64) { lock.withLock { bytesSent &+= count } }
    func eventDropped() { lock.withLock { eventsDropped &+= 1 } }

    func observeVerdict(_ verdict: Verdict, after duration: Duration) {
        lock.withLock { diceAuth.observe(duration.seconds, verdict.name) }
    }

    /// A session's end: its outcome by phase, its transfer if it had one.
    func sessionEnded(_ record: SessionRecord, transferred: Bool) {
        let proof = record.provedPossession ? "yes" : "no"
        lock.withLock {
            sessionsInFlight -= 1
            switch record.outcome {
            case .updated: updated.add(1, [proof])
            case .refused: refused.add(1, [record.phase.rawValue, proof])
            case .failed: failed.add(1, [record.phase.rawValue])
            }
            guard transferred else { return }
            transfersInFlight -= 1
            if !record.transferPath.isEmpty { transfers.add(1, [record.transferPath]) }
            if let duration = record.transferDuration {
                transferDuration.observe(duration.seconds, record.outcome.rawValue)
            }
        }
    }

    // MARK: - Rendering

    /// The whole exposition, in the text format 0.0.4.
    func render() -> String {
        var text = ""
        text.reserveCapacity(8192)
        let backend = String(cString: ota_backend_name())
        let build = "{version=\"\(escape(AgentVersion.number))\",backend=\"\(escape(backend))\"}"
        family(&text, "ota_agent_build_info", "gauge", "The agent's version and TLS backend; always 1.")
        text += "ota_agent_build_info\(build) 1\n"
        renderProcess(&text)
        lock.withLock {
            family(&text, "ota_agent_accepting", "gauge", "1 while the agent accepts devices, else 0.")
            text += "ota_agent_accepting \(accepting ? 1 : 0)\n"
            updated.render(&text, "ota_agent_devices_updated_total",
                           "Devices that received the whole image, by proof of possession.")
            refused.render(&text, "ota_agent_devices_refused_total",
                           "Devices refused before any image byte, by phase and proof of possession.")
            failed.render(&text, "ota_agent_devices_failed_total",
                          "Sessions that broke (deadline, reset, TLS error), by the phase they were in.")
            family(&text, "ota_agent_bytes_sent_total", "counter",
                   "Image bytes handed to TLS, all devices, updated during transfers.")
            text += "ota_agent_bytes_sent_total \(bytesSent)\n"
            family(&text, "ota_agent_sessions_in_flight", "gauge", "Connections being served now, any phase.")
            text += "ota_agent_sessions_in_flight \(sessionsInFlight)\n"
            family(&text, "ota_agent_transfers_in_flight", "gauge", "Devices receiving the image now.")
            text += "ota_agent_transfers_in_flight \(transfersInFlight)\n"
            transfers.render(&text, "ota_agent_transfers_total",
                             "Transfers that began, by streaming path: ktls-sendfile (kernel TLS) or pread.")
            diceAuth.render(&text, "ota_agent_dice_auth_duration_seconds",
                            "Time to Dice-Auth's verdict, retries included, by verdict.")
            transferDuration.render(&text, "ota_agent_transfer_duration_seconds",
                                    "From the transfer's start to the device's close or the failure, by outcome.")
            family(&text, "ota_agent_events_dropped_total", "counter",
                   "Events not delivered to a slow embedder's event stream (its buffer was full).")
            text += "ota_agent_events_dropped_total \(eventsDropped)\n"
        }
        return text
    }
}

/// The process's own CPU time and resident memory, under the names Prometheus clients give
/// them, read at each scrape: what the agent costs its gateway, per device when divided by the
/// updates. The CPU time is to the microsecond (getrusage), fine enough to measure one update.
private func renderProcess(_ text: inout String) {
    var usage = rusage()
    if getrusage(RUSAGE_SELF.rawValue, &usage) == 0 {
        let microseconds = (Int64(usage.ru_utime.tv_sec) + Int64(usage.ru_stime.tv_sec)) * 1_000_000
            + Int64(usage.ru_utime.tv_usec) + Int64(usage.ru_stime.tv_usec)
        let (seconds, fraction) = microseconds.quotientAndRemainder(dividingBy: 1_000_000)
        let sixDigits = String(fraction)
        family(&text, "process_cpu_seconds_total", "counter",
               "User and system CPU time the agent has used, in seconds.")
        let padding = String(repeating: "0", count: 6 - sixDigits.count)
        text += "process_cpu_seconds_total \(seconds).\(padding)\(sixDigits)\n"
    }
    if let resident = residentBytes() {
        family(&text, "process_resident_memory_bytes", "gauge", "The agent's resident memory, in bytes.")
        text += "process_resident_memory_bytes \(resident)\n"
    }
}

/// Resident pages from /proc/self/statm (its second field), in bytes; nil where it cannot be read.
private func residentBytes() -> Int? {
    let fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: 128)
    let count = read(fd, &bytes, bytes.count)
    guard count > 0 else { return nil }
    let fields = String(decoding: bytes[..<count], as: UTF8.self).split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// HELP and TYPE lines of one metric family.
private func family(_ text: inout String, _ name: String, _ type: String, _ help: String) {
    text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
func escape(_ value: String) -> String {
    var escaped = ""
    for character in value {
        switch character {
        case "\\": escaped += "\\\\"
        case "\"": escaped += "\\\""
        case "\n": escaped += "\\n"
        default: escaped.append(character)
        }
    }
    return escaped
}

/// A number as Prometheus reads it: whole numbers without a decimal point, "+Inf" for infinity.
func prometheusNumber(_ value: Double) -> String {
    if value == .infinity { return "+Inf" }
    if value.rounded() == value && abs(value) < 1e15 { return String(Int64(value)) }
    return String(value)
}

/// A counter family with labels, its series in the order first seen.
private struct LabeledCounter {
    let labels: [String]
    private var order: [[String]] = []
    private var values: [[String]: UInt64] = [:]

    init(labels: [String]) { self.labels = labels }

    mutating func add(_ amount: UInt64, _ labelValues: [String]) {
        if values[labelValues] == nil { order.append(labelValues) }
        values[labelValues, default: 0] &+= amount
    }

    func render(_ text: inout String, _ name: String, _ help: String) {
        family(&text, name, "counter", help)
        for labelValues in order {
            let pairs = zip(labels, labelValues).map { "\($0)=\"\(escape($1))\"" }.joined(separator: ",")
            text += "\(name){\(pairs)} \(values[labelValues] ?? 0)\n"
        }
    }
}

/// A histogram family with one label.
private struct LabeledHistogram {
    struct Series {
        var buckets: [UInt64]
        var sum = 0.0
        var count: UInt64 = 0
    }

    let label: String
    let bounds: [Double]
    private var order: [String] = []
    private var series: [String: Series] = [:]

    init(label: String, bounds: [Double]) {
        self.label = label
        self.bounds = bounds
    }

    /// Shows the series even before its first observation.
    mutating func touch(_ value: String) {
        guard series[value] == nil else { return }
        order.append(value)
        series[value] = Series(buckets: Array(repeating: 0, count: bounds.count))
    }

    mutating func observe(_ seconds: Double, _ value: String) {
        touch(value)
        let observed = max(0, seconds)
        // Each bucket counts the observations at or below its bound; rendering accumulates.
        if let index = bounds.firstIndex(where: { observed <= $0 }) { series[value]!.buckets[index] += 1 }
        series[value]!.sum += observed
        series[value]!.count += 1
    }

    func render(_ text: inout String, _ name: String, _ help: String) {
        family(&text, name, "histogram", help)
        for value in order {
            guard let current = series[value] else { continue }
            let labelText = "\(label)=\"\(escape(value))\""
            var cumulative: UInt64 = 0
            for (bound, count) in zip(bounds, current.buckets) {
                cumulative += count
                text += "\(name)_bucket{\(labelText),le=\"\(prometheusNumber(bound))\"} \(cumulative)\n"
            }
            text += "\(name)_bucket{\(labelText),le=\"+Inf\"} \(current.count)\n"
            text += "\(name)_sum{\(labelText)} \(prometheusNumber(current.sum))\n"
            text += "\(name)_count{\(labelText)} \(current.count)\n"
        }
    }
}
