import Foundation
import OTACore
import Testing

/// One framing input and what `ota_der_frame` must say about it.
struct FrameCase: Sendable, CustomTestStringConvertible {
    enum Outcome: Sendable {
        case complete(total: Int)
        case needMore(total: Int)
        case invalid
    }

    let name: String
    let bytes: [UInt8]
    let maxTotal: Int
    let outcome: Outcome

    init(_ name: String, _ bytes: [UInt8], maxTotal: Int = Int(OTA_DER_MAX_LENGTH), _ outcome: Outcome) {
        self.name = name
        self.bytes = bytes
        self.maxTotal = maxTotal
        self.outcome = outcome
    }

    var testDescription: String { name }
}

/// A SEQUENCE header followed by `contents` filler bytes.
private func sequence(header: [UInt8], contents: Int) -> [UInt8] {
    header + [UInt8](repeating: 0xa5, count: contents)
}

private let frameCases: [FrameCase] = [
    FrameCase("empty buffer needs the 2-byte header", [], .needMore(total: 2)),
    FrameCase("lone 0x30 needs the length byte", [0x30], .needMore(total: 2)),
    FrameCase("lone non-SEQUENCE byte is invalid at once", [0x31], .invalid),
    FrameCase("first byte not 0x30 is invalid", [0x02, 0x01, 0x00], .invalid),
    FrameCase("short form, empty SEQUENCE", [0x30, 0x00], .complete(total: 2)),
    FrameCase("short form complete", [0x30, 0x03, 0x01, 0x01, 0xff], .complete(total: 5)),
    FrameCase("short form incomplete", [0x30, 0x03, 0x01, 0x01], .needMore(total: 5)),
    FrameCase("short form, largest (0x7f)", sequence(header: [0x30, 0x7f], contents: 0x7f),
              .complete(total: 0x81)),
    FrameCase("long form 81 without its length byte", [0x30, 0x81], .needMore(total: 3)),
    FrameCase("long form 81 0x80 (minimal) header only", [0x30, 0x81, 0x80], .needMore(total: 131)),
    FrameCase("long form 81 0x80 (minimal) complete", sequence(header: [0x30, 0x81, 0x80], contents: 0x80),
              .complete(total: 131)),
    FrameCase("long form 81 0xff complete", sequence(header: [0x30, 0x81, 0xff], contents: 0xff),
              .complete(total: 258)),
    FrameCase("long form 81 0x7f is not minimal", sequence(header: [0x30, 0x81, 0x7f], contents: 0x7f), .invalid),
    FrameCase("long form 81 0x00 is not minimal", [0x30, 0x81, 0x00], .invalid),
    FrameCase("long form 82 with value 0x00ff is not minimal", [0x30, 0x82, 0x00, 0xff], .invalid),
    FrameCase("long form 82 with value 0x0080 is not minimal", [0x30, 0x82, 0x00, 0x80], .invalid),
    FrameCase("long form 82 with value 0x0000 is not minimal", [0x30, 0x82, 0x00, 0x00], .invalid),
    FrameCase("long form 82 needs its header first (2 bytes)", [0x30, 0x82], .needMore(total: 4)),
    FrameCase("long form 82 needs its header first (3 bytes)", [0x30, 0x82, 0x01], .needMore(total: 4)),
    FrameCase("long form 82 0x0100, header only, needs the total", [0x30, 0x82, 0x01, 0x00],
              .needMore(total: 260)),
    FrameCase("long form 82 0x0100, one byte short", sequence(header: [0x30, 0x82, 0x01, 0x00], contents: 0xff),
              .needMore(total: 260)),
    FrameCase("long form 82 0x0100 complete", sequence(header: [0x30, 0x82, 0x01, 0x00], contents: 0x100),
              .complete(total: 260)),
    FrameCase("indefinite length 0x80 is not DER", [0x30, 0x80, 0x00, 0x00], .invalid),
    FrameCase("indefinite length with two bytes only", [0x30, 0x80], .invalid),
    FrameCase("three length bytes (83) are too large", [0x30, 0x83, 0x01, 0x00, 0x00], .invalid),
    FrameCase("83 is refused before its length bytes arrive", [0x30, 0x83], .invalid),
    FrameCase("four length bytes (84) are too large", [0x30, 0x84, 0x00, 0x00, 0x01, 0x00], .invalid),
    FrameCase("0xff length-of-length is refused", [0x30, 0xff], .invalid),
    FrameCase("exactly OTA_DER_MAX_LENGTH (16384) in all, complete",
              sequence(header: [0x30, 0x82, 0x3f, 0xfc], contents: 0x3ffc), .complete(total: 16384)),
    FrameCase("exactly OTA_DER_MAX_LENGTH in all, header only", [0x30, 0x82, 0x3f, 0xfc],
              .needMore(total: 16384)),
    FrameCase("one byte over OTA_DER_MAX_LENGTH is refused from the header", [0x30, 0x82, 0x3f, 0xfd], .invalid),
    FrameCase("largest two-byte length is refused from the header", [0x30, 0x82, 0xff, 0xff], .invalid),
    FrameCase("max_total above OTA_DER_MAX_LENGTH is capped to it", [0x30, 0x82, 0x3f, 0xfd],
              maxTotal: 1 << 20, .invalid),
    FrameCase("max_total above the cap still frames 16384", [0x30, 0x82, 0x3f, 0xfc], maxTotal: 1 << 20,
              .needMore(total: 16384)),
    FrameCase("over a lower max_total is refused from the header", [0x30, 0x82, 0x03, 0xe8], maxTotal: 1000,
              .invalid),
    FrameCase("at a lower max_total exactly is accepted", [0x30, 0x82, 0x03, 0xe4], maxTotal: 1000,
              .needMore(total: 1000)),
    FrameCase("short form at max_total 5 is complete", [0x30, 0x03, 0x01, 0x01, 0xff], maxTotal: 5,
              .complete(total: 5)),
    FrameCase("short form over max_total 4 is invalid", [0x30, 0x03, 0x01, 0x01, 0xff], maxTotal: 4, .invalid),
    FrameCase("trailing bytes: complete at the SEQUENCE's end", [0x30, 0x03, 0x01, 0x01, 0xff, 0x30, 0x00, 0xee],
              .complete(total: 5)),
    FrameCase("trailing bytes after a long-form SEQUENCE",
              sequence(header: [0x30, 0x81, 0x80], contents: 0x80) + [0x00, 0x01, 0x02], .complete(total: 131)),
]

