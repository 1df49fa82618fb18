import Foundation
import OTACore
import Testing

/// The backend compiled in decides what TLS 1.3 settings do.
private let hasTLS13 = String(cString: ota_backend_name()) == "openssl"

private let defaultTLS12 = [
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
]
private let defaultTLS13 = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]

/// A policy config over the RSA fixture pair: the handle (or nil), the status, the detail.
private func makeConfig(ciphers: String?, minVersion: Int32)
    -> (config: OpaquePointer?, status: Int32, detail: String)
{
    var status: Int32 = 12345
    var detail = DetailBuffer()
    let config = ota_server_config_new_with_policy(Fixture.path("agent-rsa.crt"), Fixture.path("agent-rsa.key"),
                                                   ciphers, minVersion, &status, &detail.storage,
                                                   detail.storage.count)
    return (config, status, detail.text)
}

/// A list the policy accepts, and the suites then in effect on each backend.
struct AcceptedPolicy: Sendable, CustomTestStringConvertible {
    let testDescription: String
    let ciphers: String?
    let minVersion: Int32
    let openSSL: [String]
    let mbedTLS: [String]
}

/// A setting the policy refuses, and what the detail must start with and contain.
struct RefusedPolicy: Sendable, CustomTestStringConvertible {
    let testDescription: String
    let ciphers: String?
    let minVersion: Int32
    let status: ota_status
    let prefix: String
    let mentions: String
}

