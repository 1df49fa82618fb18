import Foundation
import Testing
@testable import OTAAgent

@Suite("AttestationCertificate")
struct AttestationCertificateTests {
    @Test("pem(fromDER:) of device.der equals device.crt")
    func pemEqualsSample() throws {
        #expect(AttestationCertificate.pem(fromDER: try Sample.bytes("device.der")) == (try Sample.text("device.crt")))
        #expect(AttestationCertificate.pem(fromDER: try Sample.bytes("device-2.der"))
                == (try Sample.text("device-2.crt")))
    }

    @Test("pem(fromDER:) of no bytes is the bare armour")
    func pemOfNothing() {
        #expect(AttestationCertificate.pem(fromDER: [])
                == "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    }

    @Test("identity(ofDER:) of device.der names the device and gives its fingerprint")
    func identityOfSample() throws {
        let identity = AttestationCertificate.identity(ofDER: try Sample.bytes("device.der"))
        #expect(identity.subject.contains("CN=esp32-device-0001"))
        #expect(identity.fingerprint.wholeMatch(of: /[0-9a-f]{64}/) != nil)
        #expect(identity.shortFingerprint == String(identity.fingerprint.prefix(12)))
        #expect(identity.notBefore < identity.notAfter)
    }

    @Test("identity(ofDER:) of garbage: subject \"?\" and the bytes' SHA-256 as a 64-hex fingerprint",
          arguments: [
              ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
              ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
          ])
    func identityOfGarbage(text: String, fingerprint: String) {
        let identity = AttestationCertificate.identity(ofDER: Array(text.utf8))
        #expect(identity.subject == "?")
        #expect(identity.fingerprint == fingerprint)
        #expect(identity.fingerprint.count == 64)
        #expect(identity.notBefore == 0 && identity.notAfter == 0)
    }

    @Test("identity(ofDER:) of a truncated certificate is unparsed, fingerprinted all the same")
    func identityOfTruncated() throws {
        let identity = AttestationCertificate.identity(ofDER: Array(try Sample.bytes("device.der").prefix(100)))
        #expect(identity.subject == "?")
        #expect(identity.fingerprint.wholeMatch(of: /[0-9a-f]{64}/) != nil)
    }
}
