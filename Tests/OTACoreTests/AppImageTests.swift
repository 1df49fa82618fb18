import Foundation
import OTACore
import Testing

/// The core's verdict on some bytes: the status, the detail, and the info when valid.
struct AppImageVerdict {
    let status: Int32
    let detail: String
    let info: ota_app_image_info

    var isValid: Bool { status == code(OTA_OK) }
    var chipName: String? { info.chip_name.map { String(cString: $0) } }
    var project: String { string(fromCArray: info.project_name) }
    var version: String { string(fromCArray: info.version) }
    var idfVersion: String { string(fromCArray: info.idf_version) }

    static func of(_ bytes: [UInt8]) -> AppImageVerdict {
        var info = ota_app_image_info()
        var detail = [CChar](repeating: 0, count: 512)
        let status = ota_app_image_check_bytes(bytes, bytes.count, &info, &detail, detail.count)
        return AppImageVerdict(status: status, detail: String(cString: detail), info: info)
    }

    /// The same question through an opened file, as the agent asks it.
    static func of(path: String) -> AppImageVerdict {
        var info = ota_app_image_info()
        var detail = [CChar](repeating: 0, count: 512)
        let image = ota_image_open(path, nil, nil, 0)
        defer { ota_image_free(image) }
        let status = ota_image_check_app_format(image, &info, &detail, detail.count)
        return AppImageVerdict(status: status, detail: String(cString: detail), info: info)
    }
}

/// The ESP32 family as esptool 5.6 numbers it (targets/*.py, IMAGE_CHIP_ID).
let espChips: [(id: UInt16, name: String)] = [
    (0, "ESP32"), (2, "ESP32-S2"), (5, "ESP32-C3"), (9, "ESP32-S3"), (12, "ESP32-C2"), (13, "ESP32-C6"),
    (16, "ESP32-H2"), (18, "ESP32-P4"), (20, "ESP32-C61"), (23, "ESP32-C5"), (25, "ESP32-H21"),
    (28, "ESP32-H4"), (31, "ESP32-E22"), (32, "ESP32-S31"),
]

/// One defective image and the start of the detail that must describe it.
struct DefectCase: Sendable, CustomTestStringConvertible {
    let testDescription: String
    let make: @Sendable () -> [UInt8]
    let detail: String
}

/// Bytes of a default image with `change` applied.
private func mutated(_ builder: AppImageBuilder = AppImageBuilder(),
                     _ change: (inout [UInt8], AppImageBuilder.Layout) -> Void) -> [UInt8]
{
    var bytes = builder.bytes()
    change(&bytes, builder.layout)
    return bytes
}

private func built(_ change: (inout AppImageBuilder) -> Void) -> [UInt8] {
    var builder = AppImageBuilder()
    change(&builder)
    return builder.bytes()
}

/// The default image's layout, for expected offsets: header 24, segments of 8 + 1280, 8 + 512,
/// 8 + 2048 bytes, checksum at the end of the padding, then 32 bytes of SHA-256.
private let defaultLayout = AppImageBuilder().layout

