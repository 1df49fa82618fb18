import OTACore

/// Who a certificate names and its fingerprint: enough to tell devices apart in logs.
public struct CertificateIdentity: Sendable, Equatable {
    /// The subject in one line, e.g. "CN=esp32-device-0001, O=Fleet"; "?" if unparseable.
    ///
    /// Untrusted text: a device chooses its certificate's subject, which may hold line breaks,
    /// ESC, BEL and other control characters. Escape it before printing or logging it (the
    /// agent's own logs do); printed raw it can forge log lines or drive a terminal.
    public let subject: String
    /// SHA-256 of the DER bytes, lower-case hex.
    public let fingerprint: String
    /// Validity, seconds since the epoch (0 when unparsed).
    public let notBefore: Int64
    public let notAfter: Int64

    init(_ info: ota_cert_info) {
        var copy = info
        subject = withUnsafeBytes(of: &copy.subject) { text(ofCString: $0) }
        fingerprint = hex(withUnsafeBytes(of: copy.sha256) { Array($0) })
        notBefore = info.not_before
        notAfter = info.not_after
    }

    init(_ identity: ota_cert_identity, parsed: Bool) {
        var copy = identity
        subject = parsed ? withUnsafeBytes(of: &copy.subject) { text(ofCString: $0) } : "?"
        fingerprint = hex(withUnsafeBytes(of: copy.sha256) { Array($0) })
        notBefore = identity.not_before
        notAfter = identity.not_after
    }

    /// The first 12 hex digits of the fingerprint, for log lines.
    public var shortFingerprint: String { String(fingerprint.prefix(12)) }
}

/// Conversions of attestation certificates, all in the C core (Swift has no crypto here).
public enum AttestationCertificate {
    /// The identity of a DER certificate, from its structure alone (cheap: see
    /// `ota_cert_identify`); unparseable bytes still get their fingerprint, subject "?".
    public static func identity(ofDER der: [UInt8]) -> CertificateIdentity {
        var identity = ota_cert_identity()
        let status = ota_cert_identify(der, der.count, &identity)
        return CertificateIdentity(identity, parsed: status == OTA_OK.rawValue)
    }

    /// The standard PEM form Dice-Auth expects.
    public static func pem(fromDER der: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: ota_pem_length(der.count))
        var length = 0
        ota_der_to_pem(der, der.count, &buffer, buffer.count, &length)
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}

/// A fixed C character array up to its NUL, decoded as UTF-8 (invalid bytes repaired).
private func text(ofCString bytes: UnsafeRawBufferPointer) -> String {
    String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
}
