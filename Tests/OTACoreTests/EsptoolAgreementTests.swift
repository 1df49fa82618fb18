import Foundation
import OTACore
import Testing

/// Espressif's esptool (PyPI, the version pinned in scripts/esptool-requirements.txt), which
/// scripts/test installs into .build-tools/esptool and names in OTA_ESPTOOL.
///
/// The agreement test needs it, and a green run must mean it ran: so scripts/test also sets
/// OTA_REQUIRE_ESPTOOL=1, and then a missing esptool fails the test. A developer's plain
/// `swift test` without it skips the test with a note saying how to get it (the rest of the
/// suite does not need Python).
enum Esptool {
    static let installedByScripts = Fixture.root.appendingPathComponent(".build-tools/esptool/bin/esptool").path

    static var path: String? {
        if let named = ProcessInfo.processInfo.environment["OTA_ESPTOOL"], !named.isEmpty { return named }
        return FileManager.default.isExecutableFile(atPath: installedByScripts) ? installedByScripts : nil
    }

    static var required: Bool { ProcessInfo.processInfo.environment["OTA_REQUIRE_ESPTOOL"] == "1" }

    static let howToGet = "esptool not found: run scripts/install-esptool (it installs the pinned esptool "
        + "from PyPI into .build-tools/esptool), or set OTA_ESPTOOL to an esptool 5.x"

    /// What `esptool image-info FILE` said: its exit status and everything it printed.
    struct Report {
        let status: Int32
        let output: String

        /// esptool 5 exits 0 even for a bad checksum or SHA-256, printing "invalid": accepted
        /// means exit 0, a valid checksum, a valid hash when one is appended, and no "invalid".
        var accepts: Bool {
            status == 0 && !output.lowercased().contains("invalid")
                && output.range(of: "Checksum: 0x[0-9a-f]{2} \\(valid\\)", options: .regularExpression) != nil
        }

        /// The value after "`label`: " on its line.
        func value(_ label: String) -> String? {
            output.split(separator: "\n").first { $0.hasPrefix("\(label): ") }
                .map { String($0.dropFirst(label.count + 2)) }
        }
    }

