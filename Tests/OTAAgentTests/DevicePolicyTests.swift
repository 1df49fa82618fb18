import Testing
@testable import OTAAgent

/// The policy's decisions alone, on made-up bytes: which device is admitted before Dice-Auth.
@Suite("DevicePolicy")
struct DevicePolicyTests {
    static let certificate: [UInt8] = [0x30, 0x03, 0x02, 0x01, 0x01]
    static let other: [UInt8] = [0x30, 0x03, 0x02, 0x01, 0x02]
    static let fingerprint = String(repeating: "a1", count: 32)

    @Test("with no switch set, legacy and proving devices are both admitted")
    func defaults() {
        let policy = DevicePolicy()
        #expect(policy.decide(data: Self.certificate, presented: nil, fingerprint: Self.fingerprint) == .admit)
        #expect(policy.decide(data: Self.certificate, presented: Self.certificate, fingerprint: Self.fingerprint)
                == .admit)
        #expect(policy.allows(peer: "192.0.2.1"))
    }

    @Test("a handshake certificate other than the one sent as data is refused, whatever the policy")
    func mismatch() {
        let decision = DevicePolicy().decide(data: Self.certificate, presented: Self.other,
                                             fingerprint: Self.fingerprint)
        guard case .refuse(let reason) = decision else {
            Issue.record("admitted")
            return
        }
        #expect(reason.contains("not the one presented in the TLS handshake"), "\(reason)")
    }

    @Test("require proof: a legacy device is refused, a proving one admitted")
    func requireProof() {
        var policy = DevicePolicy()
        policy.requireProof = true
        guard case .refuse(let reason) = policy.decide(data: Self.certificate, presented: nil,
                                                       fingerprint: Self.fingerprint) else {
            Issue.record("legacy device admitted")
            return
        }
        #expect(reason.contains("legacy device") && reason.contains("OTA_REQUIRE_PROOF"), "\(reason)")
        #expect(policy.decide(data: Self.certificate, presented: Self.certificate, fingerprint: Self.fingerprint)
                == .admit)
    }

    @Test("expected devices: only listed fingerprints are admitted, legacy or proving")
    func expectedDevices() {
        var policy = DevicePolicy()
        policy.expectedDevices = [Self.fingerprint]
        #expect(policy.decide(data: Self.certificate, presented: nil, fingerprint: Self.fingerprint) == .admit)
        let stranger = String(repeating: "b2", count: 32)
        guard case .refuse(let reason) = policy.decide(data: Self.other, presented: Self.other,
                                                       fingerprint: stranger) else {
            Issue.record("unexpected device admitted")
            return
        }
        #expect(reason.contains("OTA_EXPECTED_DEVICES"), "\(reason)")
    }

    @Test("allowed peers compare by value: IPv4-mapped IPv6 equals IPv4, any IPv6 spelling",
          arguments: [("127.0.0.2", "127.0.0.2", true), ("::ffff:127.0.0.2", "127.0.0.2", true),
                      ("127.0.0.2", "::ffff:127.0.0.2", true), ("::1", "0:0:0:0:0:0:0:1", true),
                      ("127.0.0.2", "127.0.0.3", false), ("::1", "127.0.0.1", false),
                      ("::ffff:127.0.0.2", "::ffff:127.0.0.1", false), ("127.0.0.2", "not-an-address", false)])
    func peers(allowed: String, peer: String, expected: Bool) throws {
        var policy = DevicePolicy()
        policy.allowedPeers = [try #require(PeerAddress(allowed))]
        #expect(policy.allows(peer: peer) == expected)
    }

    @Test("fingerprint forms", arguments: [
        (String(repeating: "AB", count: 32), String(repeating: "ab", count: 32)),
        (Array(repeating: "Ab", count: 32).joined(separator: ":"), String(repeating: "ab", count: 32)),
        (" " + String(repeating: "0f", count: 32) + " ", String(repeating: "0f", count: 32)),
    ])
    func fingerprints(text: String, expected: String) {
        #expect(DevicePolicy.fingerprint(text) == expected)
    }

    @Test("not fingerprints", arguments: ["", String(repeating: "a", count: 63), String(repeating: "z", count: 64),
                                          Array(repeating: "abc", count: 21).joined(separator: ":") + ":a",
                                          String(repeating: "ab", count: 31) + ":ab"])
    func notFingerprints(text: String) {
        #expect(DevicePolicy.fingerprint(text) == nil)
    }
}