let defectCases: [DefectCase] = [
    DefectCase(testDescription: "wrong magic", make: { mutated { bytes, _ in bytes[0] = 0x7F } },
               detail: "magic byte is 0x7f, not 0xe9: not an ESP-IDF app image"),
    DefectCase(testDescription: "one byte of another format", make: { [0x00] },
               detail: "magic byte is 0x00, not 0xe9"),
    DefectCase(testDescription: "empty", make: { [] },
               detail: "truncated: the image header needs 24 bytes at offset 0, the file ends at 0"),
    DefectCase(testDescription: "header cut short", make: { Array(AppImageBuilder().bytes().prefix(20)) },
               detail: "truncated: the image header needs 24 bytes at offset 0, the file ends at 20"),
    DefectCase(testDescription: "no segments", make: { mutated { bytes, _ in bytes[1] = 0 } },
               detail: "segment count is 0, not 1 to 16"),
    DefectCase(testDescription: "17 segments", make: { mutated { bytes, _ in bytes[1] = 17 } },
               detail: "segment count is 17, not 1 to 16"),
    DefectCase(testDescription: "SPI mode 4", make: { built { $0.spiMode = 4 } },
               detail: "SPI flash mode is 4, not QIO (0), QOUT (1), DIO (2) or DOUT (3)"),
    DefectCase(testDescription: "SPI size code 8", make: { built { $0.spiSize = 8 } },
               detail: "SPI flash size code is 0x8, not 0x0 to 0x7 (1 MB to 128 MB)"),
    DefectCase(testDescription: "SPI frequency code 3", make: { built { $0.spiSpeed = 3 } },
               detail: "SPI flash frequency code 0x3 is not one ESP32 knows"),
    DefectCase(testDescription: "ESP32-C6 at frequency code 0xf", make: {
        var builder = AppImageBuilder(chipID: 13)
        builder.spiSpeed = 0xF
        return builder.bytes()
    }, detail: "SPI flash frequency code 0xf is not one ESP32-C6 knows"),
    DefectCase(testDescription: "entry point 0", make: { built { $0.entryPoint = 0 } },
               detail: "entry point is 0: not an application"),
    DefectCase(testDescription: "chip id 3 (none)", make: { built { $0.chipID = 3 } },
               detail: "chip id is 3, not one of the ESP32 family's"),
    DefectCase(testDescription: "chip id 0xffff", make: { built { $0.chipID = 0xFFFF } },
               detail: "chip id is 65535, not one of the ESP32 family's"),
    DefectCase(testDescription: "hash-appended flag 2", make: { mutated { bytes, _ in bytes[23] = 2 } },
               detail: "hash-appended flag is 0x02, not 0 or 1"),
    DefectCase(testDescription: "segment length not a multiple of 4",
               make: { AppImageBuilder(segmentSizes: [1024, 510, 2048]).bytes() },
               detail: "segment 1 is 510 bytes long, not a multiple of 4"),
    DefectCase(testDescription: "truncated in a segment header",
               make: { Array(AppImageBuilder().bytes().prefix(defaultLayout.segmentHeaderOffsets[1] + 3)) },
               detail: "truncated: segment 1's header needs 8 bytes at offset "
                   + "\(defaultLayout.segmentHeaderOffsets[1]), "
                   + "the file ends at \(defaultLayout.segmentHeaderOffsets[1] + 3)"),
    DefectCase(testDescription: "truncated in segment 2's data",
               make: { Array(AppImageBuilder().bytes().prefix(defaultLayout.segmentHeaderOffsets[2] + 8 + 100)) },
               detail: "truncated: segment 2 claims 2048 bytes at offset \(defaultLayout.segmentHeaderOffsets[2] + 8), "
                   + "the file ends at \(defaultLayout.segmentHeaderOffsets[2] + 8 + 100)"),
    DefectCase(testDescription: "segment length past the end of a whole file",
               make: { mutated { bytes, layout in
                   bytes.replaceSubrange(layout.segmentHeaderOffsets[2] + 4 ..< layout.segmentHeaderOffsets[2] + 8,
                                         with: le32(0xFFFF_FFFC))
               } },
               detail: "truncated: segment 2 claims 4294967292 bytes at offset"),
    DefectCase(testDescription: "truncated before the checksum byte",
               make: { Array(AppImageBuilder().bytes().prefix(defaultLayout.checksumOffset)) },
               detail: "truncated: the padding and checksum byte needs"),
    DefectCase(testDescription: "truncated in the appended SHA-256",
               make: { Array(AppImageBuilder().bytes().dropLast(1)) },
               detail: "truncated: the appended SHA-256 needs 32 bytes at offset \(defaultLayout.checksumOffset + 1)"),
    DefectCase(testDescription: "checksum byte changed",
               make: { built { $0.hashAppended = false }.enumerated().map { index, byte in
                   index == AppImageBuilder().layout.checksumOffset ? byte ^ 0x26 : byte
               } },
               detail: "checksum byte is 0x"),
    DefectCase(testDescription: "a segment byte changed (no SHA-256)",
               make: { var builder = AppImageBuilder()
                   builder.hashAppended = false
                   return mutated(builder) { bytes, layout in bytes[layout.segmentHeaderOffsets[2] + 20] ^= 0x01 }
               },
               detail: "checksum byte is 0x"),
    DefectCase(testDescription: "appended SHA-256 changed",
               make: { mutated { bytes, layout in bytes[layout.imageLength - 1] ^= 0x80 } },
               detail: "appended SHA-256 is "),
    DefectCase(testDescription: "a padding byte changed (covered by the SHA-256 only)",
               make: { mutated { bytes, layout in bytes[layout.checksumOffset - 1] ^= 0x01 } },
               detail: "appended SHA-256 is "),
    DefectCase(testDescription: "no application description (a bootloader's first segment)",
               make: { built { $0.includeDescription = false } },
               detail: "no application description: segment 0 starts with 0x"),
    DefectCase(testDescription: "first segment outside the chip's flash-mapped data", make: {
        var builder = AppImageBuilder(chipID: 13)
        builder.segments[0].address = 0x3F40_0020
        return builder.bytes()
    }, detail: "no application description: segment 0 loads at 0x3f400020, outside ESP32-C6's flash-mapped data "
        + "(0x42000000 to 0x43000000), where ESP-IDF puts it"),
    DefectCase(testDescription: "first segment shorter than a description",
               make: { var builder = AppImageBuilder(segmentSizes: [100, 512])
                   builder.includeDescription = false
                   return builder.bytes()
               },
               detail: "no application description: segment 0 is 100 bytes, esp_app_desc_t needs 256"),
]

