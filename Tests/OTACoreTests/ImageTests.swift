import Foundation
import OTACore
import Testing

/// `ota_image_open` on a path: the handle (or nil), the status and the detail.
private func open(_ path: String) -> (image: OpaquePointer?, status: Int32, detail: String) {
    var status: Int32 = 12345
    var detail = DetailBuffer()
    let image = ota_image_open(path, &status, &detail.storage, detail.storage.count)
    return (image, status, detail.text)
}

private func imageDigest(_ image: OpaquePointer?) -> (status: Int32, hex: String) {
    var digest = [UInt8](repeating: 0, count: 32)
    let status = ota_image_sha256(image, &digest)
    return (status, hexString(digest))
}

private func bytesDigest(_ bytes: [UInt8]) -> String {
    var digest = [UInt8](repeating: 0, count: 32)
    _ = ota_sha256(bytes, bytes.count, &digest)
    return hexString(digest)
}

/// Kinds of path that are not a usable image.
enum UnusableImage: String, Sendable, CaseIterable {
    case missing, directory, fifo
}

@Suite("image.c: ota_image_*")
struct ImageTests {
    @Test("a path that is not a regular file is refused with config and a detail naming it",
          arguments: UnusableImage.allCases)
    func refuses(kind: UnusableImage) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path: String
        switch kind {
        case .missing: path = directory.path("no-such-image.bin")
        case .directory: path = directory.url.path
        case .fifo:
            path = directory.path("image.fifo")
            try #require(mkfifo(path, 0o600) == 0)
        }