@Suite("der.c: ota_der_frame")
struct DerFrameTests {
    @Test("frames the outer SEQUENCE header", arguments: frameCases)
    func frames(_ example: FrameCase) {
        var total = 0xdead_beef
        var reason: UnsafePointer<CChar>? = nil
        let state = example.bytes.withUnsafeBufferPointer { buffer in
            ota_der_frame(buffer.baseAddress, buffer.count, example.maxTotal, &total, &reason)
        }
        switch example.outcome {
        case .complete(let expected):
            #expect(state == OTA_DER_COMPLETE)
            #expect(total == expected)
            #expect(reason == nil)
        case .needMore(let expected):
            #expect(state == OTA_DER_NEED_MORE)
            #expect(total == expected)
            #expect(total > example.bytes.count)
            #expect(reason == nil)
        case .invalid:
            #expect(state == OTA_DER_INVALID)
            let text = reason.map { String(cString: $0) } ?? ""
            #expect(!text.isEmpty, "an invalid frame must come with a reason")
        }
    }

    @Test("the sample device certificate frames COMPLETE with total equal to the file size")
    func sampleDeviceCertificate() throws {
        for name in ["device.der", "device-2.der", "rogue-device.der"] {
            let der = try Fixture.bytes(name)
            var total = 0
            var reason: UnsafePointer<CChar>? = nil
            let state = ota_der_frame(der, der.count, Int(OTA_DER_MAX_LENGTH), &total, &reason)
            #expect(state == OTA_DER_COMPLETE, "\(name)")
            #expect(total == der.count, "\(name)")
            #expect(reason == nil, "\(name)")
        }
    }

    @Test("every proper prefix of the sample certificate needs more, never invalid")
    func samplePrefixesNeedMore() throws {
        let der = try Fixture.bytes("device.der")
        for count in 0..<der.count {
            var total = 0
            let state = der.withUnsafeBufferPointer { buffer in
                ota_der_frame(buffer.baseAddress, count, Int(OTA_DER_MAX_LENGTH), &total, nil)
            }
            #expect(state == OTA_DER_NEED_MORE, "prefix of \(count) bytes")
            #expect(total > count && total <= der.count, "prefix of \(count) bytes")
        }
    }

    @Test("NULL bytes with length 0, and NULL total and reason, are accepted")
    func nullArguments() {
        var total = 0
        #expect(ota_der_frame(nil, 0, Int(OTA_DER_MAX_LENGTH), &total, nil) == OTA_DER_NEED_MORE)
        #expect(total == 2)

        let bad: [UInt8] = [0x31, 0x00]
        #expect(ota_der_frame(bad, bad.count, Int(OTA_DER_MAX_LENGTH), nil, nil) == OTA_DER_INVALID)
        let good: [UInt8] = [0x30, 0x00]
        #expect(ota_der_frame(good, good.count, Int(OTA_DER_MAX_LENGTH), nil, nil) == OTA_DER_COMPLETE)
    }
}

/// The PEM text the core must produce for `der`, built with Foundation's base64.
private func expectedPEM(_ der: [UInt8]) -> String {
    let base64 = Data(der).base64EncodedString()
    var lines: [Substring] = []
    var start = base64.startIndex
    while start < base64.endIndex {
        let end = base64.index(start, offsetBy: 64, limitedBy: base64.endIndex) ?? base64.endIndex
        lines.append(base64[start..<end])
        start = end
    }
    let body = lines.map { $0 + "\n" }.joined()
    return "-----BEGIN CERTIFICATE-----\n" + body + "-----END CERTIFICATE-----\n"
}

