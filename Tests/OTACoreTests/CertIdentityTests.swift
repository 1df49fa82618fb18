import Foundation
import OTACore
import Testing

/// `ota_cert_identify` on some bytes: the status and what it filled in.
private func identify(_ der: [UInt8]) -> (status: Int32, identity: ota_cert_identity) {
    var identity = ota_cert_identity()
    let status = der.withUnsafeBufferPointer { ota_cert_identify($0.baseAddress, $0.count, &identity) }
    return (status, identity)
}

/// A minimal DER writer: enough to build the parts of a certificate the walker reads.
private enum DER {
    static func element(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] {
        var length: [UInt8]
        switch content.count {
        case ..<0x80: length = [UInt8(content.count)]
        case ..<0x100: length = [0x81, UInt8(content.count)]
        default: length = [0x82, UInt8(content.count >> 8), UInt8(content.count & 0xff)]
        }
        return [tag] + length + content
    }

    static func sequence(_ parts: [UInt8]...) -> [UInt8] { element(0x30, parts.flatMap { $0 }) }

    /// One attribute in a set of its own (one RDN).
    static func attribute(_ oid: [UInt8], _ tag: UInt8, _ value: [UInt8]) -> [UInt8] {
        element(0x31, sequence(element(0x06, oid), element(tag, value)))
    }

    static let commonName: [UInt8] = [0x55, 0x04, 0x03]
    static let organization: [UInt8] = [0x55, 0x04, 0x0a]

    /// Certificate { tbsCertificate { version, serial, algorithm, issuer, validity, subject,
    /// key }, algorithm, signature } with the given subject and validity.
    static func certificate(subject: [UInt8],
                            notBefore: [UInt8] = element(0x17, Array("260101000000Z".utf8)),
                            notAfter: [UInt8] = element(0x18, Array("20360101000000Z".utf8))) -> [UInt8]
    {
        let algorithm = sequence(element(0x06, [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]))
        let tbs = sequence(element(0xa0, element(0x02, [2])), element(0x02, [0x01, 0x23]), algorithm,
                           sequence(attribute(commonName, 0x0c, Array("issuer".utf8))),
                           sequence(notBefore, notAfter), subject,
                           sequence(algorithm, element(0x03, [0, 4, 1, 2])))
        return sequence(tbs, algorithm, element(0x03, [0, 1, 2, 3]))
    }
}

