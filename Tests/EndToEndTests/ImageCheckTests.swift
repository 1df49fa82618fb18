import Foundation
import Testing

/// At start the agent knows what it is about to serve: an ESP-IDF app image, checked (or any
/// file, with --allow-any-image), and, when the orchestrator says so, exactly the file it meant.
@Suite("Image checks at start")
struct ImageCheckTests {
    /// A defective copy of the sample image and what the refusal must say about it.
    struct Defect: Sendable, CustomTestStringConvertible {
        let testDescription: String
        let change: @Sendable (inout [UInt8]) -> Void
        let detail: String
    }

    /// The sample's layout (firmware-sample/make-image.py): 327,760 bytes, segment 3 (padding,
    /// 65,504 bytes) at data offset 65,592, the checksum byte 0xfd at 327,727, then the SHA-256.
    static let defects: [Defect] = [
        Defect(testDescription: "truncated", change: { $0.removeLast($0.count - 100_000) },
               detail: "truncated: segment 3 claims 65504 bytes at offset 65592, the file ends at 100000"),
        Defect(testDescription: "checksum byte changed", change: { $0[327_727] = 0x02 },
               detail: "checksum byte is 0x02, segments give 0xfd"),
        Defect(testDescription: "appended SHA-256 changed", change: { $0[$0.count - 1] ^= 0x01 },
               detail: "appended SHA-256 is "),
        Defect(testDescription: "wrong magic", change: { $0[0] = 0x7F },
               detail: "magic byte is 0x7f, not 0xe9"),
        Defect(testDescription: "cut in the SHA-256", change: { $0.removeLast(5) },
               detail: "truncated: the appended SHA-256 needs 32 bytes at offset 327728, the file ends at 327755"),
    ]

    private func sampleBytes() throws -> [UInt8] {
        [UInt8](try Data(contentsOf: Fixtures.sampleImage))
    }

    /// Starts an agent that should refuse to start; returns its stderr after exit 2.
    private func refusal(_ environment: [String: String], arguments: [String] = []) async throws -> String {
        let child = try Agent.launch(environment: environment, arguments: arguments)
        defer { child.kill() }
        #expect(await child.waitForExit(within: .seconds(10)) == .exited(2), "\(child.transcript)")
        #expect(!child.stderr.text.contains(" listening "), "served despite the error\n\(child.transcript)")
        return child.stderr.text
    }

    /// Starts an agent that should serve; returns its `starting` line, then stops it.
    private func starting(_ environment: [String: String], arguments: [String] = []) async throws -> LogLine? {
        let agent = try await Agent.start(environment: environment, arguments: arguments)
        defer { agent.child.kill() }
        let line = agent.log("starting").first
        agent.child.send(SIGTERM)
        #expect(await agent.child.waitForExit(within: .seconds(10)) == .exited(143), "\(agent.transcript)")
        return line
    }

    @Test func theSampleIsCheckedAndItsDescriptionLogged() async throws {
        let line = try await starting(Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL))
        #expect(line?["image_format"] == "esp-idf-app")
        #expect(line?["chip"] == "ESP32")
        #expect(line?["project"] == "ota-agent-sample")
        #expect(line?["app_version"] == "1.0.0")
        #expect(line?["idf_version"] == "none (make-image.sh)")
        #expect(line?["sha256"] == (try await sha256Digest(of: Fixtures.sampleImage)))
        #expect(line?.integer("bytes") == (try sampleBytes().count))
    }

    @Test(arguments: defects)
    func aDefectiveImageIsRefusedSayingWhatIsWrong(_ defect: Defect) async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        var bytes = try sampleBytes()
        defect.change(&bytes)
        let image = try scratch.write("defective.bin", bytes)
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        environment["NEW_FIRMWARE_PATH"] = image.path

        let message = try await refusal(environment)
        #expect(message.contains("ota-agent: configuration error: NEW_FIRMWARE_PATH: \(image.path) "
            + "is not a valid ESP-IDF app image: \(defect.detail)"), "\(message)")
        #expect(message.contains("--allow-any-image"),
                "the refusal does not say how to serve other formats: \(message)")

        // The same file served on purpose: a flag or the variable turns the check off.
        let viaFlag = try await starting(environment, arguments: ["--allow-any-image"])
        #expect(viaFlag?["image_format"] == "unchecked")
        #expect(viaFlag?["chip"] == nil)
        #expect(viaFlag?["sha256"] == (try await sha256Digest(of: image)))
        environment["OTA_ALLOW_ANY_IMAGE"] = "1"
        #expect(try await starting(environment)?["image_format"] == "unchecked")
    }

    @Test func randomBytesAreRefusedUnlessAllowedAndOTA_ALLOW_ANY_IMAGE0KeepsTheCheck() async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        var bytes = [UInt8](try Data(contentsOf: scratch.writeRandom("random.bin", count: 4096)))
        bytes[0] = 0x42
        let image = try scratch.write("image.bin", bytes)
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)
        environment["NEW_FIRMWARE_PATH"] = image.path
        environment["OTA_ALLOW_ANY_IMAGE"] = "0"
        let message = try await refusal(environment)
        #expect(message.contains("magic byte is 0x42"), "\(message)")

        environment["OTA_ALLOW_ANY_IMAGE"] = "maybe"
        #expect(try await refusal(environment).contains("OTA_ALLOW_ANY_IMAGE: 'maybe' is not 1 or 0"))
    }

    @Test func anExpectedSHA256MustMatchTheFile() async throws {
        let digest = try await sha256Digest(of: Fixtures.sampleImage)
        var environment = Agent.environment(diceAuthURL: Agent.unusedDiceAuthURL)

        environment["NEW_FIRMWARE_SHA256"] = digest.uppercased()
        #expect(try await starting(environment)?["sha256"] == digest)

        let other = String(repeating: "0", count: 64)
        environment["NEW_FIRMWARE_SHA256"] = other
        let message = try await refusal(environment)
        #expect(message.contains("configuration error: NEW_FIRMWARE_SHA256: \(Fixtures.sampleImage.path) has "
            + "SHA-256 \(digest), expected \(other)"), "\(message)")

        // The flag wins over the variable, and a malformed digest is a configuration error.
        #expect(try await starting(environment, arguments: ["--expected-sha256", digest])?["sha256"] == digest)
        let malformed = try await refusal(environment, arguments: ["--expected-sha256", "sha256:\(digest)"])
        #expect(malformed.contains("--expected-sha256: 'sha256:\(digest)' is not a SHA-256 digest (64 hex digits)"),
                "\(malformed)")
    }
}
