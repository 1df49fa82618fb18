import Foundation
import Testing

/// A JSON file or line as Foundation reads it.
private func jsonObject(_ data: Data, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], sourceLocation: sourceLocation)
}

/// An agent whose log is JSON: started, and its port read from the `listening` object.
private func startJSONAgent(_ environment: [String: String]) async throws -> (ChildProcess, UInt16) {
    var environment = environment
    environment["OTA_LOG_FORMAT"] = "json"
    let child = try Agent.launch(environment: environment)
    let line = await child.stderr.firstLine(within: .seconds(15)) { $0.contains(#""event":"listening""#) }
    guard let line, let port = (try? jsonObject(Data(line.utf8)))?["port"] as? NSNumber else {
        child.kill()
        throw HarnessError("ota-agent did not log a JSON listening line\n\(child.transcript)")
    }
    return (child, port.uint16Value)
}

/// Logs for collectors and for people watching, and the result file for orchestrators.
@Suite("Operator output")
struct OperatorOutputTests {
    @Test func jsonLogIsOneObjectPerLineWithStableKeysAndNumbers() async throws {
        let image = try await ServedImage.sample()
        let verifier = try await Verifier.start()
        defer { verifier.child.kill() }
        var environment = Agent.environment(diceAuthURL: verifier.url)
        environment["OTA_PROGRESS_INTERVAL"] = "0"
        let (agent, port) = try await startJSONAgent(environment)
        defer { agent.kill() }

        let run = try await DeviceSimulator.run(port: port)
        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.transcript)")
        #expect(await agent.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")

        let objects = try agent.stderr.lines.map { try jsonObject(Data($0.utf8)) }
        #expect(objects.count == agent.stderr.lines.count && objects.count > 5, "\(agent.transcript)")
        for (object, line) in zip(objects, agent.stderr.lines) {
            #expect(object["time"] is String && object["level"] is String && object["event"] is String, "\(line)")
            #expect(line.hasPrefix(#"{"time":""#), "\(line)")
        }
        let events = objects.compactMap { $0["event"] as? String }
        #expect(events.first == "starting" && events.last == "exiting", "\(events)")
        let sessionEnd = try #require(objects.first { $0["event"] as? String == "session-end" })
        #expect((sessionEnd["bytes"] as? NSNumber)?.intValue == image.size, "\(sessionEnd)")
        #expect(sessionEnd["cert"] as? String == "CN=esp32-device-0001, O=ota-agent demo fleet", "\(sessionEnd)")
        #expect(sessionEnd["outcome"] as? String == "updated" && sessionEnd["ms"] is NSNumber, "\(sessionEnd)")
        let progress = objects.filter { $0["event"] as? String == "progress" }
        #expect(progress.compactMap { ($0["percent"] as? NSNumber)?.intValue }
                    == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
                "\(agent.transcript)")
    }

    @Test func byDefaultATransferUnderASecondLogsNoProgressLineOnlyItsEnd() async throws {
        let testbed = try await Testbed.start()
        defer { testbed.stop() }
        let agent = testbed.agent

        let run = try await DeviceSimulator.run(port: agent.port)
        #expect(run.termination == .exited(0), "\(run.transcript)\n\(agent.transcript)")
        let end = await agent.waitForLog("session-end")
        #expect(end?["outcome"] == "updated" && end?.integer("bytes") == 327_760, "\(agent.transcript)")
        // On loopback the whole image goes in milliseconds, well under the 1 s default.
        let ms = end?.integer("ms") ?? Int.max
        #expect(ms >= 1000 || agent.log("progress").isEmpty, "\(agent.transcript)")
    }

    @Test func offATerminalProgressIsALogLineAtEveryTenthPerDevice() async throws {
        let testbed = try await Testbed.start(settings: ["OTA_MODE": "serve", "OTA_PROGRESS_INTERVAL": "0"])
        defer { testbed.stop() }
        let agent = testbed.agent

        let run = try await DeviceSimulator.run(port: agent.port, options: ["--devices", "2"])
        #expect(run.termination == .exited(0), "\(run.transcript)\n\(agent.transcript)")
        #expect(await agent.waitForLog("session-end", number: 2) != nil, "\(agent.transcript)")

        let progress = agent.log("progress")
        let devices = Set(progress.compactMap { $0["device"] })
        #expect(devices.count == 2, "\(agent.transcript)")
        for device in devices {
            let lines = progress.filter { $0["device"] == device }
            #expect(lines.compactMap { $0.integer("percent") } == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
                    "\(agent.transcript)")
            #expect(lines.allSatisfy { $0.integer("bytes") != nil && $0.integer("bytes_per_s") != nil
                && $0.integer("total") == 327_760 }, "\(agent.transcript)")
        }
        // Off a terminal there is no status line to redraw.
        #expect(!agent.transcript.contains("\r") && !agent.transcript.contains("\u{1B}["), "\(agent.transcript)")
    }

    @Test func onATerminalALiveStatusLineIsRedrawnInPlace() async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let image = try await ServedImage.of(try scratch.writeRandom("image.bin", count: 8 << 20))
        let verifier = try await Verifier.start()
        defer { verifier.child.kill() }
        let agent = try TerminalChild(executable: try Fixtures.program("ota-agent"),
                                      environment: Agent.environment(diceAuthURL: verifier.url, image: image.url))
        defer { agent.kill() }
        #expect(await agent.waitFor("listening", within: .seconds(15)), "\(agent.text)")
        let listening = try #require(agent.text.split(separator: "\n").first { $0.contains(" listening ") })
        let port = try #require(LogLine(String(listening).trimmingCharacters(in: .whitespacesAndNewlines))?
            .integer("port"))

        // A device slow enough (at most 4 MB/s) for several redraws.
        let run = try await DeviceSimulator.run(port: UInt16(port),
                                                options: ["--read-size", "4096", "--read-pause-ms", "1"],
                                                within: .seconds(60))
        expectUpdated(run.onlyDevice(), with: image, "\(run.transcript)\n\(agent.text)")
        #expect(await agent.waitForEnd(within: .seconds(15)), "\(agent.text)")

        let text = agent.text
        let clear = "\r\u{1B}[K"
        let draws = text.components(separatedBy: clear).dropFirst()
            .filter { $0.hasPrefix("ota: 1 transfer | 127.0.0.1:") }
        #expect(draws.count >= 2, "expected redraws of the status line\n\(text.debugDescription)")
        let percents = Set(draws.compactMap { draw in
            draw.split(separator: " ").first { $0.hasSuffix("%") }.flatMap { Int($0.dropLast()) }
        })
        #expect(percents.count >= 2, "the percentage never moved: \(percents)\n\(text.debugDescription)")
        #expect(draws.contains { $0.contains("/s") && $0.contains("/8.0 MiB") }, "\(text.debugDescription)")
        // The line is cleared before each log line, and once the transfer ends: what stays on
        // the screen of each line (after its last clear) is a log line alone.
        #expect(text.contains("session-end"), "\(text)")
        for screenLine in text.components(separatedBy: "\r\n").dropLast() {
            let visible = screenLine.components(separatedBy: clear).last ?? ""
            #expect(LogLine(visible) != nil && !visible.contains("ota: 1 transfer"),
                    "not a log line alone: \(screenLine.debugDescription)")
        }
        #expect(!text.contains(" progress "), "no progress log lines on a terminal\n\(text)")
        #expect(text.hasSuffix("\r\n"), "the status line was left on the terminal\n\(text.debugDescription)")
    }

    @Test func resultFileDescribesAnUpdatedAndARefusedDevice() async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let image = try await ServedImage.sample()
        let resultPath = scratch.file("result.json").path
        let testbed = try await Testbed.start(settings: ["OTA_RESULT_FILE": resultPath])
        defer { testbed.stop() }
        let agent = testbed.agent

        let rogue = try await DeviceSimulator.run(port: agent.port, attestation: "rogue-device.der")
        expectRefused(rogue.onlyDevice(), "\(rogue.transcript)\n\(agent.transcript)")
        let genuine = try await DeviceSimulator.run(port: agent.port)
        expectUpdated(genuine.onlyDevice(), with: image, "\(genuine.transcript)\n\(agent.transcript)")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")

        let root = try jsonObject(try Data(contentsOf: URL(fileURLWithPath: resultPath)))
        #expect(root["format"] as? String == "ota-agent-result/1")
        #expect(root["outcome"] as? String == "updated" && (root["exit_code"] as? NSNumber)?.intValue == 0)
        #expect((root["image"] as? [String: Any])?["sha256"] as? String == image.sha256)
        #expect((root["devices_updated"] as? NSNumber)?.intValue == 1)
        let sessions = try #require(root["sessions"] as? [[String: Any]])
        #expect(sessions.count == 2, "\(root)")

        let refused = sessions[0]
        #expect(refused["outcome"] as? String == "refused" && refused["verdict"] as? String == "rejected", "\(refused)")
        let subject = (refused["certificate"] as? [String: Any])?["subject"] as? String
        #expect(subject?.hasPrefix("CN=esp32-device-rogue") == true, "\(refused)")
        #expect((refused["bytes_sent"] as? NSNumber)?.intValue == 0 && refused["sha256_sent"] is NSNull, "\(refused)")
        #expect(refused["proved_possession"] as? Bool == false && refused["phase"] as? String == "attestation")
        #expect((refused["reason"] as? String)?.contains("401") == true, "\(refused)")

        let updated = sessions[1]
        let certificate = try #require(updated["certificate"] as? [String: Any])
        #expect(certificate["subject"] as? String == "CN=esp32-device-0001, O=ota-agent demo fleet")
        #expect(certificate["sha256"] as? String == (try await sha256Digest(of: Fixtures.certificate("device.der"))))
        #expect(updated["outcome"] as? String == "updated" && updated["phase"] as? String == "done", "\(updated)")
        #expect(updated["verdict"] as? String == "verified" && updated["proved_possession"] as? Bool == false)
        #expect((updated["bytes_sent"] as? NSNumber)?.intValue == image.size, "\(updated)")
        #expect(updated["sha256_sent"] as? String == image.sha256, "\(updated)")
        #expect(updated["duration_ms"] is NSNumber && updated["device"] as? String != nil, "\(updated)")
        #expect(agent.log("result-file").first?["path"] == resultPath, "\(agent.transcript)")
        // Written by rename: no temporary file left beside it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.url.path) == ["result.json"])
    }

    @Test func resultFileIsWrittenWhenASignalStopsAServeRun() async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let resultPath = scratch.file("result.json").path
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        environment["OTA_MODE"] = "serve"
        environment["OTA_RESULT_FILE"] = resultPath
        let agent = try await Agent.start(environment: environment)
        defer { agent.child.kill() }

        agent.child.send(SIGTERM)
        #expect(await agent.child.waitForExit(within: .seconds(10)) == .exited(0), "\(agent.transcript)")

        let root = try jsonObject(try Data(contentsOf: URL(fileURLWithPath: resultPath)))
        #expect(root["outcome"] as? String == "stopped" && (root["exit_code"] as? NSNumber)?.intValue == 0, "\(root)")
        #expect((root["sessions"] as? [Any])?.isEmpty == true && (root["devices_updated"] as? NSNumber)?.intValue == 0)
    }

    @Test func resultFileRecordsTheTimeoutsExitCode() async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let resultPath = scratch.file("result.json").path
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        environment["OTA_TIMEOUT"] = "0.5"
        environment["OTA_RESULT_FILE"] = resultPath
        let agent = try await Agent.start(environment: environment)
        defer { agent.child.kill() }

        #expect(await agent.child.waitForExit(within: .seconds(10)) == .exited(3), "\(agent.transcript)")
        let root = try jsonObject(try Data(contentsOf: URL(fileURLWithPath: resultPath)))
        #expect(root["outcome"] as? String == "timed-out" && (root["exit_code"] as? NSNumber)?.intValue == 3, "\(root)")
    }

    @Test func anUnwritableResultFileIsAConfigurationErrorAtStart() async throws {
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        environment["OTA_RESULT_FILE"] = "/nonexistent-folder/result.json"
        let child = try Agent.launch(environment: environment)
        defer { child.kill() }

        #expect(await child.waitForExit(within: .seconds(10)) == .exited(2), "\(child.transcript)")
        #expect(child.stderr.text.contains("configuration error: OTA_RESULT_FILE: "), "\(child.transcript)")
        #expect(!child.stderr.text.contains("listening"), "\(child.transcript)")
    }

    /// The refusal is a failed start, which writes a result file: never over the file refused.
    @Test(arguments: ["SERVER_KEY_PATH", "SERVER_CRT_PATH", "NEW_FIRMWARE_PATH"])
    func aResultFileNamingAnInputLeavesThatInputAlone(setting: String) async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        // Copies, so that a failure of this test cannot harm the fixtures.
        let copy = scratch.file("input-copy")
        try FileManager.default.copyItem(atPath: try #require(environment[setting]), toPath: copy.path)
        let original = try Data(contentsOf: copy)
        environment[setting] = copy.path
        environment["OTA_RESULT_FILE"] = copy.path
        let child = try Agent.launch(environment: environment)
        defer { child.kill() }

        #expect(await child.waitForExit(within: .seconds(10)) == .exited(2), "\(child.transcript)")
        #expect(child.stderr.text.contains("the result would overwrite it"), "\(child.transcript)")
        #expect(try Data(contentsOf: copy) == original, "\(setting) was overwritten")
    }

    @Test func aStartThatFailsLaterStillLeavesAResultFile() async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let resultPath = scratch.file("result.json").path
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        environment["OTA_RESULT_FILE"] = resultPath
        environment["NEW_FIRMWARE_PATH"] = scratch.file("missing.bin").path
        let child = try Agent.launch(environment: environment)
        defer { child.kill() }

        #expect(await child.waitForExit(within: .seconds(10)) == .exited(2), "\(child.transcript)")
        let root = try jsonObject(try Data(contentsOf: URL(fileURLWithPath: resultPath)))
        #expect(root["outcome"] as? String == "configuration-error" && (root["exit_code"] as? NSNumber)?.intValue == 2)
        #expect((root["reason"] as? String)?.contains("NEW_FIRMWARE_PATH") == true, "\(root)")
        #expect(root["image"] is NSNull, "\(root)")
    }
}
