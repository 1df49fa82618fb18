import Foundation
import Synchronization

/// Severity of a log line.
public enum LogLevel: Int, Comparable, Sendable {
    case debug, info, warning, error

    public init?(name: String) {
        switch name.lowercased() {
        case "debug": self = .debug
        case "info": self = .info
        case "warning", "warn": self = .warning
        case "error": self = .error
        default: return nil
        }
    }

    var name: String {
        switch self {
        case .debug: "debug"
        case .info: "info"
        case .warning: "warning"
        case .error: "error"
        }
    }

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// How log lines are written.
public enum LogFormat: String, Sendable, CaseIterable {
    /// `time level event key=value ...`, for people.
    case text
    /// One JSON object per line, for log collectors: `time`, `level`, `event`, then the fields.
    case json
}

/// One `key=value` field of a log line. Key material never goes into one.
public struct LogField: Sendable {
    public let key: String
    public let value: String
    /// Made from a number (a count, bytes, a duration): a JSON number in JSON lines. A key is
    /// always logged the same way, so its JSON type never changes from line to line.
    public let isNumber: Bool

    public init(_ key: String, _ value: String) {
        self.key = key
        self.value = value
        self.isNumber = false
    }

    public init(_ key: String, _ value: some BinaryInteger) {
        self.key = key
        self.value = String(value)
        self.isNumber = true
    }

    /// A duration in seconds, to the millisecond, without trailing zeros: "60", "0.5", "2.25".
    public init(_ key: String, seconds duration: Duration) {
        let milliseconds = Int64((duration.seconds * 1000).rounded())
        let (whole, fraction) = milliseconds.quotientAndRemainder(dividingBy: 1000)
        guard fraction != 0 else {
            self.init(key, whole)
            return
        }
        var digits = String(abs(fraction))
        digits = String(repeating: "0", count: 3 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        self.init(key, (milliseconds < 0 && whole == 0 ? "-" : "") + "\(whole).\(digits)", number: true)
    }

    private init(_ key: String, _ value: String, number: Bool) {
        self.key = key
        self.value = value
        self.isNumber = number
    }
}

/// Writes one line per event: UTC time, level, event name, then fields.
///
///     2026-12-04T17:10:00.123Z info listening address=:: port=4433
///     {"time":"2026-12-04T17:10:00.123Z","level":"info","event":"listening","address":"::","port":4433}
///
/// Safe to use from any thread; lines never interleave.
public final class Logger: @unchecked Sendable {
    public typealias Sink = @Sendable (String) -> Void

    private let minimum: LogLevel
    private let sink: Sink
    private let lock = NSLock()
    public let format: LogFormat
    /// The terminal's status line the lines are written above, when standard error is one
    /// (see `TerminalStatusLine`): transfers then show live progress there.
    let statusLine: TerminalStatusLine?

    /// A logger writing lines above a terminal's status line, which shows live progress.
    public convenience init(level: LogLevel = .info, format: LogFormat = .text, statusLine: TerminalStatusLine) {
        self.init(level: level, format: format, sink: { line in statusLine.write(line: line) },
                  statusLine: statusLine)
    }

    /// A logger writing to `sink`, standard error by default.
    public convenience init(level: LogLevel = .info, format: LogFormat = .text, sink: Sink? = nil) {
        self.init(level: level, format: format, sink: sink, statusLine: nil)
    }

    private init(level: LogLevel, format: LogFormat, sink: Sink?, statusLine: TerminalStatusLine?) {
        self.minimum = level
        self.format = format
        self.statusLine = statusLine
        self.sink = sink ?? { line in
            // One write(2) per line: lines from several threads never mix.
            let bytes = Array((line + "\n").utf8)
            bytes.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = write(STDERR_FILENO, buffer.baseAddress! + offset, buffer.count - offset)
                    if written <= 0 { break }
                    offset += written
                }
            }
        }
    }

    public func log(_ level: LogLevel, _ event: String, _ fields: [LogField] = []) {
        guard level >= minimum else { return }

        let line = format == .json ? Self.jsonLine(level, event, fields) : Self.textLine(level, event, fields)
        lock.lock()
        defer { lock.unlock() }
        sink(line)
    }