@Suite("app_image.c: ota_app_image_*")
struct AppImageTests {
    @Test("a valid image: every header and description field read back")
    func validImage() {
        var builder = AppImageBuilder(chipID: 9)
        builder.spiMode = 3
        builder.spiSize = 4
        builder.spiSpeed = 0xF
        builder.minRevision = 1
        builder.maxRevision = 199
        builder.secureVersion = 7
        let bytes = builder.bytes()
        let verdict = AppImageVerdict.of(bytes)

        #expect(verdict.isValid, "\(verdict.detail)")
        let info = verdict.info
        #expect(info.chip_id == 9)
        #expect(verdict.chipName == "ESP32-S3")
        #expect(info.segment_count == 3)
        #expect(info.spi_mode == 3 && info.spi_size == 4 && info.spi_speed == 0xF)
        #expect(info.entry_point == 0x4008_0400)
        #expect(info.min_chip_revision == 1 && info.max_chip_revision == 199)
        #expect(info.hash_appended == 1)
        #expect(info.checksum == bytes[builder.layout.checksumOffset])
        #expect(hexString(withUnsafeBytes(of: info.appended_sha256) { Array($0) })
            == hexString(bytes.suffix(32)))
        #expect(info.image_length == UInt64(bytes.count))
        #expect(info.trailing_bytes == 0)
        #expect(info.secure_version == 7)
        #expect(verdict.project == "ota-agent-test")
        #expect(verdict.version == "2.1.0")
        #expect(verdict.idfVersion == "v5.3.1")
        #expect(string(fromCArray: info.compile_date) == "Jun  1 2026")
        #expect(string(fromCArray: info.compile_time) == "12:00:00")
        #expect(verdict.detail.isEmpty)
    }

    @Test("every ESP32 family chip id is accepted and named", arguments: espChips.map(\.id))
    func everyChip(id: UInt16) {
        let verdict = AppImageVerdict.of(AppImageBuilder(chipID: id).bytes())
        #expect(verdict.isValid, "\(verdict.detail)")
        #expect(verdict.chipName == espChips.first { $0.id == id }?.name)
        let name = ota_app_image_chip_name(id).map { String(cString: $0) }
        #expect(name == verdict.chipName)
    }

    @Test("no appended SHA-256, 16 segments, bytes after the image: all valid")
    func validVariants() {
        var unhashed = AppImageBuilder()
        unhashed.hashAppended = false
        let plain = AppImageVerdict.of(unhashed.bytes())
        #expect(plain.isValid, "\(plain.detail)")
        #expect(plain.info.hash_appended == 0)
        #expect(plain.info.image_length == UInt64(unhashed.layout.checksumOffset + 1))

        let sixteen = AppImageVerdict.of(AppImageBuilder(segmentSizes: [Int](repeating: 64, count: 16)).bytes())
        #expect(sixteen.isValid, "\(sixteen.detail)")
        #expect(sixteen.info.segment_count == 16)

        var signed = AppImageBuilder()
        signed.trailer = [UInt8](repeating: 0xA5, count: 4096)
        let trailing = AppImageVerdict.of(signed.bytes())
        #expect(trailing.isValid, "\(trailing.detail)")
        #expect(trailing.info.trailing_bytes == 4096)
        #expect(trailing.info.image_length == UInt64(signed.layout.imageLength))
    }

    @Test("description text is cut at its NUL or field end, and non-printable bytes show as '?'")
    func descriptionText() {
        var builder = AppImageBuilder()
        builder.project = "tab\there\u{7F}"
        builder.version = String(repeating: "v", count: 32)
        let verdict = AppImageVerdict.of(builder.bytes())
        #expect(verdict.isValid, "\(verdict.detail)")
        #expect(verdict.project == "tab?here?")
        #expect(verdict.version == String(repeating: "v", count: 32))
    }

    @Test("a defective image is refused as config with a detail saying what is wrong", arguments: defectCases)
    func defect(_ defect: DefectCase) {
        let verdict = AppImageVerdict.of(defect.make())
        #expect(verdict.status == code(OTA_ERR_CONFIG))
        #expect(verdict.detail.hasPrefix(defect.detail), "detail: \(verdict.detail)")
        #expect(verdict.info.chip_name == nil && verdict.info.image_length == 0, "info is zeroed on failure")
    }

    @Test("the checksum message names both values")
    func checksumMessage() {
        var builder = AppImageBuilder()
        builder.hashAppended = false
        var bytes = builder.bytes()
        let offset = builder.layout.checksumOffset
        let right = bytes[offset]
        bytes[offset] = right ^ 0xFF
        let verdict = AppImageVerdict.of(bytes)
        #expect(verdict.detail == String(format: "checksum byte is 0x%02x, segments give 0x%02x",
                                         Int(right ^ 0xFF), Int(right)))
    }

    @Test("the SHA-256 message names the stored and the computed digest")
    func sha256Message() {
        let builder = AppImageBuilder()
        var bytes = builder.bytes()
        let stored = Array(bytes.suffix(32))
        bytes[bytes.count - 32] ^= 0xFF
        let verdict = AppImageVerdict.of(bytes)
        #expect(verdict.detail == "appended SHA-256 is \(hexString(bytes.suffix(32))), "
            + "the image's bytes give \(hexString(stored))")
    }

    @Test("the committed sample is a valid ESP32 image of ota-agent-sample, read alike from file and bytes")
    func sample() throws {
        let path = Fixture.root.appendingPathComponent("firmware-sample/sample-firmware.bin").path
        let fromFile = AppImageVerdict.of(path: path)
        #expect(fromFile.isValid, "\(fromFile.detail)")
        #expect(fromFile.chipName == "ESP32")
        #expect(fromFile.project == "ota-agent-sample")
        #expect(fromFile.version == "1.0.0")
        #expect(fromFile.info.hash_appended == 1)
        #expect(fromFile.info.trailing_bytes == 0)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(fromFile.info.image_length == UInt64(bytes.count))
        let fromBytes = AppImageVerdict.of(bytes)
        #expect(fromBytes.isValid && fromBytes.project == fromFile.project)
        #expect(fromBytes.info.checksum == fromFile.info.checksum)
    }

    @Test("a file that shrinks under the check reports the read failure, not a format defect")
    func fileShrinks() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("image.bin", AppImageBuilder().bytes())
        let image = try #require(ota_image_open(path, nil, nil, 0))
        defer { ota_image_free(image) }
        #expect(truncate(path, 100) == 0)
        var detail = [CChar](repeating: 0, count: 256)
        let status = ota_image_check_app_format(image, nil, &detail, detail.count)
        #expect(status == code(OTA_ERR_CHANGED))
        #expect(String(cString: detail).hasPrefix("cannot read the image at offset"), "\(String(cString: detail))")
    }

    @Test("NULL read function, NULL bytes and NULL image are usage errors; NULL info and detail are fine")
    func nullArguments() {
        var info = ota_app_image_info()
        #expect(ota_app_image_check(nil, nil, 10, &info, nil, 0) == code(OTA_ERR_USAGE))
        #expect(ota_app_image_check_bytes(nil, 10, &info, nil, 0) == code(OTA_ERR_USAGE))
        #expect(ota_image_check_app_format(nil, &info, nil, 0) == code(OTA_ERR_USAGE))
        let bytes = AppImageBuilder().bytes()
        #expect(ota_app_image_check_bytes(bytes, bytes.count, nil, nil, 0) == code(OTA_OK))
        #expect(ota_app_image_check_bytes(nil, 0, nil, nil, 0) == code(OTA_ERR_CONFIG))
        #expect(ota_app_image_chip_name(1) == nil)
    }
}
