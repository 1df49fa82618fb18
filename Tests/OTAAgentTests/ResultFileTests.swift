import Foundation
import Testing
@testable import OTAAgent

private let image = ImageIdentity(path: "/srv/fw.bin", size: 1000, sha256: String(repeating: "ab", count: 32))

private func object(_ text: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
}

@Suite("Result file")
struct ResultFileTests {
    @Test("the document holds the run and each session, in JSON Foundation reads")
    func document() throws {
        var updated = SessionRecord(peer: "127.0.0.1:1")
        updated.certificate = AttestationCertificate.identity(ofDER: [0x30, 0x00])
        updated.verdict = .verified
        updated.bytesSent = 1000
        updated.outcome = .updated
        updated.phase = .done
        updated.duration = .milliseconds(57)
        updated.provedPossession = true
        updated.transferPath = "pread"
        var partial = SessionRecord(peer: "[::1]:2")
        partial.verdict = .verified
        partial.bytesSent = 400
        partial.phase = .transfer
        partial.reason = "transfer: the device stopped reading"
        var refused = SessionRecord(peer: "127.0.0.2:3")
        refused.verdict = .rejected(status: 401)
        refused.outcome = .refused
        refused.phase = .attestation

        let text = ResultFile.document(outcome: "updated", exitCode: 0, image: image,
                                       sessions: [updated, partial, refused], startedAt: Date(timeIntervalSince1970: 0),
                                       endedAt: Date(timeIntervalSince1970: 1.5))
        let root = try object(text)
        #expect(root["format"] as? String == "ota-agent-result/1")
        #expect(root["outcome"] as? String == "updated" && (root["exit_code"] as? NSNumber)?.intValue == 0)
        #expect(root["started_at"] as? String == "1970-01-01T00:00:00.000Z")
        #expect(root["ended_at"] as? String == "1970-01-01T00:00:01.500Z")
        #expect(root["reason"] is NSNull)
        #expect((root["image"] as? [String: Any])?["sha256"] as? String == image.sha256)
        #expect((root["devices_updated"] as? NSNumber)?.intValue == 1)
        let sessions = try #require(root["sessions"] as? [[String: Any]])
        #expect(sessions.count == 3)

        let first = sessions[0]
        #expect(first["device"] as? String == "127.0.0.1:1" && first["outcome"] as? String == "updated")
        #expect(first["proved_possession"] as? Bool == true)
        #expect((first["certificate"] as? [String: Any])?["sha256"] as? String == updated.certificate?.fingerprint)
        #expect(first["sha256_sent"] as? String == image.sha256, "whole image: its digest")
        #expect((first["duration_ms"] as? NSNumber)?.intValue == 57 && first["path"] as? String == "pread")
        #expect(first["reason"] is NSNull)

        #expect(sessions[1]["sha256_sent"] is NSNull, "a partial transfer has no digest")
        #expect((sessions[1]["bytes_sent"] as? NSNumber)?.intValue == 400)
        #expect(sessions[1]["certificate"] is NSNull && sessions[1]["reason"] as? String == partial.reason)
        #expect(sessions[2]["verdict"] as? String == "rejected" && sessions[2]["outcome"] as? String == "refused")
        #expect(sessions[2]["proved_possession"] as? Bool == false && sessions[2]["sha256_sent"] is NSNull)
    }

    @Test("a transfer of every byte from a file that changed has no digest")
    func changedImage() throws {
        var record = SessionRecord(peer: "127.0.0.1:1")
        record.bytesSent = 1000
        record.imageChanged = true
        let session = try object(ResultFile.session(record, image: image).compact)
        #expect(session["sha256_sent"] is NSNull)
    }

    @Test("written whole through a temporary file, replacing an earlier one, leaving nothing else")
    func atomicWrite() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ota-result-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("result.json").path
        try ResultFile.checkWritable(path)
        try ResultFile.write("old\n", to: path)
        try ResultFile.write("{\"new\":1}\n", to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "{\"new\":1}\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["result.json"])
    }

    @Test("a path in a missing folder, or a folder, is refused at start, naming the setting")
    func unwritable() {
        for path in ["/nonexistent-\(UUID().uuidString)/result.json", FileManager.default.temporaryDirectory.path] {
            let error = #expect(throws: AgentError.self) { try ResultFile.checkWritable(path) }
            #expect(error?.kind == .configuration && error?.message.contains("OTA_RESULT_FILE") == true,
                    "\(String(describing: error))")
        }
    }

    @Test("a result file that is one of the agent's inputs is refused, by path or by inode")
    func inputsAreNeverOverwritten() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("result-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let key = folder.appendingPathComponent("agent.key").path
        #expect(FileManager.default.createFile(atPath: key, contents: Data("key".utf8)))
        let linked = folder.appendingPathComponent("linked.json").path
        #expect(link(key, linked) == 0)
        let inputs = [(setting: "SERVER_KEY_PATH", path: key),
                      (setting: "NEW_FIRMWARE_PATH", path: folder.path + "/fw.bin")]

        for path in [key, folder.path + "/./agent.key", linked, folder.path + "/fw.bin"] {
            let error = #expect(throws: AgentError.self) { try ResultFile.checkWritable(path, inputs: inputs) }
            #expect(error?.message.contains("the result would overwrite it") == true, "\(String(describing: error))")
        }
        try ResultFile.checkWritable(folder.path + "/result.json", inputs: inputs)
        #expect(try String(contentsOfFile: key, encoding: .utf8) == "key")
    }

    @Test("a folder that refuses the file is named with the real cause")
    func realCause() throws {
        guard getuid() != 0 else { return }  // root writes anywhere: nothing to refuse
        let error = #expect(throws: AgentError.self) { try ResultFile.checkWritable("/proc/result.json") }
        #expect(error?.message.contains("No such file") == false, "\(String(describing: error))")
    }

    @Test("run outcomes have the names of the exiting line")
    func outcomeNames() {
        #expect(RunOutcome.updated.name == "updated" && RunOutcome.stopped.name == "stopped")
        #expect(RunOutcome.timedOut.name == "timed-out" && RunOutcome.imageChanged.name == "image-changed")
        #expect(RunOutcome.interrupted(signal: 15).name == "interrupted-by-signal-15")
    }

    @Test("certificate dates: outside them a failure, near the end a warning")
    func certificateDates() {
        let day: Int64 = 86_400
        let now: Int64 = 1_800_000_000
        let cases: [(Int64, Int64, CheckResult.Mark, String)] = [
            (now - day, now + 400 * day, .ok, "400 days left"),
            (now - day, now + 10 * day, .warn, "expires in 10 days"),
            (now - 10 * day, now - day, .fail, "expired"),
            (now + day, now + 400 * day, .fail, "not valid yet"),
        ]
        for (from, to, mark, words) in cases {
            let result = PreflightCheck.dates(notBefore: from, notAfter: to, now: now)
            #expect(result.mark == mark && result.detail.contains(words), "\(result)")
        }
    }
}