    public func debug(_ event: String, _ fields: [LogField] = []) { log(.debug, event, fields) }
    public func info(_ event: String, _ fields: [LogField] = []) { log(.info, event, fields) }
    public func warning(_ event: String, _ fields: [LogField] = []) { log(.warning, event, fields) }
    public func error(_ event: String, _ fields: [LogField] = []) { log(.error, event, fields) }

    private static func textLine(_ level: LogLevel, _ event: String, _ fields: [LogField]) -> String {
        var line = timestamp()
        line.reserveCapacity(256)
        line += " "
        line += level.name
        line += " "
        line += event
        for field in fields {
            line += " "
            line += field.key
            line += "="
            line += quoted(field.value)
        }
        return line
    }

    /// `{"time":...,"level":...,"event":...,` then the fields in order: numbers (see
    /// `LogField.isNumber`) as JSON numbers, everything else as strings. A field may not take
    /// the name of the three first keys: such a field is written as `field_<key>`.
    static func jsonLine(_ level: LogLevel, _ event: String, _ fields: [LogField]) -> String {
        var members: [(String, JSONValue)] = [
            ("time", .string(timestamp())), ("level", .string(level.name)), ("event", .string(event)),
        ]
        for field in fields {
            let key = ["time", "level", "event"].contains(field.key) ? "field_\(field.key)" : field.key
            members.append((key, field.isNumber ? .number(field.value) : .string(field.value)))
        }
        return JSONValue.object(members).compact
    }

    /// Values with spaces, quotes, `=` or control characters are quoted, and control
    /// characters escaped, so one event stays one machine-splittable line whatever a device
    /// put in its certificate.
    static func quoted(_ value: String) -> String {
        if !value.isEmpty && !needsQuotes(value) {
            return value
        }

        var escaped = ""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case _ where isControl(scalar):
                escaped += "\\u{\(String(scalar.value, radix: 16))}"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return "\"\(escaped)\""
    }

    /// Whether `value` holds a space, `"`, `=`, `\\` or a control character, read as UTF-8 bytes:
    /// nearly every value needs no quotes, and a scan of bytes costs a fraction of one of
    /// Unicode scalars. C1 controls (U+0080 to U+009F) are the two bytes C2 80 to C2 9F.
    private static func needsQuotes(_ value: String) -> Bool {
        var afterC2 = false
        for byte in value.utf8 {
            switch byte {
            case 0...0x20, 0x22, 0x3D, 0x5C, 0x7F: return true
            case 0x80...0x9F where afterC2: return true
            default: afterC2 = byte == 0xC2
            }
        }
        return false
    }

    /// Unicode's control characters (general category Cc), by value: a property lookup per
    /// character costs more than the rest of a log line.
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value)
    }

    /// The last second `timestamp()` wrote, as "2026-12-04T17:10:00": lines come many to a
    /// second, and only the milliseconds change between them.
    private static let lastSecond = Mutex<(seconds: Int64, text: String)>((-1, ""))

    /// "2026-12-04T17:10:00.123Z", built by hand: Foundation's formatting consults the locale
    /// and costs tens of microseconds a line.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let seconds = Int64(now.tv_sec)
        var text = lastSecond.withLock { last in
            if last.seconds != seconds { last = (seconds, utcSecond(seconds)) }
            return last.text
        }
        text += "." + digits(now.tv_nsec / 1_000_000, 3) + "Z"
        return text
    }

    /// A moment as "2026-12-04T17:10:00Z", or with milliseconds "2026-12-04T17:10:00.123Z".
    static func utc(seconds: Int64, milliseconds: Int? = nil) -> String {
        utcSecond(seconds) + (milliseconds.map { "." + digits($0, 3) } ?? "") + "Z"
    }

    /// "2026-12-04T17:10:00": the date and time to the second, without a zone.
    private static func utcSecond(_ seconds: Int64) -> String {
        var moment = time_t(seconds)
        var parts = tm()
        gmtime_r(&moment, &parts)
        let date = "\(digits(Int(parts.tm_year) + 1900, 4))-\(digits(Int(parts.tm_mon) + 1, 2))-"
            + digits(Int(parts.tm_mday), 2)
        let time = "\(digits(Int(parts.tm_hour), 2)):\(digits(Int(parts.tm_min), 2)):"
            + digits(Int(parts.tm_sec), 2)
        return "\(date)T\(time)"
    }

    /// `value` in decimal, zero-padded to `width`.
    private static func digits(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }
}
