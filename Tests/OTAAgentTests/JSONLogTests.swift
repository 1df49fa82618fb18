import Foundation
import Testing
@testable import OTAAgent

/// The line a JSON logger writes for one event, parsed by Foundation's own reader.
private func logged(_ event: String, _ fields: [LogField], level: LogLevel = .info) throws
    -> (line: String, object: [String: Any])
{
    let captured = CapturedLines()
    Logger(level: .debug, format: .json, sink: captured.sink).log(level, event, fields)
    let line = try #require(captured.lines.first)
    let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    return (line, object)
}

@Suite("JSON log lines")
struct JSONLogTests {
    @Test("a line is one object: time, level, event first, then the fields in order")
    func keysAndOrder() throws {
        let (line, object) = try logged("listening", [LogField("address", "::"), LogField("port", 4433)])
        #expect(!line.contains("\n"))
        #expect(line.hasPrefix(#"{"time":""#), "\(line)")
        #expect(line.hasSuffix(#","level":"info","event":"listening","address":"::","port":4433}"#.dropFirst(0))
            || line.contains(#""level":"info","event":"listening","address":"::","port":4433}"#), "\(line)")
        let time = try #require(object["time"] as? String)
        #expect(time.count == 24 && time.hasSuffix("Z") && time.contains("T"), "\(time)")
        #expect(object["level"] as? String == "info")
        #expect(object["event"] as? String == "listening")
    }

    @Test("numbers logged as numbers are JSON numbers; everything else is a string")
    func types() throws {
        let (_, object) = try logged("session-end", [
            LogField("bytes", UInt64(327_760)), LogField("ms", -3), LogField("grace_s", seconds: .milliseconds(500)),
            LogField("timeout_s", seconds: .seconds(60)), LogField("mode", "644"), LogField("fp", "86d8e904f5c1"),
        ])
        #expect((object["bytes"] as? NSNumber)?.int64Value == 327_760)
        #expect((object["ms"] as? NSNumber)?.intValue == -3)
        #expect((object["grace_s"] as? NSNumber)?.doubleValue == 0.5)
        #expect((object["timeout_s"] as? NSNumber)?.intValue == 60)
        // A numeric-looking text stays a string: a key's type never depends on its value.
        #expect(object["mode"] as? String == "644")
        #expect(object["fp"] as? String == "86d8e904f5c1")
    }

    @Test("quotes, backslashes, control characters and line separators are escaped",
          arguments: ["CN=\"quoted\"", "back\\slash", "new\nline", "tab\there", "nul\u{0}byte", "bell\u{7}",
                      "del\u{7f}", "c1\u{85}", "ls\u{2028}ps\u{2029}", "CN=\u{1b}[31mred", "日本語 ✓"])
    func escaping(value: String) throws {
        let (line, object) = try logged("verdict", [LogField("cert", value)])
        #expect(object["cert"] as? String == value, "\(line)")
        #expect(!line.unicodeScalars.contains { $0.value < 0x20 || (0x7f...0x9f).contains($0.value)
            || $0.value == 0x2028 || $0.value == 0x2029 }, "raw control character in \(line)")
    }

    @Test("a subject with bytes that are not UTF-8 gives a valid line (U+FFFD in their place)")
    func invalidUTF8() throws {
        let subject = String(decoding: [0x43, 0x4e, 0x3d, 0xff, 0xfe, 0x41, 0xc3] as [UInt8], as: UTF8.self)
        let (line, object) = try logged("verdict", [LogField("cert", subject)])
        #expect(String(validatingUTF8: line) != nil)
        #expect(object["cert"] as? String == "CN=\u{fffd}\u{fffd}A\u{fffd}", "\(line)")
    }

    @Test("a field named like a fixed key cannot shadow it")
    func reservedKeys() throws {
        let (_, object) = try logged("progress", [LogField("event", "x"), LogField("time", 5)])
        #expect(object["event"] as? String == "progress")
        #expect(object["field_event"] as? String == "x")
        #expect((object["field_time"] as? NSNumber)?.intValue == 5)
    }

    @Test("the level filter applies as in text")
    func levels() {
        let captured = CapturedLines()
        let logger = Logger(level: .warning, format: .json, sink: captured.sink)
        logger.info("quiet")
        logger.warning("loud")
        #expect(captured.lines.count == 1 && captured.lines[0].contains(#""level":"warning""#))
    }

    @Test("the text format is unchanged by the number flag")
    func textUnchanged() {
        let captured = CapturedLines()
        Logger(level: .info, sink: captured.sink).info("listening", [LogField("port", 4433), LogField("a", "b c")])
        #expect(captured.lines.first?.hasSuffix(#" info listening port=4433 a="b c""#) == true)
    }
}
