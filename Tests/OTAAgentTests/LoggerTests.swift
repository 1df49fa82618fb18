import Foundation
import Testing
@testable import OTAAgent

/// Collects the lines a logger writes.
final class CapturedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []

    var sink: Logger.Sink {
        { [self] line in
            lock.lock()
            stored.append(line)
            lock.unlock()
        }
    }

    var lines: [String] {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
}

/// Splits a line into its time stamp and the rest.
private func splitTime(_ line: String) -> (time: String, rest: String) {
    guard let space = line.firstIndex(of: " ") else { return (line, "") }
    return (String(line[..<space]), String(line[line.index(after: space)...]))
}

/// Spaces that separate fields: outside quotes, after no backslash. Other whitespace outside
/// quotes, and raw line breaks anywhere, count 100 each so that any of them shows.
private func separators(in line: String) -> Int {
    var count = 0
    var quoted = false
    var escaped = false
    for character in line {
        if escaped {
            escaped = false
        } else if character == "\\" {
            escaped = true
        } else if character == "\"" {
            quoted.toggle()
        } else if character == " " && !quoted {
            count += 1
        } else if character.isWhitespace && !quoted {
            count += 100
        } else if character.isNewline {
            count += 100
        }
    }
    return count
}

@Suite("Logger")
struct LoggerTests {
    @Test("a line is `<ISO time>Z <level> <event> k=v ...`")
    func lineFormat() throws {
        let captured = CapturedLines()
        let logger = Logger(level: .debug, sink: captured.sink)
        let before = Date()
        logger.info("listening", [LogField("address", "::"), LogField("port", 4433)])
        let after = Date()

        let line = try #require(captured.lines.first)
        #expect(captured.lines.count == 1)
        let (time, rest) = splitTime(line)
        #expect(rest == "info listening address=:: port=4433")
        #expect(time.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil, "time \(time)")
        #expect(!line.hasSuffix("\n"), "the sink adds the line end")

        let parser = ISO8601DateFormatter()
        parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let stamp = try #require(parser.date(from: time))
        #expect(stamp.timeIntervalSince(before) > -0.002, "time \(time) is UTC and now")
        #expect(stamp.timeIntervalSince(after) < 0.002, "time \(time) is UTC and now")
    }

    @Test("the time stamp follows the clock past a second's end (the second's text is kept)")
    func timeAcrossSeconds() async throws {
        #expect(Logger.utc(seconds: 0) == "1970-01-01T00:00:00Z")
        #expect(Logger.utc(seconds: 1_796_400_000, milliseconds: 7) == "2026-12-04T16:00:00.007Z")
        let parser = ISO8601DateFormatter()
        parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for round in 0..<3 {
            if round > 0 { try await Task.sleep(for: .milliseconds(600)) }
            let before = Date()
            let stamp = try #require(parser.date(from: Logger.timestamp()))
            let after = Date()
            #expect(stamp.timeIntervalSince(before) > -0.002 && stamp.timeIntervalSince(after) < 0.002,
                    "\(stamp) not between \(before) and \(after)")
        }
    }

    @Test("each level writes its name", arguments: [(LogLevel.debug, "debug"), (.info, "info"),
                                                    (.warning, "warning"), (.error, "error")])
    func levelNames(level: LogLevel, name: String) throws {
        let captured = CapturedLines()
        let logger = Logger(level: .debug, sink: captured.sink)
        logger.log(level, "event")
        let line = try #require(captured.lines.first)
        #expect(splitTime(line).rest == "\(name) event")
    }

    @Test("lines below the minimum level are dropped",
          arguments: [(LogLevel.debug, ["debug", "info", "warning", "error"]),
                      (.info, ["info", "warning", "error"]),
                      (.warning, ["warning", "error"]),
                      (.error, ["error"])])
    func filtering(minimum: LogLevel, written: [String]) {
        let captured = CapturedLines()
        let logger = Logger(level: minimum, sink: captured.sink)
        logger.debug("e")
        logger.info("e")
        logger.warning("e")
        logger.error("e")
        #expect(captured.lines.map { splitTime($0).rest } == written.map { "\($0) e" })
    }

    @Test("durations are seconds to the millisecond without trailing zeros",
          arguments: [(Duration.seconds(60), "60"), (.milliseconds(500), "0.5"), (.milliseconds(2250), "2.25"),
                      (.microseconds(1500), "0.002"), (.zero, "0"), (.milliseconds(-1500), "-1.5"),
                      (.milliseconds(-20), "-0.02")])
    func secondsField(duration: Duration, text: String) {
        #expect(LogField("grace_s", seconds: duration).value == text)
    }

    @Test("the default level is info")
    func defaultLevel() {
        let captured = CapturedLines()
        let logger = Logger(sink: captured.sink)
        logger.debug("hidden")
        logger.info("shown")
        #expect(captured.lines.map { splitTime($0).rest } == ["info shown"])
    }

    @Test("values with spaces, quotes or = are quoted and escaped; others are written as they are",
          arguments: [
              ("plain", "plain"),
              ("CN=esp32-device-0001", "\"CN=esp32-device-0001\""),
              ("two words", "\"two words\""),
              ("say \"hi\"", "\"say \\\"hi\\\"\""),
              ("a \\ b", "\"a \\\\ b\""),
              ("", "\"\""),
              ("::ffff:10.0.0.1", "::ffff:10.0.0.1"),
              ("bell\u{7}", "\"bell\\u{7}\""),
              ("c1\u{85}x", "\"c1\\u{85}x\""),
              ("del\u{7f}", "\"del\\u{7f}\""),
              ("é€😀", "é€😀"),
          ])
    func quoting(value: String, written: String) throws {
        let captured = CapturedLines()
        Logger(sink: captured.sink).info("e", [LogField("k", value)])
        let line = try #require(captured.lines.first)
        #expect(splitTime(line).rest == "info e k=\(written)")
    }

    /// A device controls its certificate's subject; a line break in it must not forge a line.
    @Test("a value with a line break or tab stays on one line and stays one field",
          arguments: [
              "CN=x\nforged=1",
              "two words\nand more",
              "first\nsecond",
              "first\rsecond",
              "two words\rand more",
              "tab\there",
          ])
    func controlCharacters(value: String) throws {
        let captured = CapturedLines()
        Logger(sink: captured.sink).info("e", [LogField("subject", value), LogField("next", "1")])
        let line = try #require(captured.lines.first)
        #expect(!line.contains("\n") && !line.contains("\r"), "line: \(line.debugDescription)")
        #expect(line.hasSuffix(" next=1"))
        #expect(separators(in: line) == 4, "time, level, event and two fields; line: \(line.debugDescription)")
    }

    @Test("lines from many threads never interleave")
    func concurrentLines() async {
        let captured = CapturedLines()
        let logger = Logger(sink: captured.sink)
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    for index in 0..<100 {
                        logger.info("tick", [LogField("task", task), LogField("index", index)])
                    }
                }
            }
        }
        let lines = captured.lines
        #expect(lines.count == 800)
        #expect(lines.allSatisfy { splitTime($0).rest.wholeMatch(of: /info tick task=\d index=\d+/) != nil })
    }

    @Test("level names parse without regard to case; warn is warning", arguments: [
        ("debug", LogLevel?.some(.debug)), ("INFO", .info), ("Warning", .warning), ("warn", .warning),
        ("error", .error), ("fatal", nil), ("", nil),
    ])
    func levelParsing(name: String, expected: LogLevel?) {
        #expect(LogLevel(name: name) == expected)
    }
}
