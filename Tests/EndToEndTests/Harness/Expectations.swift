import Foundation
import Testing

/// The image a test serves: its path, size and SHA-256 (by sha256sum, independent of the code
/// under test).
struct ServedImage: Sendable {
    let url: URL
    let size: Int
    let sha256: String

    static func of(_ url: URL) async throws -> ServedImage {
        let attributes = try FileManager.default.attributesOfItem(atPath: url.path)
        let size = (attributes[.size] as? NSNumber)?.intValue ?? -1
        return ServedImage(url: url, size: size, sha256: try await sha256Digest(of: url))
    }

    static func sample() async throws -> ServedImage {
        try await of(Fixtures.sampleImage)
    }
}

/// The device got the whole image, byte for byte, and a clean end of stream.
func expectUpdated(_ device: DeviceReport?, with image: ServedImage, _ context: @autoclosure () -> String,
                   sourceLocation: SourceLocation = #_sourceLocation)
{
    guard let device else {
        Issue.record("no device report\n\(context())", sourceLocation: sourceLocation)
        return
    }
    #expect(device.outcome == "updated", "device: \(device)\n\(context())", sourceLocation: sourceLocation)
    #expect(device.bytes == image.size, "device: \(device)\n\(context())", sourceLocation: sourceLocation)
    #expect(device.sha256 == image.sha256, "image sha256 \(image.sha256), device: \(device)\n\(context())",
            sourceLocation: sourceLocation)
    #expect(device.end == "close_notify", "device: \(device)\n\(context())", sourceLocation: sourceLocation)
}

/// The device was refused before any image byte.
func expectRefused(_ device: DeviceReport?, _ context: @autoclosure () -> String,
                   sourceLocation: SourceLocation = #_sourceLocation)
{
    guard let device else {
        Issue.record("no device report\n\(context())", sourceLocation: sourceLocation)
        return
    }
    #expect(device.outcome == "refused", "device: \(device)\n\(context())", sourceLocation: sourceLocation)
    #expect(device.bytes == 0, "device: \(device)\n\(context())", sourceLocation: sourceLocation)
}

/// Both transcripts, for failure messages.
func transcripts(_ children: ChildProcess?...) -> String {
    children.compactMap { $0?.transcript }.joined(separator: "\n")
}
