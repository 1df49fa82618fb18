import Foundation
import OTACore
import Testing

/// Whether this machine runs the user-space AES-GCM sealer at all (AES-NI and PCLMULQDQ).
private let sealerRuns = ota_testing_seal_unavailable() == nil

/// Bytes from hex text; spaces are ignored.
private func bytes(_ hex: String) -> [UInt8] {
    let digits = Array(hex.filter { !$0.isWhitespace })
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
}

/// One AES-GCM encryption by the sealer or the library: the status, the ciphertext, the tag.
private func gcm(_ engine: Int32, key: [UInt8], iv: [UInt8], aad: [UInt8], plaintext: [UInt8])
    -> (status: Int32, ciphertext: [UInt8], tag: [UInt8])
{
    var output = [UInt8](repeating: 0, count: max(plaintext.count, 1))
    var tag = [UInt8](repeating: 0, count: 16)
    let status = ota_testing_aes_gcm(engine, key, key.count, iv, aad, aad.count, plaintext, plaintext.count,
                                     &output, &tag)
    return (status, Array(output.prefix(plaintext.count)), tag)
}

/// A published AES-GCM case: key, IV, AAD, plaintext, and the expected ciphertext and tag.
struct GCMVector: Sendable, CustomTestStringConvertible {
    let testDescription: String
    let key: String
    let iv: String
    let aad: String
    let plaintext: String
    let ciphertext: String
    let tag: String
}

private let specPlaintext = """
    d9313225f88406e5a55909c5aff5269a 86a7a9531534f7da2e4c303d8a318a72
    1c3c0c95956809532fcf0e2449a6b525 b16aedf5aa0de657ba637b391aafd255
    """
private let specAAD = "feedfacedeadbeeffeedfacedeadbeefabaddad2"
private let specKey128 = "feffe9928665731c6d6a8f9467308308"

/// The GCM specification's test cases with 96-bit IVs (McGrew and Viega, "The Galois/Counter
/// Mode of Operation", appendix B): 1 to 4 for AES-128, 13 to 16 for AES-256.
private let specVectors: [GCMVector] = [
    GCMVector(testDescription: "test case 1 (AES-128, nothing)", key: String(repeating: "0", count: 32),
              iv: String(repeating: "0", count: 24), aad: "", plaintext: "", ciphertext: "",
              tag: "58e2fccefa7e3061367f1d57a4e7455a"),
    GCMVector(testDescription: "test case 2 (AES-128, one zero block)", key: String(repeating: "0", count: 32),
              iv: String(repeating: "0", count: 24), aad: "", plaintext: String(repeating: "0", count: 32),
              ciphertext: "0388dace60b6a392f328c2b971b2fe78", tag: "ab6e47d42cec13bdf53a67b21257bddf"),
    GCMVector(testDescription: "test case 3 (AES-128, 64 bytes)", key: specKey128, iv: "cafebabefacedbaddecaf888",
              aad: "", plaintext: specPlaintext,
              ciphertext: """
                  42831ec2217774244b7221b784d0d49c e3aa212f2c02a4e035c17e2329aca12e
                  21d514b25466931c7d8f6a5aac84aa05 1ba30b396a0aac973d58e091473f5985
                  """,
              tag: "4d5c2af327cd64a62cf35abd2ba6fab4"),
    GCMVector(testDescription: "test case 4 (AES-128, 60 bytes and AAD)", key: specKey128,
              iv: "cafebabefacedbaddecaf888", aad: specAAD, plaintext: String(specPlaintext.dropLast(8)),
              ciphertext: """
                  42831ec2217774244b7221b784d0d49c e3aa212f2c02a4e035c17e2329aca12e
                  21d514b25466931c7d8f6a5aac84aa05 1ba30b396a0aac973d58e091
                  """,
              tag: "5bc94fbc3221a5db94fae95ae7121a47"),
    GCMVector(testDescription: "test case 13 (AES-256, nothing)", key: String(repeating: "0", count: 64),
              iv: String(repeating: "0", count: 24), aad: "", plaintext: "", ciphertext: "",
              tag: "530f8afbc74536b9a963b4f1c4cb738b"),
    GCMVector(testDescription: "test case 14 (AES-256, one zero block)", key: String(repeating: "0", count: 64),
              iv: String(repeating: "0", count: 24), aad: "", plaintext: String(repeating: "0", count: 32),
              ciphertext: "cea7403d4d606b6e074ec5d3baf39d18", tag: "d0d1c8a799996bf0265b98b5d48ab919"),
    GCMVector(testDescription: "test case 15 (AES-256, 64 bytes)", key: specKey128 + specKey128,
              iv: "cafebabefacedbaddecaf888", aad: "", plaintext: specPlaintext,
              ciphertext: """
                  522dc1f099567d07f47f37a32a84427d 643a8cdcbfe5c0c97598a2bd2555d1aa
                  8cb08e48590dbb3da7b08b1056828838 c5f61e6393ba7a0abcc9f662898015ad
                  """,
              tag: "b094dac5d93471bdec1a502270e3cc6c"),
    GCMVector(testDescription: "test case 16 (AES-256, 60 bytes and AAD)", key: specKey128 + specKey128,
              iv: "cafebabefacedbaddecaf888", aad: specAAD, plaintext: String(specPlaintext.dropLast(8)),
              ciphertext: """
                  522dc1f099567d07f47f37a32a84427d 643a8cdcbfe5c0c97598a2bd2555d1aa
                  8cb08e48590dbb3da7b08b1056828838 c5f61e6393ba7a0abcc9f662
                  """,
              tag: "76fc6ece0f4e1768cddf8853bb2d551b"),
]

