import Foundation

/// Which devices the agent serves, beyond Dice-Auth's verdict: the orchestrator's policy.
///
/// A DICE certificate is public data, so a device that only sends it as data (a legacy device)
/// proves nothing by it: anyone who has seen the certificate can replay it. A device that also
/// presents it as its TLS client certificate proves, by the handshake's signature, that it
/// holds the private key (OpenSSL backend only; see `ota_backend_supports_proof`). The policy
/// can demand that proof, and can pin the one device a job is for by its certificate's
/// fingerprint and by the address it connects from. Every check here runs before Dice-Auth is
/// asked; the address check runs at accept, before the TLS handshake.
public struct DevicePolicy: Sendable, Equatable {
    /// Refuse devices that present no client certificate (legacy devices).
    public var requireProof = false
    /// SHA-256 fingerprints (64 lower-case hex digits) of the certificates served; empty: any.
    public var expectedDevices: [String] = []
    /// The addresses devices may connect from; empty: any.
    public var allowedPeers: [PeerAddress] = []

    public init() {}

    /// Whether a connection from `address` (numeric, as accepted) may be served.
    public func allows(peer address: String) -> Bool {
        guard !allowedPeers.isEmpty else { return true }
        guard let peer = PeerAddress(address) else { return false }
        return allowedPeers.contains(peer)
    }

    /// What to do with a device, once its certificate has arrived as data.
    public enum Decision: Sendable, Equatable {
        case admit
        case refuse(String)
    }

    /// The checks of one device: `data` is the certificate it sent after the handshake,
    /// `presented` the client certificate of its handshake (nil for a legacy device), and
    /// `fingerprint` the SHA-256 of `data` in lower-case hex.
    public func decide(data: [UInt8], presented: [UInt8]?, fingerprint: String) -> Decision {
        if let presented, presented != data {
            return .refuse("the certificate sent as data is not the one presented in the TLS handshake")
        }
        if requireProof && presented == nil {
            return .refuse("legacy device (no client certificate in the TLS handshake) and "
                + "\(EnvironmentKey.requireProof.rawValue) is set: the certificate alone proves nothing")
        }
        if !expectedDevices.isEmpty && !expectedDevices.contains(fingerprint) {
            return .refuse("certificate is not an expected device (\(EnvironmentKey.expectedDevices.rawValue))")
        }
        return .admit
    }

    /// A certificate fingerprint as the orchestrator may write it: 64 hex digits, either case,
    /// optionally in colon-separated pairs ("AB:CD:..."). Nil when it is not one.
    public static func fingerprint(_ text: String) -> String? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        var digits = trimmed
        if trimmed.contains(":") {
            let pairs = trimmed.split(separator: ":", omittingEmptySubsequences: false)
            guard pairs.count == 32, pairs.allSatisfy({ $0.count == 2 }) else { return nil }
            digits = pairs.joined()
        }
        guard digits.utf8.count == 64, digits.allSatisfy(\.isHexDigit) else { return nil }
        return digits.lowercased()
    }
}

/// A numeric IP address, compared by value: "::ffff:127.0.0.2" (IPv4-mapped IPv6) equals
/// "127.0.0.2", and "::1" equals "0:0:0:0:0:0:0:1".
public struct PeerAddress: Sendable, Hashable, CustomStringConvertible {
    /// 4 bytes for IPv4 (mapped IPv6 addresses included), 16 for IPv6.
    let bytes: [UInt8]

    /// Nil when `text` is not a numeric IPv4 or IPv6 address (no host names, no ports);
    /// surrounding spaces and brackets are allowed.
    public init?(_ text: String) {
        var address = text.trimmingCharacters(in: .whitespaces)
        if address.hasPrefix("[") && address.hasSuffix("]") {
            address = String(address.dropFirst().dropLast())
        }
        self.init(numeric: address)
    }

    /// Nil unless `address` is exactly what inet_pton reads: dotted-quad IPv4 (not inet_aton's
    /// short or hexadecimal forms, as "127.1") or standard IPv6 text; no spaces, no brackets.
    init?(numeric address: String) {
        var ipv4 = in_addr()
        if inet_pton(AF_INET, address, &ipv4) == 1 {
            bytes = withUnsafeBytes(of: &ipv4) { Array($0) }
            return
        }
        var ipv6 = in6_addr()
        guard inet_pton(AF_INET6, address, &ipv6) == 1 else { return nil }
        let all = withUnsafeBytes(of: &ipv6) { Array($0) }
        let mappedPrefix: [UInt8] = Array(repeating: 0, count: 10) + [0xff, 0xff]
        bytes = Array(all.prefix(12)) == mappedPrefix ? Array(all.suffix(4)) : all
    }

    /// The canonical text: dotted IPv4, or RFC 5952 IPv6.
    public var description: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        bytes.withUnsafeBytes { raw in
            _ = inet_ntop(family, raw.baseAddress, &text, socklen_t(text.count))
        }
        return text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
