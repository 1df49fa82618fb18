import Foundation
import Testing
@testable import OTAAgent

/// The `progress` lines a transfer of `total` bytes logs when blocks of `block` bytes go out,
/// `pause` apart, with at least `interval` between two lines.
private func progressLines(total: UInt64, block: UInt64, interval: Duration = .zero,
                           pause: Duration = .zero) throws -> [[String: Any]]
{
    let captured = CapturedLines()
    let transfer = TransferProgress(peer: "127.0.0.1:5", fingerprint: "86d8e904f5c1", total: total,
                                    events: Logger(level: .info, format: .json, sink: captured.sink),
                                    lineInterval: interval)
    var done: UInt64 = 0
    while done < total {
        if pause > .zero { Thread.sleep(forTimeInterval: pause.seconds) }
        done = min(total, done + block)
        transfer.update(done)
    }
    return try captured.lines.map { line in
        try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }
}

@Suite("Progress")
struct ProgressTests {
    @Test("off a terminal: one progress line at every tenth, the last at 100 %")
    func everyTenth() throws {
        let lines = try progressLines(total: 327_760, block: 16_384)
        #expect(lines.compactMap { ($0["percent"] as? NSNumber)?.intValue }
                == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
        for line in lines {
            #expect(line["event"] as? String == "progress" && line["device"] as? String == "127.0.0.1:5")
            let bytes = try #require((line["bytes"] as? NSNumber)?.uint64Value)
            let percent = try #require((line["percent"] as? NSNumber)?.uint64Value)
            #expect(bytes * 100 >= percent * 327_760, "\(line)")
            #expect((line["total"] as? NSNumber)?.intValue == 327_760)
            #expect(line["bytes_per_s"] is NSNumber && line["ms"] is NSNumber)
            #expect(line["fp"] as? String == "86d8e904f5c1")
        }
    }

    @Test("a block that crosses several tenths gives one line, at the last one crossed")
    func bigBlocks() throws {
        let lines = try progressLines(total: 100, block: 35)
        #expect(lines.compactMap { ($0["percent"] as? NSNumber)?.intValue } == [30, 70, 100])
        #expect(try progressLines(total: 1, block: 1).compactMap { ($0["percent"] as? NSNumber)?.intValue } == [100])
    }

    @Test("with an interval, a tenth passed sooner than it after the last line gives none")
    func interval() throws {
        // All at once: no tenth comes a second after the start.
        #expect(try progressLines(total: 327_760, block: 16_384, interval: .seconds(1)).isEmpty)
        // A block every 30 ms, one line at most every 100 ms: fewer lines than tenths, each
        // at a later tenth, and never two sooner than the interval.
        let lines = try progressLines(total: 1000, block: 50, interval: .milliseconds(100),
                                      pause: .milliseconds(30))
        let percents = lines.compactMap { ($0["percent"] as? NSNumber)?.intValue }
        #expect(!percents.isEmpty && percents.count < 10 && percents == percents.sorted(), "\(percents)")
        #expect(Set(percents).count == percents.count, "\(percents)")
        let times = lines.compactMap { ($0["ms"] as? NSNumber)?.intValue }
        #expect(zip(times.dropFirst(), times).allSatisfy { $0 - $1 >= 99 } && times.first ?? 0 >= 99,
                "\(times)")
    }

    @Test("sizes and times read as people write them")
    func texts() {
        #expect(ProgressBoard.bytesText(512) == "512 B")
        #expect(ProgressBoard.bytesText(151_040) == "147.5 KiB")
        #expect(ProgressBoard.bytesText(3 * 1_048_576 / 2) == "1.5 MiB")
        #expect(ProgressBoard.bytesText(1 << 30) == "1.0 GiB")
        #expect(ProgressBoard.clockText(.seconds(3)) == "0:03")
        #expect(ProgressBoard.clockText(.milliseconds(765_100)) == "12:46")
        #expect(ProgressBoard.clockText(.seconds(3723)) == "1:02:03")
    }

    @Test("the status line names every transfer with percent, bytes, rate and time left")
    func statusText() {
        let first = TransferProgress(peer: "127.0.0.1:40436", fingerprint: nil, total: 1000, events: nil)
        let second = TransferProgress(peer: "[::1]:5", fingerprint: nil, total: 4096, events: nil)
        first.update(250)
        let status = ProgressBoard.status(of: [first, second], now: first.started + .seconds(1))
        #expect(status.hasPrefix("ota: 2 transfers | 127.0.0.1:40436 25% 250 B/1000 B "), "\(status)")
        #expect(status.contains(" left"), "\(status)")
        #expect(status.contains("[::1]:5 0% 0 B/4.0 KiB"), "\(status)")
    }

    @Test("log lines go above the status line, which is drawn again after each")
    func statusLineAndLogLines() throws {
        var descriptors: [Int32] = [0, 0]
        #expect(pipe(&descriptors) == 0)
        defer { close(descriptors[0]) }
        let line = TerminalStatusLine(descriptor: descriptors[1])
        line.write(line: "first")
        line.show("ota: 1 transfer")
        line.write(line: "second")
        line.clear()
        line.clear()
        close(descriptors[1])
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = read(descriptors[0], &bytes, bytes.count)
        let text = String(decoding: bytes.prefix(max(0, count)), as: UTF8.self)
        let clear = TerminalStatusLine.clearLine
        #expect(text == "first\n" + clear + "ota: 1 transfer" + clear + "second\nota: 1 transfer" + clear,
                "\(text.debugDescription)")
    }
}
