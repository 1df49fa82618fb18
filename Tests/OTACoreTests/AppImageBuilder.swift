import Foundation
import OTACore

/// Writes ESP-IDF application images for the tests, independently of the C parser (and of
/// firmware-sample/make-image.py): a header, segments, padding, checksum, optional SHA-256,
/// and an application description at the start of the first segment.
struct AppImageBuilder {
    struct Segment {
        var address: UInt32
        var data: [UInt8]
    }

    var chipID: UInt16 = 0
    var spiMode: UInt8 = 2
    var spiSize: UInt8 = 2
    var spiSpeed: UInt8 = 0
    var entryPoint: UInt32 = 0x4008_0400
    var minRevision: UInt16 = 0
    var maxRevision: UInt16 = 399
    var hashAppended = true
    var project = "ota-agent-test"
    var version = "2.1.0"
    var idfVersion = "v5.3.1"
    var secureVersion: UInt32 = 0
    /// Segment data; the first segment gets the application description in front of its data.
    var segments: [Segment]
    /// Bytes written after the image (a signature block, for one).
    var trailer: [UInt8] = []
    /// Whether the first segment starts with esp_app_desc_t (a bootloader image's does not).
    var includeDescription = true

    /// The DROM address of each chip's first segment, as esptool 5.6's memory maps place it.
    static func firstSegmentAddress(chipID: UInt16) -> UInt32 {
        switch chipID {
        case 0: 0x3F40_0020
        case 2: 0x3F00_0020
        case 5, 9, 12, 31: 0x3C00_0020
        case 18, 32: 0x4000_0020
        default: 0x4200_0020
        }
    }

    init(chipID: UInt16 = 0, segmentSizes: [Int] = [1024, 512, 2048]) {
        self.chipID = chipID
        let addresses: [UInt32] = [Self.firstSegmentAddress(chipID: chipID), 0x3FFB_0000, 0x4008_0000]
        segments = segmentSizes.enumerated().map { index, size in
            Segment(address: addresses[index % addresses.count], data: Self.pseudoRandom(count: size, seed: index))
        }
    }

    static func pseudoRandom(count: Int, seed: Int) -> [UInt8] {
        var state = UInt32(truncatingIfNeeded: 0x9E37_79B9 &* (seed + 1))
        return (0..<count).map { _ in
            state = state &* 1_664_525 &+ 1_013_904_223
            return UInt8(truncatingIfNeeded: state >> 24)
        }
    }

    /// esp_app_desc_t, 256 bytes.
    var applicationDescription: [UInt8] {
        var desc = le32(0xABCD_5432) + le32(secureVersion) + [UInt8](repeating: 0, count: 8)
        desc += field(version, 32) + field(project, 32) + field("12:00:00", 16) + field("Jun  1 2026", 16)
        desc += field(idfVersion, 32)
        desc += [UInt8](repeating: 0x11, count: 32) + [UInt8](repeating: 0, count: 4 + 4 + 72)
        return desc
    }

    /// The image's segments as written: the description prepended to the first one's data.
    var writtenSegments: [Segment] {
        var written = segments
        if includeDescription, !written.isEmpty { written[0].data = applicationDescription + written[0].data }
        return written
    }

    /// Offsets of interest in `bytes()`, for corrupting tests.
    struct Layout {
        var checksumOffset: Int
        var segmentHeaderOffsets: [Int]
        var imageLength: Int
    }

    func bytes() -> [UInt8] { build().bytes }
    var layout: Layout { build().layout }

    private func build() -> (bytes: [UInt8], layout: Layout) {
        let written = writtenSegments
        var image: [UInt8] = [0xE9, UInt8(written.count), spiMode, spiSize << 4 | spiSpeed] + le32(entryPoint)
        image += [0xEE, 0, 0, 0] + le16(chipID) + [0] + le16(minRevision) + le16(maxRevision)
        image += [0, 0, 0, 0, hashAppended ? 1 : 0]
        var checksum: UInt8 = 0xEF
        var headers: [Int] = []
        for segment in written {
            headers.append(image.count)
            image += le32(segment.address) + le32(UInt32(segment.data.count)) + segment.data
            for byte in segment.data { checksum ^= byte }
        }
        image += [UInt8](repeating: 0, count: 15 - image.count % 16)
        let checksumOffset = image.count
        image.append(checksum)
        if hashAppended { image += sha256(image) }
        let length = image.count
        return (image + trailer, Layout(checksumOffset: checksumOffset, segmentHeaderOffsets: headers,
                                        imageLength: length))
    }

    private func field(_ text: String, _ length: Int) -> [UInt8] {
        let bytes = Array(text.utf8.prefix(length))
        return bytes + [UInt8](repeating: 0, count: length - bytes.count)
    }
}

func le16(_ value: UInt16) -> [UInt8] { [UInt8(value & 0xFF), UInt8(value >> 8)] }

func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

/// SHA-256 through the core (the tests do not link a crypto library of their own).
func sha256(_ bytes: [UInt8]) -> [UInt8] {
    var digest = [UInt8](repeating: 0, count: 32)
    _ = ota_sha256(bytes, bytes.count, &digest)
    return digest
}