    static func imageInfo(_ file: String, esptool: String) throws -> Report {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: esptool)
        process.arguments = ["image-info", file]
        process.environment = ["PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "COLUMNS": "200", "NO_COLOR": "1"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Report(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }
}

/// One image for both judges, and whether it is meant to be valid (nil: either way, as long as
/// esptool accepts whatever the agent accepts).
struct AgreementCase: Sendable, CustomTestStringConvertible {
    let testDescription: String
    let valid: Bool?
    let make: @Sendable () throws -> [UInt8]
}

private func variant(_ chipID: UInt16 = 0, _ change: @escaping @Sendable (inout AppImageBuilder) -> Void = { _ in })
    -> @Sendable () -> [UInt8]
{
    {
        var builder = AppImageBuilder(chipID: chipID)
        change(&builder)
        return builder.bytes()
    }
}

private func corrupted(_ hashAppended: Bool = true,
                       _ change: @escaping @Sendable (inout [UInt8], AppImageBuilder.Layout) -> Void)
    -> @Sendable () -> [UInt8]
{
    {
        var builder = AppImageBuilder()
        builder.hashAppended = hashAppended
        var bytes = builder.bytes()
        change(&bytes, builder.layout)
        return bytes
    }
}

let agreementCases: [AgreementCase] = [
    AgreementCase(testDescription: "the committed sample", valid: true) {
        [UInt8](try Data(contentsOf: Fixture.root.appendingPathComponent("firmware-sample/sample-firmware.bin")))
    },
] + espChips.map { chip in
    AgreementCase(testDescription: "\(chip.name) with SHA-256", valid: true, make: variant(chip.id))
} + espChips.map { chip in
    AgreementCase(testDescription: "\(chip.name) without SHA-256", valid: true,
                  make: variant(chip.id) { $0.hashAppended = false })
} + [
    AgreementCase(testDescription: "16 segments, QIO, 16 MB, 80 MHz", valid: true, make: {
        var builder = AppImageBuilder(segmentSizes: [Int](repeating: 256, count: 16))
        builder.spiMode = 0
        builder.spiSize = 4
        builder.spiSpeed = 0xF
        return builder.bytes()
    }),
    AgreementCase(testDescription: "a signature block after the image", valid: true,
                  make: variant { $0.trailer = [UInt8](repeating: 0x5A, count: 4096) }),
    AgreementCase(testDescription: "bad checksum, no SHA-256", valid: false,
                  make: corrupted(false) { bytes, layout in bytes[layout.checksumOffset] ^= 0x10 }),
    AgreementCase(testDescription: "bad checksum under a matching SHA-256", valid: false, make: {
        var builder = AppImageBuilder()
        builder.hashAppended = false
        var bytes = builder.bytes()
        bytes[builder.layout.checksumOffset] ^= 0x10
        bytes[23] = 1
        return bytes + sha256(bytes)
    }),
    AgreementCase(testDescription: "a segment byte changed, no SHA-256", valid: false,
                  make: corrupted(false) { bytes, layout in bytes[layout.segmentHeaderOffsets[1] + 30] ^= 0x04 }),
    AgreementCase(testDescription: "bad SHA-256", valid: false,
                  make: corrupted { bytes, layout in bytes[layout.imageLength - 7] ^= 0x01 }),
    AgreementCase(testDescription: "a padding byte changed under the SHA-256", valid: false,
                  make: corrupted { bytes, layout in bytes[layout.checksumOffset - 2] = 0xFF }),
    AgreementCase(testDescription: "wrong magic", valid: false, make: corrupted { bytes, _ in bytes[0] = 0xE8 }),
    AgreementCase(testDescription: "truncated in segment data", valid: false,
                  make: corrupted { bytes, layout in
                      bytes.removeLast(bytes.count - layout.segmentHeaderOffsets[2] - 40)
                  }),
    AgreementCase(testDescription: "truncated before the checksum", valid: false,
                  make: corrupted(false) { bytes, layout in bytes.removeLast(bytes.count - layout.checksumOffset) }),
    AgreementCase(testDescription: "truncated in the SHA-256", valid: false,
                  make: corrupted { bytes, _ in bytes.removeLast(10) }),
    AgreementCase(testDescription: "17 segments", valid: false,
                  make: variant {
                      let filler = AppImageBuilder.Segment(address: 0x3FFB_0000, data: [0, 0, 0, 0])
                      $0.segments += [AppImageBuilder.Segment](repeating: filler, count: 14)
                  }),
]

/// Every header byte and segment header byte of an image without SHA-256 (which would refuse
/// them all) flipped a few ways: wherever the agent still accepts, esptool must too.
let mutationCases: [AgreementCase] = {
    let builder = AppImageBuilder(chipID: 5)
    let headers = builder.layout.segmentHeaderOffsets.flatMap { $0 ..< $0 + 8 }
    return (Array(0 ..< 24) + headers).flatMap { offset in
        [UInt8(0x01), 0x10, 0xFF].map { mask in
            AgreementCase(testDescription: "byte \(offset) ^ 0x\(String(mask, radix: 16))", valid: nil,
                          make: corrupted(false) { bytes, _ in bytes[offset] ^= mask })
        }
    }
}()

@Suite("app_image.c against Espressif's esptool")
struct EsptoolAgreementTests {
    @Test("esptool is there, a 5.x, when the test command requires it (scripts/test sets OTA_REQUIRE_ESPTOOL=1)",
          .enabled(if: Esptool.path != nil || Esptool.required, "\(Esptool.howToGet)"))
    func esptoolPresent() throws {
        let esptool = try #require(Esptool.path, "\(Esptool.howToGet)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: esptool)
        process.arguments = ["version"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        // `esptool version` prints "esptool vX.Y.Z" and then the bare version.
        #expect(process.terminationStatus == 0 && text.split(separator: "\n").contains { $0.hasPrefix("5.") },
                "\(esptool) is not an esptool 5.x (this test reads esptool 5's image-info output): \(text)")
    }

    @Test("every image the agent accepts esptool accepts, naming the same chip and project; corrupt ones both refuse",
          .enabled(if: Esptool.path != nil || Esptool.required, "\(Esptool.howToGet)"),
          // One esptool at a time: a couple of hundred Python processes at once would starve the
          // suite's timing tests on a small machine.
          .serialized, arguments: agreementCases + mutationCases)
    func agreement(_ image: AgreementCase) throws {
        let esptool = try #require(Esptool.path, "\(Esptool.howToGet)")
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("image.bin", try image.make())

        let agent = AppImageVerdict.of(path: path)
        let report = try Esptool.imageInfo(path, esptool: esptool)
        let context = "agent: \(agent.isValid ? "valid" : agent.detail)\n"
            + "esptool (exit \(report.status)):\n\(report.output)"

        if let valid = image.valid {
            #expect(agent.isValid == valid, "\(context)")
            #expect(report.accepts == valid, "\(context)")
        }
        if agent.isValid {
            #expect(report.accepts, "the agent accepts what esptool refuses\n\(context)")
            #expect(report.value("Chip ID") == "\(agent.info.chip_id) (\(agent.chipName ?? "?"))", "\(context)")
            #expect(report.value("Project name") == agent.project, "\(context)")
            #expect(report.value("App version") == agent.version, "\(context)")
            #expect(report.value("ESP-IDF") == agent.idfVersion, "\(context)")
        }
    }
}