@Suite("credentials.c: ota_server_config_new_with_policy")
struct TLSPolicyTests {
    static let accepted: [AcceptedPolicy] = [
        AcceptedPolicy(testDescription: "defaults: AES-GCM first, ESP-IDF's two suites on top",
                       ciphers: nil, minVersion: 0, openSSL: defaultTLS12 + defaultTLS13, mbedTLS: defaultTLS12),
        AcceptedPolicy(testDescription: "an empty list is the default", ciphers: "", minVersion: Int32(OTA_TLS_1_2),
                       openSSL: defaultTLS12 + defaultTLS13, mbedTLS: defaultTLS12),
        AcceptedPolicy(testDescription: "one suite, OpenSSL name", ciphers: "ECDHE-RSA-AES256-GCM-SHA384",
                       minVersion: 0, openSSL: ["ECDHE-RSA-AES256-GCM-SHA384"],
                       mbedTLS: ["ECDHE-RSA-AES256-GCM-SHA384"]),
        AcceptedPolicy(testDescription: "IANA and mbedTLS names, any case, order kept, duplicates once",
                       ciphers: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, tls-ecdhe-rsa-with-aes-128-gcm-sha256"
                           + ":ECDHE-RSA-CHACHA20-POLY1305",
                       minVersion: 0, openSSL: ["ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-RSA-AES128-GCM-SHA256"],
                       mbedTLS: ["ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-RSA-AES128-GCM-SHA256"]),
        AcceptedPolicy(testDescription: "TLS 1.3 suites are skipped where the backend has no TLS 1.3",
                       ciphers: "TLS_AES_256_GCM_SHA384:ECDHE-RSA-AES128-GCM-SHA256", minVersion: 0,
                       openSSL: ["TLS_AES_256_GCM_SHA384", "ECDHE-RSA-AES128-GCM-SHA256"],
                       mbedTLS: ["ECDHE-RSA-AES128-GCM-SHA256"]),
        AcceptedPolicy(testDescription: "a suite for the other key kind beside one for this key",
                       ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256", minVersion: 0,
                       openSSL: ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"],
                       mbedTLS: ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"]),
    ]

    @Test("a list inside the policy is honoured in its order", arguments: accepted)
    func accepts(_ policy: AcceptedPolicy) {
        let made = makeConfig(ciphers: policy.ciphers, minVersion: policy.minVersion)
        defer { ota_server_config_free(made.config) }
        #expect(made.config != nil, "\(made.detail)")
        #expect(made.status == code(OTA_OK))
        let expected = (hasTLS13 ? policy.openSSL : policy.mbedTLS).joined(separator: ":")
        #expect(String(cString: ota_server_config_ciphers(made.config)) == expected)
        #expect(ota_server_config_min_version(made.config) == Int32(OTA_TLS_1_2))
    }

    static let refused: [RefusedPolicy] = [
        RefusedPolicy(testDescription: "non-ECDHE suite (RSA key exchange)", ciphers: "AES128-GCM-SHA256",
                      minVersion: 0, status: OTA_ERR_CONFIG, prefix: "tls ciphers: ", mentions: "'AES128-GCM-SHA256'"),
        RefusedPolicy(testDescription: "non-AEAD suite (CBC)",
                      ciphers: "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-SHA", minVersion: 0,
                      status: OTA_ERR_CONFIG, prefix: "tls ciphers: ", mentions: "'ECDHE-RSA-AES128-SHA'"),
        RefusedPolicy(testDescription: "DHE key exchange", ciphers: "DHE-RSA-AES128-GCM-SHA256", minVersion: 0,
                      status: OTA_ERR_CONFIG, prefix: "tls ciphers: ", mentions: "only ECDHE suites"),
        RefusedPolicy(testDescription: "CCM is AEAD but outside the policy", ciphers: "ECDHE-ECDSA-AES128-CCM",
                      minVersion: 0, status: OTA_ERR_CONFIG, prefix: "tls ciphers: ", mentions: "AES-GCM"),
        RefusedPolicy(testDescription: "OpenSSL keywords cannot widen the list", ciphers: "HIGH:!aNULL",
                      minVersion: 0, status: OTA_ERR_CONFIG, prefix: "tls ciphers: ", mentions: "'HIGH'"),
        RefusedPolicy(testDescription: "separators only: names nothing", ciphers: ": ,:", minVersion: 0,
                      status: OTA_ERR_CONFIG, prefix: "tls ciphers: ", mentions: "names no suite"),
        RefusedPolicy(testDescription: "TLS 1.2 suites only for an EC key, with the RSA certificate",
                      ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305", minVersion: 0,
                      status: OTA_ERR_CONFIG, prefix: "tls ciphers: ", mentions: "RSA key"),
        RefusedPolicy(testDescription: "a minimum version that is neither 1.2 nor 1.3", ciphers: nil,
                      minVersion: 0x0302, status: OTA_ERR_USAGE, prefix: "tls min version: ", mentions: "0x0302"),
    ]

    @Test("a setting outside the policy is refused, naming it, before any file is read", arguments: refused)
    func refuses(_ policy: RefusedPolicy) {
        let made = makeConfig(ciphers: policy.ciphers, minVersion: policy.minVersion)
        ota_server_config_free(made.config)
        #expect(made.config == nil)
        #expect(made.status == code(policy.status), "\(made.detail)")
        #expect(made.detail.hasPrefix(policy.prefix), "\(made.detail)")
        #expect(made.detail.contains(policy.mentions), "\(made.detail)")
    }

    @Test("only TLS 1.3 suites while TLS 1.2 is allowed would lock out every field device")
    func tls13SuitesAloneAreRefused() {
        let made = makeConfig(ciphers: "TLS_AES_128_GCM_SHA256", minVersion: 0)
        ota_server_config_free(made.config)
        #expect(made.config == nil)
        #expect(made.status == code(OTA_ERR_CONFIG))
        #expect(made.detail.hasPrefix("tls ciphers: "), "\(made.detail)")
        #expect(made.detail.contains(hasTLS13 ? "no TLS 1.2 suite" : "names no suite"), "\(made.detail)")
    }

    @Test("minimum TLS 1.3: TLS 1.3 suites only on OpenSSL, a configuration error on mbedTLS")
    func minimumTLS13() {
        let made = makeConfig(ciphers: nil, minVersion: Int32(OTA_TLS_1_3))
        defer { ota_server_config_free(made.config) }
        if hasTLS13 {
            #expect(made.config != nil, "\(made.detail)")
            #expect(String(cString: ota_server_config_ciphers(made.config)) == defaultTLS13.joined(separator: ":"))
            #expect(ota_server_config_min_version(made.config) == Int32(OTA_TLS_1_3))
        } else {
            #expect(made.config == nil)
            #expect(made.status == code(OTA_ERR_CONFIG))
            #expect(made.detail.hasPrefix("tls min version: "), "\(made.detail)")
            #expect(made.detail.contains("TLS 1.2 only"), "\(made.detail)")
        }
    }

    @Test("minimum TLS 1.3 with only TLS 1.2 suites names nothing usable",
          .enabled(if: hasTLS13, "the mbedTLS backend refuses the minimum itself (minimumTLS13)"))
    func minimumTLS13WithTLS12SuitesOnly() {
        let made = makeConfig(ciphers: "ECDHE-RSA-AES128-GCM-SHA256", minVersion: Int32(OTA_TLS_1_3))
        ota_server_config_free(made.config)
        #expect(made.config == nil)
        #expect(made.detail.hasPrefix("tls ciphers: ") && made.detail.contains("names no suite"), "\(made.detail)")
    }

    @Test("policy errors win over file errors; NULL config reads as empty")
    func usage() {
        var status: Int32 = 0
        var detail = DetailBuffer()
        let refused = ota_server_config_new_with_policy("/nonexistent.crt", "/nonexistent.key", "RC4-SHA", 0,
                                                        &status, &detail.storage, detail.storage.count)
        #expect(refused == nil)
        #expect(status == code(OTA_ERR_CONFIG))
        #expect(detail.text.hasPrefix("tls ciphers: "), "\(detail.text)")
        let withoutCertificate = ota_server_config_new_with_policy(nil, "/k", nil, 0, &status, nil, 0)
        #expect(withoutCertificate == nil)
        #expect(status == code(OTA_ERR_USAGE))
        #expect(String(cString: ota_server_config_ciphers(nil)) == "")
        #expect(ota_server_config_min_version(nil) == 0)
    }
}