        let result = open(path)
        ota_image_free(result.image)
        #expect(result.image == nil)
        #expect(result.status == code(OTA_ERR_CONFIG))
        #expect(result.detail.contains(path), "detail: \(result.detail)")
    }

    @Test("a regular file: size and SHA-256 right, unchanged until a byte is appended")
    func appendIsAChange() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // More than one 64 KiB hash block, and not a multiple of it.
        let bytes = (0..<200_003).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }
        let path = try directory.write("firmware.bin", bytes)

        let result = open(path)
        let image = try #require(result.image, "\(result.detail)")
        defer { ota_image_free(image) }
        #expect(result.status == code(OTA_OK))
        #expect(ota_image_size(image) == UInt64(bytes.count))
        let digest = imageDigest(image)
        #expect(digest.status == code(OTA_OK))
        #expect(digest.hex == bytesDigest(bytes))
        #expect(ota_image_check_unchanged(image) == code(OTA_OK))

        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data([0x42]))
        try handle.close()
        #expect(ota_image_check_unchanged(image) == code(OTA_ERR_CHANGED))
        #expect(ota_image_size(image) == UInt64(bytes.count), "the size is the one seen at open")
    }

    @Test("truncating the file is a change, and hashing the shrunk file reports it")
    func truncateIsAChange() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let bytes = [UInt8](repeating: 0x5a, count: 70_000)
        let path = try directory.write("firmware.bin", bytes)

        let result = open(path)
        let image = try #require(result.image, "\(result.detail)")
        defer { ota_image_free(image) }
        #expect(ota_image_check_unchanged(image) == code(OTA_OK))

        #expect(truncate(path, 1000) == 0)
        #expect(ota_image_check_unchanged(image) == code(OTA_ERR_CHANGED))
        #expect(imageDigest(image).status == code(OTA_ERR_CHANGED))
    }

    @Test("a private copy keeps the bytes opened: the file truncated or rewritten at its path is no change")
    func privateCopyKeepsTheBytes() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let bytes = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let path = try directory.write("firmware.bin", bytes)
        let result = open(path)
        let image = try #require(result.image, "\(result.detail)")
        defer { ota_image_free(image) }

        var detail = DetailBuffer()
        #expect(ota_image_make_private(image, directory.url.path, &detail.storage, detail.storage.count)
                == code(OTA_OK), "\(detail.text)")
        #expect(truncate(path, 1000) == 0)
        let writer = Glibc.open(path, O_WRONLY)
        let rewritten = [UInt8](repeating: 0xee, count: 1000)
        #expect(pwrite(writer, rewritten, rewritten.count, 0) == rewritten.count)
        close(writer)

        #expect(ota_image_check_unchanged(image) == code(OTA_OK))
        #expect(ota_image_size(image) == UInt64(bytes.count))
        #expect(imageDigest(image).hex == bytesDigest(bytes))
        #expect(ota_image_path_names_image(image, path) == 1, "the path still names the file opened there")
        // Unnamed: nothing new appears in the folder.
        #expect((try FileManager.default.contentsOfDirectory(atPath: directory.url.path)) == ["firmware.bin"])
    }

    @Test("no private copy where no file can be made: a detail, and the image still served as opened")
    func privateCopyRefused() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let bytes = [UInt8](repeating: 0x42, count: 5000)
        let path = try directory.write("firmware.bin", bytes)
        let result = open(path)
        let image = try #require(result.image, "\(result.detail)")
        defer { ota_image_free(image) }

        var detail = DetailBuffer()
        let missing = directory.path("no-such-folder")
        #expect(ota_image_make_private(image, missing, &detail.storage, detail.storage.count) == code(OTA_ERR_CONFIG))
        #expect(detail.text.contains(missing), "\(detail.text)")
        #expect(imageDigest(image).hex == bytesDigest(bytes))
        #expect(ota_image_make_private(nil, missing, nil, 0) == code(OTA_ERR_USAGE))
        #expect(ota_image_make_private(image, nil, nil, 0) == code(OTA_ERR_USAGE))
    }

    @Test("the same size with a new mtime is a change")
    func rewriteIsAChange() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("firmware.bin", [UInt8](repeating: 1, count: 4096))
        let result = open(path)
        let image = try #require(result.image, "\(result.detail)")
        defer { ota_image_free(image) }

        // An explicit mtime an hour back: no dependence on the clock's granularity.
        var times = [timespec(tv_sec: time(nil) - 3600, tv_nsec: 0), timespec(tv_sec: time(nil) - 3600, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
        #expect(ota_image_check_unchanged(image) == code(OTA_ERR_CHANGED))
    }

    @Test("renamed over, deleted or chmod-ed at its path, the open image is unchanged; the path check sees it")
    func replacedPathIsNoChange() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let bytes = [UInt8](repeating: 7, count: 5000)
        let path = try directory.write("firmware.bin", bytes)
        let result = open(path)
        let image = try #require(result.image, "\(result.detail)")
        defer { ota_image_free(image) }
        // Calls taking a path stay outside the #expect macros (see ConnTests: their temporary C
        // strings may be gone before the call reads them).
        func pathNamesImage() -> Int32 { ota_image_path_names_image(image, path) }
        #expect(pathNamesImage() == 1)

        let changedMode = chmod(path, 0o600)
        #expect(changedMode == 0)
        #expect(ota_image_check_unchanged(image) == code(OTA_OK))
        #expect(pathNamesImage() == 1)

        let newer = try directory.write("newer.bin", [UInt8](repeating: 9, count: 10))
        let renamed = rename(newer, path)
        #expect(renamed == 0)
        #expect(ota_image_check_unchanged(image) == code(OTA_OK))
        #expect(pathNamesImage() == 0)
        #expect(imageDigest(image).hex == bytesDigest(bytes), "the open image keeps its bytes")

        let unlinked = unlink(path)
        #expect(unlinked == 0)
        #expect(ota_image_check_unchanged(image) == code(OTA_OK))
        #expect(pathNamesImage() == 0)
        let withoutImage = ota_image_path_names_image(nil, path)
        #expect(withoutImage == 0)
    }

    @Test("a one-byte image and the sample certificate hash right")
    func smallFiles() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        for path in [try directory.write("one.bin", [0x00]), Fixture.path("device.der")] {
            let result = open(path)
            let image = try #require(result.image, "\(result.detail)")
            defer { ota_image_free(image) }
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            #expect(ota_image_size(image) == UInt64(bytes.count))
            #expect(imageDigest(image).hex == bytesDigest(bytes))
        }
    }

    @Test("NULL or empty path is a usage error; NULL handles and digests are refused or ignored")
    func nullArguments() throws {
        var status: Int32 = 0
        var detail = DetailBuffer()
        #expect(ota_image_open(nil, &status, &detail.storage, detail.storage.count) == nil)
        #expect(status == code(OTA_ERR_USAGE))
        #expect(!detail.text.isEmpty)
        let emptyPath = ota_image_open("", &status, nil, 0)
        #expect(emptyPath == nil)
        #expect(status == code(OTA_ERR_USAGE))
        let missing = ota_image_open("/nonexistent/ota-image", nil, nil, 0)
        #expect(missing == nil)

        #expect(ota_image_size(nil) == 0)
        #expect(ota_image_check_unchanged(nil) == code(OTA_ERR_USAGE))
        var digest = [UInt8](repeating: 0, count: 32)
        #expect(ota_image_sha256(nil, &digest) == code(OTA_ERR_USAGE))
        ota_image_free(nil)

        let opened = ota_image_open(Fixture.path("device.der"), nil, nil, 0)
        let image = try #require(opened)
        defer { ota_image_free(image) }
        #expect(ota_image_sha256(image, nil) == code(OTA_ERR_USAGE))
    }
}
