import Foundation
import Synchronization

/// The last line of a terminal, redrawn in place to show transfers in flight, with log lines
/// written above it.
///
/// Every write to the terminal goes through here under one lock: a log line first clears the
/// status line (carriage return, erase to end of line), goes out with its newline, and the
/// status line is drawn again after it; so log lines and the status never mix on one line.
/// The status is cut to the terminal's width, since a wrapped line cannot be redrawn in place.
public final class TerminalStatusLine: @unchecked Sendable {
    private let descriptor: Int32
    private let lock = NSLock()
    /// What the status line shows now; empty when it is cleared.
    private var shown = ""

    /// Carriage return, then ANSI "erase in line" (to its end).
    static let clearLine = "\r\u{1B}[K"

    /// Draws on `descriptor`, which must stay open for the object's life (not owned).
    public init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    /// A status line on standard error when that is a terminal; nil otherwise.
    public static func onStandardErrorIfTerminal() -> TerminalStatusLine? {
        isatty(STDERR_FILENO) == 1 ? TerminalStatusLine(descriptor: STDERR_FILENO) : nil
    }

    /// Writes one log line (without its newline) above the status line.
    func write(line: String) {
        lock.withLock {
            let prefix = shown.isEmpty ? "" : Self.clearLine
            writeAll(descriptor, prefix + line + "\n" + shown)
        }
    }

    /// Shows `status` in place of what the status line showed.
    func show(_ status: String) {
        lock.withLock {
            let fitted = String(status.prefix(max(10, columns - 1)))
            writeAll(descriptor, Self.clearLine + fitted)
            shown = fitted
        }
    }

    /// Leaves the line empty, the cursor at its start.
    func clear() {
        lock.withLock {
            guard !shown.isEmpty else { return }
            writeAll(descriptor, Self.clearLine)
            shown = ""
        }
    }

    /// The terminal's width; 80 when it does not say.
    private var columns: Int {
        var size = winsize()
        guard ioctl(descriptor, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return 80 }
        return Int(size.ws_col)
    }
}

/// One write(2) loop: the whole text, or as much as the descriptor takes before an error.
func writeAll(_ descriptor: Int32, _ text: String) {
    let bytes = Array(text.utf8)
    bytes.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { break }
            offset += written
        }
    }
}

/// One transfer's progress. `update` runs on the session's thread after every block the core
/// hands to TLS, so it does only a relaxed atomic store and a comparison; a `progress` log line
/// goes out at a tenth of the image, and only when `lineInterval` has passed since the last
/// one (or since the start): a fleet's fast transfers would otherwise each write ten lines that
/// the `session-end` line makes redundant, and cost the agent more than their transfer.
final class TransferProgress: @unchecked Sendable {
    let peer: String
    let fingerprint: String?
    let total: UInt64
    let started = ContinuousClock.now
    /// Bytes handed to TLS so far; read by the status line's drawer.
    let sent = Atomic<UInt64>(0)
    /// Where progress lines go, when there is no status line.
    private let events: Logger?
    /// The least time between two progress lines; zero: a line at every tenth.
    private let lineInterval: Duration
    /// The tenth of the image at which the next progress line is due (session thread only).
    private var nextTenth: UInt64 = 1
    /// When the last progress line went out, or the transfer began (session thread only).
    private var lastLine: ContinuousClock.Instant

    init(peer: String, fingerprint: String?, total: UInt64, events: Logger?,
         lineInterval: Duration = .zero)
    {
        self.peer = peer
        self.fingerprint = fingerprint
        self.total = total
        self.events = events
        self.lineInterval = lineInterval
        lastLine = started
    }

    func update(_ done: UInt64) {
        sent.store(done, ordering: .relaxed)
        guard let events, total > 0, done >= mark(nextTenth) else { return }
        // A block may cross several tenths (small images): one line, at the last one crossed.
        var tenth = nextTenth
        while tenth < 10 && done >= mark(tenth + 1) { tenth += 1 }
        nextTenth = tenth + 1

        let now = ContinuousClock.now
        guard now - lastLine >= lineInterval else { return }
        lastLine = now
        log(done, percent: Int(tenth * 10), to: events)
    }

    /// The byte count at which `tenth` tenths of the image have gone out.
    private func mark(_ tenth: UInt64) -> UInt64 {
        tenth >= 10 ? total : UInt64((Double(total) * Double(tenth) / 10).rounded(.up))
    }

    private func log(_ done: UInt64, percent: Int, to logger: Logger) {
        let elapsed = ContinuousClock.now - started
        var fields = [LogField("device", peer)]
        if let fingerprint { fields.append(LogField("fp", fingerprint)) }
        fields += [
            LogField("bytes", done),
            LogField("total", total),
            LogField("percent", percent),
            LogField("bytes_per_s", UInt64(rate(done, elapsed))),
            LogField("ms", Int(elapsed.milliseconds)),
        ]
        if let left = timeLeft(done, elapsed) { fields.append(LogField("eta_s", seconds: left)) }
        logger.info("progress", fields)
    }