@Suite("record_seal.c: the user-space AES-GCM record sealer")
struct RecordSealTests {
    @Test("the published test cases come out of the sealer and out of the library alike", arguments: specVectors)
    func publishedVectors(vector: GCMVector) throws {
        let engines = sealerRuns ? [Int32(OTA_TESTING_GCM_SEALER), Int32(OTA_TESTING_GCM_LIBRARY)]
                                 : [Int32(OTA_TESTING_GCM_LIBRARY)]
        for engine in engines {
            let result = gcm(engine, key: bytes(vector.key), iv: bytes(vector.iv), aad: bytes(vector.aad),
                             plaintext: bytes(vector.plaintext))
            #expect(result.status == code(OTA_OK), "engine \(engine)")
            #expect(hexString(result.ciphertext) == hexString(bytes(vector.ciphertext)), "engine \(engine)")
            #expect(hexString(result.tag) == vector.tag, "engine \(engine)")
        }
    }

    /// Random keys, IVs and AAD over lengths around every block and batch edge, a full record,
    /// and past it to 70,000 bytes: the sealer must agree with the library byte for byte.
    @Test(.enabled(if: sealerRuns, "this CPU has no AES-NI and PCLMULQDQ"))
    func agreesWithTheLibrary() {
        var generator = SystemRandomNumberGenerator()
        let edges = [0, 1, 15, 16, 17, 31, 32, 33, 127, 128, 129, 255, 256, 1000, 16_383, 16_384, 16_385,
                     16_384 + 13, 65_536, 69_999, 70_000]
        let random = (0..<60).map { _ in Int.random(in: 0...70_000, using: &generator) }
        for (index, length) in (edges + random).enumerated() {
            let key = (0..<(index % 2 == 0 ? 16 : 32)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let iv = (0..<12).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let aad = (0..<Int.random(in: 0...40, using: &generator)).map { _ in UInt8.random(in: 0...255) }
            let plaintext = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let sealed = gcm(Int32(OTA_TESTING_GCM_SEALER), key: key, iv: iv, aad: aad, plaintext: plaintext)
            let library = gcm(Int32(OTA_TESTING_GCM_LIBRARY), key: key, iv: iv, aad: aad, plaintext: plaintext)
            let context = "length \(length), key \(key.count) bytes, aad \(aad.count) bytes"
            #expect(sealed.status == code(OTA_OK) && library.status == code(OTA_OK), "\(context)")
            #expect(sealed.ciphertext == library.ciphertext, "\(context)")
            #expect(sealed.tag == library.tag, "\(context)")
        }
    }

    /// Records as RFC 5246 and RFC 5288 frame them: header, the sequence number as explicit
    /// nonce, then AES-GCM under salt || sequence with AAD seq || type || version || length.
    @Test(.enabled(if: sealerRuns, "this CPU has no AES-NI and PCLMULQDQ"), arguments: [16, 32], [0, 1, 2, 16_384])
    func recordsAreFramedAndNumbered(keyLength: Int, length: Int) throws {
        let key = (0..<keyLength).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
        let salt: [UInt8] = [0xde, 0xad, 0xbe, 0xef]
        let plaintext = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var records = [UInt8](repeating: 0, count: 2 * (length + 29))
        var used = 0
        let status = ota_testing_seal_records(key, key.count, salt, 0x0102_0304_0506_0708, 23, plaintext, length, 2,
                                              &records, records.count, &used)
        try #require(status == code(OTA_OK))
        #expect(used == 2 * (length + 29))

        for (index, sequence) in [UInt64(0x0102_0304_0506_0708), 0x0102_0304_0506_0709].enumerated() {
            let record = Array(records[(index * (length + 29))..<((index + 1) * (length + 29))])
            let body = length + 24
            #expect(Array(record.prefix(5)) == [23, 3, 3, UInt8(body >> 8), UInt8(body & 0xff)])
            let number = (0..<8).map { UInt8(truncatingIfNeeded: sequence >> (56 - 8 * $0)) }
            #expect(Array(record[5..<13]) == number)
            let aad = number + [23, 3, 3, UInt8(length >> 8), UInt8(length & 0xff)]
            let expected = gcm(Int32(OTA_TESTING_GCM_LIBRARY), key: key, iv: salt + number, aad: aad,
                               plaintext: plaintext)
            #expect(Array(record[13..<(13 + length)]) == expected.ciphertext)
            #expect(Array(record.suffix(16)) == expected.tag)
        }
    }

    @Test(.enabled(if: sealerRuns, "this CPU has no AES-NI and PCLMULQDQ"))
    func theLastSequenceNumberIsUsedOnceAndThenNothing() {
        let key = [UInt8](repeating: 1, count: 16)
        let salt = [UInt8](repeating: 2, count: 4)
        var records = [UInt8](repeating: 0, count: 2 * 64)
        var used = 0
        #expect(ota_testing_seal_records(key, 16, salt, UInt64.max, 23, [7], 1, 1, &records, records.count, &used)
                    == code(OTA_OK))
        #expect(used == 30)
        #expect(Array(records[5..<13]) == [UInt8](repeating: 0xff, count: 8))
        #expect(ota_testing_seal_records(key, 16, salt, UInt64.max, 23, [7], 1, 2, &records, records.count, &used)
                    == code(OTA_ERR_INTERNAL), "a second record would wrap the sequence and reuse a nonce")
        #expect(used == 30)
    }

    @Test(.enabled(if: sealerRuns, "this CPU has no AES-NI and PCLMULQDQ"))
    func sizesAndKeysOutsideTheFormatAreRefused() {
        let salt = [UInt8](repeating: 0, count: 4)
        var records = [UInt8](repeating: 0, count: 16_384 + 64)
        var used = 0
        let big = [UInt8](repeating: 0, count: 16_385)
        #expect(ota_testing_seal_records([UInt8](repeating: 0, count: 16), 16, salt, 0, 23, big, big.count, 1,
                                         &records, records.count, &used) == code(OTA_ERR_USAGE),
                "more than one record's plaintext")
        #expect(ota_testing_seal_records([UInt8](repeating: 0, count: 16), 16, salt, 0, 23, big, 100, 1,
                                         &records, 128, &used) == code(OTA_ERR_USAGE), "no room for the tag")
        #expect(ota_testing_seal_records([UInt8](repeating: 0, count: 24), 24, salt, 0, 23, big, 1, 1,
                                         &records, records.count, &used) == code(OTA_ERR_USAGE), "AES-192")
        #expect(used == 0)
        let result = gcm(Int32(OTA_TESTING_GCM_SEALER), key: [UInt8](repeating: 0, count: 24),
                         iv: [UInt8](repeating: 0, count: 12), aad: [], plaintext: [1])
        #expect(result.status == code(OTA_ERR_USAGE))
    }
}