@Suite("cert_identity.c: ota_cert_identify")
struct CertIdentityTests {
    @Test("every sample certificate: the same subject, dates and fingerprint as the TLS library's parse",
          arguments: ["device.der", "device-2.der", "rogue-device.der", "agent-rsa.crt", "agent-ec.crt",
                      "dice-root.crt", "rogue-root.crt"])
    func agreesWithTheBackend(file: String) throws {
        let der = file.hasSuffix(".der") ? try Fixture.bytes(file) : try Fixture.derFromPEM(file)
        var info = ota_cert_info()
        #expect(ota_cert_inspect(der, der.count, &info, nil, 0) == code(OTA_OK))

        let result = identify(der)

        #expect(result.status == code(OTA_OK))
        #expect(string(fromCArray: result.identity.subject) == string(fromCArray: info.subject))
        #expect(result.identity.not_before == info.not_before)
        #expect(result.identity.not_after == info.not_after)
        #expect(withUnsafeBytes(of: result.identity.sha256) { Array($0) }
                == withUnsafeBytes(of: info.sha256) { Array($0) })
    }

    @Test("names: wide strings as UTF-8, unknown types as dotted OIDs, non-strings as hex, NUL as ?",
          arguments: [
              (DER.attribute(DER.commonName, 0x1e, [0x00, 0xe9, 0x20, 0xac]), "CN=é€"),
              (DER.attribute(DER.commonName, 0x1c, [0x00, 0x01, 0xf6, 0x00]), "CN=😀"),
              (DER.attribute([0x2b, 0x06, 0x01, 0x04, 0x01, 0x86, 0x8d, 0x1f, 0x01], 0x0c, Array("x".utf8)),
               "1.3.6.1.4.1.99999.1=x"),
              (DER.attribute(DER.commonName, 0x04, [0x01, 0xab]), "CN=#01ab"),
              (DER.attribute(DER.commonName, 0x13, [0x61, 0x00, 0x62]), "CN=a?b"),
              (DER.element(0x31, DER.sequence(DER.element(0x06, DER.commonName), DER.element(0x0c, [0x61]))
                           + DER.sequence(DER.element(0x06, DER.organization), DER.element(0x13, [0x62]))),
               "CN=a, O=b"),
          ])
    func oddNames(attribute: [UInt8], expected: String) {
        let result = identify(DER.certificate(subject: DER.sequence(attribute)))
        #expect(result.status == code(OTA_OK))
        #expect(string(fromCArray: result.identity.subject) == expected)
    }

    @Test("an empty subject is an empty string; a long one is cut short, still terminated")
    func subjectLengths() {
        let empty = identify(DER.certificate(subject: DER.sequence()))
        #expect(empty.status == code(OTA_OK))
        #expect(string(fromCArray: empty.identity.subject) == "")

        let name = String(repeating: "n", count: 400)
        let long = identify(DER.certificate(subject: DER.sequence(
            DER.attribute(DER.commonName, 0x0c, Array(name.utf8)))))
        #expect(long.status == code(OTA_OK))
        #expect(string(fromCArray: long.identity.subject) == "CN=" + String(name.prefix(252)))
    }

    @Test("times: UTCTime's century window (49 -> 2049, 50 -> 1950) and GeneralizedTime",
          arguments: [
              ("491231235959Z", 0x17 as UInt8, Int64(2_524_607_999)),
              ("500101000000Z", 0x17, Int64(-631_152_000)),
              ("20500101000000Z", 0x18, Int64(2_524_608_000)),
              ("19700101000000Z", 0x18, Int64(0)),
          ])
    func times(text: String, tag: UInt8, seconds: Int64) {
        let subject = DER.sequence(DER.attribute(DER.commonName, 0x0c, [0x61]))
        let result = identify(DER.certificate(subject: subject, notBefore: DER.element(tag, Array(text.utf8))))
        #expect(result.status == code(OTA_OK))
        #expect(result.identity.not_before == seconds)
    }

    @Test("not one whole certificate: a protocol error, fields empty, the bytes still fingerprinted")
    func malformed() throws {
        let good = try Fixture.bytes("device.der")
        let subject = DER.sequence(DER.attribute(DER.commonName, 0x0c, [0x61]))
        let cases: [(String, [UInt8])] = [
            ("nothing", []),
            ("truncated", Array(good.dropLast())),
            ("a trailing byte", good + [0]),
            ("a time without seconds", DER.certificate(subject: subject,
                                                        notBefore: DER.element(0x17, Array("2601010000Z".utf8)))),
            ("a month 13", DER.certificate(subject: subject,
                                            notBefore: DER.element(0x17, Array("261301000000Z".utf8)))),
            ("a subject that is a SET", DER.certificate(subject: DER.element(0x31, []))),
            ("an attribute without a value", DER.certificate(subject: DER.sequence(
                DER.element(0x31, DER.sequence(DER.element(0x06, DER.commonName)))))),
            ("an OID ending mid-arc", DER.certificate(subject: DER.sequence(
                DER.attribute([0x2b, 0x86], 0x0c, [0x61])))),
            ("a five-byte length", [0x30, 0x85, 0, 0, 0, 0, 1, 0]),
        ]
        for (name, bytes) in cases {
            let result = identify(bytes)
            var digest = [UInt8](repeating: 0, count: 32)
            ota_sha256(bytes, bytes.count, &digest)
            #expect(result.status == code(OTA_ERR_PROTOCOL), "\(name)")
            #expect(string(fromCArray: result.identity.subject) == "", "\(name)")
            #expect(result.identity.not_before == 0 && result.identity.not_after == 0, "\(name)")
            #expect(withUnsafeBytes(of: result.identity.sha256) { Array($0) } == digest, "\(name)")
        }
    }
}