    /// Bytes a second since the transfer began.
    func rate(_ done: UInt64, _ elapsed: Duration) -> Double {
        let seconds = elapsed.seconds
        return seconds > 0 ? Double(done) / seconds : 0
    }

    /// At the rate so far; nil before there is one.
    func timeLeft(_ done: UInt64, _ elapsed: Duration) -> Duration? {
        let perSecond = rate(done, elapsed)
        guard perSecond > 0 else { return nil }
        return .milliseconds(Int64((Double(total - min(done, total)) / perSecond * 1000).rounded(.up)))
    }
}

/// The transfers in flight, reported the way the log's destination allows: on a terminal (text
/// format), a status line redrawn at most four times a second by a thread of its own; anywhere
/// else (or in JSON format), `progress` log lines at tenths of the image, at most one per
/// `lineInterval` (see `TransferProgress`). The drawing
/// thread, started with the first transfer, then lives as long as the process (it sleeps while
/// no transfer runs): fine for the CLI, one idle thread for an embedder that logs to a terminal.
final class ProgressBoard: @unchecked Sendable {
    private let logger: Logger
    private let statusLine: TerminalStatusLine?
    private let lineInterval: Duration
    private let condition = NSCondition()
    private var transfers: [TransferProgress] = []
    private var drawing = false

    static let redrawInterval: Duration = .milliseconds(250)

    init(logger: Logger, lineInterval: Duration = .seconds(1)) {
        self.logger = logger
        self.lineInterval = lineInterval
        statusLine = logger.format == .text ? logger.statusLine : nil
    }

    /// A transfer starts: its progress object, for `update` after every block.
    func begin(peer: String, fingerprint: String?, total: UInt64) -> TransferProgress {
        let transfer = TransferProgress(peer: peer, fingerprint: fingerprint, total: total,
                                        events: statusLine == nil ? logger : nil,
                                        lineInterval: lineInterval)
        guard let statusLine else { return transfer }
        condition.withLock {
            transfers.append(transfer)
            if !drawing {
                drawing = true
                let thread = Thread { [self] in draw(on: statusLine) }
                thread.name = "ota-progress"
                thread.start()
            }
            condition.broadcast()
        }
        return transfer
    }

    /// The transfer ended (whatever the outcome). The last one clears the status line at once,
    /// so no stale line is left under the log lines that follow.
    func end(_ transfer: TransferProgress) {
        guard let statusLine else { return }
        condition.withLock {
            transfers.removeAll { $0 === transfer }
            if transfers.isEmpty { statusLine.clear() }
            condition.broadcast()
        }
    }

    /// The drawer: while transfers are in flight, redraws every `redrawInterval`. Draws under
    /// the board's lock, so a transfer that ends cannot be drawn again after its clear.
    private func draw(on statusLine: TerminalStatusLine) {
        condition.lock()
        defer { condition.unlock() }
        while true {
            while transfers.isEmpty { condition.wait() }
            statusLine.show(Self.status(of: transfers))
            let next = Date().addingTimeInterval(Self.redrawInterval.seconds)
            while !transfers.isEmpty && Date() < next { _ = condition.wait(until: next) }
        }
    }

    /// "ota: 2 transfers | 127.0.0.1:40436 45% 147.5 KiB/320.1 KiB 2.1 MiB/s 0:03 left | ..."
    static func status(of transfers: [TransferProgress], now: ContinuousClock.Instant = .now) -> String {
        let count = transfers.count == 1 ? "1 transfer" : "\(transfers.count) transfers"
        let parts = transfers.map { transfer in
            let done = transfer.sent.load(ordering: .relaxed)
            let elapsed = now - transfer.started
            let percent = transfer.total > 0 ? Double(done) * 100 / Double(transfer.total) : 100
            var text = "\(transfer.peer) \(Int(percent))% \(bytesText(done))/\(bytesText(transfer.total))"
            text += " \(bytesText(UInt64(transfer.rate(done, elapsed))))/s"
            if done >= transfer.total {
                // All handed to TLS; much may still sit in socket buffers until the device reads it.
                text += ", waiting for the device to confirm"
            } else if let left = transfer.timeLeft(done, elapsed) {
                text += " \(clockText(left)) left"
            }
            return text
        }
        return (["ota: \(count)"] + parts).joined(separator: " | ")
    }

    /// 512 B, 147.5 KiB, 2.1 MiB, 1.0 GiB.
    static func bytesText(_ bytes: UInt64) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB"]
        guard bytes >= 1024 else { return "\(bytes) B" }
        var value = Double(bytes) / 1024
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) \(units[unit])"
    }

    /// 0:03, 12:45, 1:02:03.
    static func clockText(_ duration: Duration) -> String {
        let total = Int(duration.seconds.rounded(.up))
        let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60)
        let twoDigits = { (value: Int) in value < 10 ? "0\(value)" : "\(value)" }
        return hours > 0 ? "\(hours):\(twoDigits(minutes)):\(twoDigits(seconds))"
            : "\(minutes):\(twoDigits(seconds))"
    }
}
