import OTACore

/// Who a certificate names and its fingerprint: enough to tell devices apart in logs.
public struct CertificateIdentity: Sendable, Equatable {
    /// The subject in one line, e.g. "CN=esp32-device-0001, O=Fleet"; "?" if unparseable.
    public let subject: String
    /// SHA-256 of the DER bytes, lower-case hex.
    public let fingerprint: String
    public let notBefore: Int64
    public let notAfter: Int64
    /// The CN or a DNS name is "ota-agent", as the field devices check.
    public let namesOTAAgent: Bool

    init(_ info: ota_cert_info) {
        var copy = info
        subject = withUnsafeBytes(of: &copy.subject) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        fingerprint = hex(withUnsafeBytes(of: copy.sha256) { Array($0) })
        notBefore = info.not_before
        notAfter = info.not_after
        namesOTAAgent = info.has_ota_agent_name != 0
    }

    init(unparsedDER der: [UInt8]) {
        var digest = [UInt8](repeating: 0, count: 32)
        ota_sha256(der, der.count, &digest)
        subject = "?"
        fingerprint = hex(digest)
        notBefore = 0
        notAfter = 0
        namesOTAAgent = false
    }

    /// The first 12 hex digits of the fingerprint, for log lines.
    public var shortFingerprint: String { String(fingerprint.prefix(12)) }
}

/// Conversions of attestation certificates, all in the C core (Swift has no crypto here).
public enum AttestationCertificate {
    /// The identity of a DER certificate; unparseable bytes still get their fingerprint.
    public static func identity(ofDER der: [UInt8]) -> CertificateIdentity {
        var info = ota_cert_info()
        let status = ota_cert_inspect(der, der.count, &info, nil, 0)
        return status == OTA_OK.rawValue ? CertificateIdentity(info)
            : CertificateIdentity(unparsedDER: der)
    }

    /// The standard PEM form Dice-Auth expects.
    public static func pem(fromDER der: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: ota_pem_length(der.count))
        var length = 0
        ota_der_to_pem(der, der.count, &buffer, buffer.count, &length)
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