/// Calls `ota_der_to_pem` with a buffer of exactly `ota_pem_length` bytes.
private func pem(_ der: [UInt8]) -> (status: Int32, text: String, length: Int, capacity: Int) {
    let capacity = ota_pem_length(der.count)
    var buffer = [CChar](repeating: 0x7f, count: capacity)
    var length = -1
    let status = der.withUnsafeBufferPointer { input in
        ota_der_to_pem(input.baseAddress, der.count, &buffer, capacity, &length)
    }
    let text = status == code(OTA_OK) ? buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } : ""
    return (status, text, length, capacity)
}

@Suite("der.c: ota_der_to_pem and ota_pem_length")
struct PemTests {
    @Test("the PEM of device.der equals device.crt, byte for byte")
    func samplePEMEqualsOpenSSLFile() throws {
        let der = try Fixture.bytes("device.der")
        let file = try Fixture.text("device.crt")
        // The assumption under this test: openssl wrote device.crt as the PEM of device.der.
        #expect(try Fixture.derFromPEM("device.crt") == der)
        #expect(file == expectedPEM(der))

        let result = pem(der)
        #expect(result.status == code(OTA_OK))
        #expect(result.text == file)
        #expect(result.length == file.utf8.count)
        #expect(result.capacity == file.utf8.count + 1)
    }

    @Test("base64 in 64-column LF lines, trailing newline, padding, exact length",
          arguments: [0, 1, 2, 3, 4, 5, 47, 48, 49, 50, 95, 96, 97, 256, 638, 1000])
    func encodes(length: Int) {
        // Every byte value appears once the input is long enough, so '+' and '/' are covered.
        let der = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 0xf3) }
        let result = pem(der)
        #expect(result.status == code(OTA_OK))
        #expect(result.text == expectedPEM(der))
        #expect(result.length == result.text.utf8.count)
        #expect(result.capacity == result.length + 1, "ota_pem_length counts the NUL exactly")

        let lines = result.text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.first == "-----BEGIN CERTIFICATE-----")
        #expect(lines.dropLast().last == "-----END CERTIFICATE-----")
        #expect(lines.last == "", "the text ends with a newline")
        #expect(!result.text.contains("\r"))
        let body = lines.dropFirst().dropLast(2)
        #expect(body.dropLast().allSatisfy { $0.count == 64 })
        #expect(body.allSatisfy { $0.count > 0 && $0.count <= 64 && $0.count % 4 == 0 })
        let padding = (3 - length % 3) % 3
        #expect(body.joined().filter { $0 == "=" }.count == padding)
        #expect(body.last.map { $0.hasSuffix(String(repeating: "=", count: padding)) } ?? (length == 0))
        if length == 0 {
            #expect(body.isEmpty)
        }
    }

    @Test("ota_pem_length matches the formula for the armour, lines and NUL",
          arguments: [0, 1, 2, 3, 47, 48, 49, 16384])
    func pemLength(length: Int) {
        let encoded = (length + 2) / 3 * 4
        let lines = (encoded + 63) / 64
        let armour = "-----BEGIN CERTIFICATE-----\n".utf8.count + "-----END CERTIFICATE-----\n".utf8.count
        #expect(ota_pem_length(length) == armour + encoded + lines + 1)
    }

    /// `(der_length + 2) / 3 * 4` would wrap near SIZE_MAX and let a tiny buffer pass the check.
    @Test("ota_pem_length refuses lengths near SIZE_MAX instead of wrapping around",
          arguments: [UInt.max, UInt.max - 1, UInt.max / 4 * 3 + 1])
    func pemLengthDoesNotWrap(length: UInt) {
        #expect(ota_pem_length(Int(bitPattern: length)) == 0, "inputs this large are refused")
    }

    @Test("a capacity one byte short is a usage error, and nothing is written past it")
    func capacityTooSmall() throws {
        let der = try Fixture.bytes("device.der")
        let capacity = ota_pem_length(der.count)
        var buffer = [CChar](repeating: 0x7f, count: capacity)
        var length = 12345
        #expect(ota_der_to_pem(der, der.count, &buffer, capacity - 1, &length) == code(OTA_ERR_USAGE))
        #expect(buffer.last == 0x7f)
        #expect(ota_der_to_pem(der, der.count, &buffer, 0, &length) == code(OTA_ERR_USAGE))
    }

    @Test("NULL pem, or NULL der with bytes, is a usage error; NULL der with 0 bytes and NULL length work")
    func nullArguments() {
        var length = 0
        let der: [UInt8] = [1, 2, 3]
        #expect(ota_der_to_pem(der, der.count, nil, 1000, &length) == code(OTA_ERR_USAGE))
        var buffer = [CChar](repeating: 0, count: 1000)
        #expect(ota_der_to_pem(nil, 3, &buffer, buffer.count, &length) == code(OTA_ERR_USAGE))
        #expect(ota_der_to_pem(nil, 0, &buffer, buffer.count, &length) == code(OTA_OK))
        #expect(length == ota_pem_length(0) - 1)
        #expect(ota_der_to_pem(der, der.count, &buffer, buffer.count, nil) == code(OTA_OK))
        #expect(text(ofCString: buffer) == expectedPEM(der))
    }
}
