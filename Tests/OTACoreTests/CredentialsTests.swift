import Foundation
import OTACore
import Testing

/// `ota_cert_inspect` on some bytes: the status, the info and the detail text.
private func inspect(_ der: [UInt8]) -> (status: Int32, info: ota_cert_info, detail: String) {
    var info = ota_cert_info()
    var detail = DetailBuffer()
    let status = der.withUnsafeBufferPointer { bytes in
        ota_cert_inspect(bytes.baseAddress, bytes.count, &info, &detail.storage, detail.storage.count)
    }
    return (status, info, detail.text)
}

/// What the openssl command line tool says about a DER certificate file.
private struct OpenSSLView {
    let fingerprint: String
    let notBefore: Int64
    let notAfter: Int64

    init(derFile path: String) throws {
        let fingerprintLine = try run("openssl", ["x509", "-inform", "DER", "-in", path, "-noout",
                                                  "-fingerprint", "-sha256"])
        guard let equals = fingerprintLine.firstIndex(of: "=") else {
            throw FixtureError("unexpected openssl output: \(fingerprintLine)")
        }
        fingerprint = fingerprintLine[fingerprintLine.index(after: equals)...]
            .trimmingCharacters(in: .whitespacesAndNewlines)
            .replacingOccurrences(of: ":", with: "").lowercased()

        let dates = try run("openssl", ["x509", "-inform", "DER", "-in", path, "-noout", "-startdate",
                                        "-enddate", "-dateopt", "iso_8601"])
        var found: [String: Int64] = [:]
        let parser = ISO8601DateFormatter()
        for line in dates.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2,
                  let date = parser.date(from: parts[1].replacingOccurrences(of: " ", with: "T"))
            else { continue }
            found[parts[0]] = Int64(date.timeIntervalSince1970)
        }
        guard let notBefore = found["notBefore"], let notAfter = found["notAfter"] else {
            throw FixtureError("unexpected openssl output: \(dates)")
        }
        self.notBefore = notBefore
        self.notAfter = notAfter
    }
}

/// A certificate's names and whether the devices would take it for the agent's.
struct AgentNameCase: Sendable, CustomTestStringConvertible {
    let subject: String
    let alternativeNames: String?
    let expected: Int32

    init(_ subject: String, _ alternativeNames: String?, _ expected: Int32) {
        self.subject = subject
        self.alternativeNames = alternativeNames
        self.expected = expected
    }

    var testDescription: String { "subject \(subject), SAN \(alternativeNames ?? "none") -> \(expected)" }
}

@Suite("credentials.c: ota_cert_inspect")
struct CertInspectTests {
    @Test("device.der: subject, fingerprint and dates agree with the openssl tool; not an ota-agent name")
    func sampleDevice() throws {
        let der = try Fixture.bytes("device.der")
        let result = inspect(der)
        #expect(result.status == code(OTA_OK), "\(result.detail)")

        let subject = string(fromCArray: result.info.subject)
        #expect(subject.contains("CN=esp32-device-0001"))
        #expect(subject == "CN=esp32-device-0001, O=ota-agent demo fleet", "the documented one-line form")

        let openssl = try OpenSSLView(derFile: Fixture.path("device.der"))
        #expect(hexString(withUnsafeBytes(of: result.info.sha256) { Array($0) }) == openssl.fingerprint)
        #expect(result.info.not_before == openssl.notBefore)
        #expect(result.info.not_after == openssl.notAfter)

        let now = Int64(Date().timeIntervalSince1970)
        #expect(result.info.not_before < now)
        #expect(now < result.info.not_after)
        #expect(result.info.has_ota_agent_name == 0)
    }

    @Test("the agent certificates (RSA and EC, PEM decoded here) name ota-agent; the DICE root does not",
          arguments: [("agent-rsa.crt", 1), ("agent-ec.crt", 1), ("dice-root.crt", 0)])
    func agentName(file: String, expected: Int32) throws {
        let der = try Fixture.derFromPEM(file)
        let result = inspect(der)
        #expect(result.status == code(OTA_OK), "\(result.detail)")
        #expect(result.info.has_ota_agent_name == expected)
        var digest = [UInt8](repeating: 0, count: 32)
        #expect(ota_sha256(der, der.count, &digest) == code(OTA_OK))
        #expect(withUnsafeBytes(of: result.info.sha256) { Array($0) } == digest)
    }

    @Test("bytes that are not exactly one certificate are a protocol error with a detail",
          arguments: ["garbage", "truncated", "trailing byte", "PEM text", "lone SEQUENCE header"])
    func notACertificate(kind: String) throws {
        let der = try Fixture.bytes("device.der")
        let input: [UInt8] = switch kind {
        case "garbage": Array("this is not a certificate at all".utf8)
        case "truncated": Array(der.dropLast(10))
        case "trailing byte": der + [0x00]
        case "PEM text": Array(try Fixture.text("device.crt").utf8)
        default: [0x30, 0x00]
        }
        let result = inspect(input)
        #expect(result.status == code(OTA_ERR_PROTOCOL))
        #expect(!result.detail.isEmpty)
    }

    @Test("NULL bytes, zero length or NULL info are usage errors; a NULL detail is allowed")
    func nullArguments() throws {
        var info = ota_cert_info()
        var detail = DetailBuffer()
        #expect(ota_cert_inspect(nil, 10, &info, &detail.storage, detail.storage.count) == code(OTA_ERR_USAGE))
        #expect(!detail.text.isEmpty)
        let der = try Fixture.bytes("device.der")
        #expect(ota_cert_inspect(der, 0, &info, nil, 0) == code(OTA_ERR_USAGE))
        #expect(ota_cert_inspect(der, der.count, nil, nil, 0) == code(OTA_ERR_USAGE))
        #expect(ota_cert_inspect(der, der.count, &info, nil, 0) == code(OTA_OK))
        let garbage: [UInt8] = [1, 2, 3, 4]
        #expect(ota_cert_inspect(garbage, garbage.count, &info, nil, 0) == code(OTA_ERR_PROTOCOL))
    }

    /// Certificates made here with the openssl tool. The rule is the field devices' own (mbedTLS
    /// 2.28, as tls_mbedtls.c says): with a subjectAltName extension only its DNS names count,
    /// without one the CN, even when the extension holds no DNS name at all.
    @Test("has_ota_agent_name follows the devices' rule: SAN DNS names if any SAN, else the CN",
          arguments: [
              AgentNameCase("/CN=ota-agent", nil, 1),
              AgentNameCase("/CN=OTA-Agent", nil, 1),
              AgentNameCase("/CN=other", "DNS:ota-agent", 1),
              AgentNameCase("/CN=other", "DNS:somewhere, DNS:ota-agent", 1),
              AgentNameCase("/CN=ota-agent", "DNS:ota-agent", 1),
              AgentNameCase("/CN=ota-agent", "DNS:somewhere", 0),
              AgentNameCase("/CN=ota-agent", "IP:127.0.0.1", 0),
              AgentNameCase("/CN=other", "DNS:somewhere", 0),
              AgentNameCase("/CN=ota-agent.example", nil, 0),
              AgentNameCase("/CN=other", "DNS:ota-agentx", 0),
          ])
    func agentNameRules(_ example: AgentNameCase) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                         "-keyout", directory.path("key.pem"), "-subj", example.subject, "-days", "1",
                         "-outform", "DER", "-out", directory.path("cert.der")]
        if let alternativeNames = example.alternativeNames {
            arguments += ["-addext", "subjectAltName=\(alternativeNames)"]
        }
        _ = try run("openssl", arguments)
        let result = inspect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: directory.path("cert.der")))))
        #expect(result.status == code(OTA_OK), "\(result.detail)")
        let backend = String(cString: ota_backend_name())
        #expect(result.info.has_ota_agent_name == example.expected, "backend \(backend)")
    }
}

/// SHA-256 of a byte string in one call, as hex.
private func sha256Hex(_ bytes: [UInt8]) -> String {
    var digest = [UInt8](repeating: 0, count: 32)
    let status = bytes.withUnsafeBufferPointer { ota_sha256($0.baseAddress, $0.count, &digest) }
    return status == code(OTA_OK) ? hexString(digest) : "status \(status)"
}

private let emptyDigest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
private let abcDigest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
private let twoBlockMessage = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
private let twoBlockDigest = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
private let millionADigest = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"

@Suite("credentials.c: ota_sha256 and the incremental API")
struct Sha256Tests {
    @Test("one call matches the FIPS 180-2 vectors",
          arguments: [("", emptyDigest), ("abc", abcDigest), (twoBlockMessage, twoBlockDigest)])
    func oneShot(message: String, expected: String) {
        #expect(sha256Hex(Array(message.utf8)) == expected)
    }

    @Test("incremental hashing in pieces matches the vectors", arguments: [1, 3, 7, 64, 1000])
    func incremental(piece: Int) throws {
        for (message, expected) in [("", emptyDigest), ("abc", abcDigest), (twoBlockMessage, twoBlockDigest)] {
            let bytes = Array(message.utf8)
            let context = try #require(ota_sha256_new())
            defer { ota_sha256_free(context) }
            for start in stride(from: 0, to: bytes.count, by: piece) {
                let chunk = Array(bytes[start..<min(start + piece, bytes.count)])
                #expect(ota_sha256_update(context, chunk, chunk.count) == code(OTA_OK))
            }
            var digest = [UInt8](repeating: 0, count: 32)
            #expect(ota_sha256_final(context, &digest) == code(OTA_OK))
            #expect(hexString(digest) == expected, "\(message) in pieces of \(piece)")
        }
    }

    @Test("a million 'a' in 1000-byte updates")
    func millionA() throws {
        let context = try #require(ota_sha256_new())
        defer { ota_sha256_free(context) }
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 {
            #expect(ota_sha256_update(context, chunk, chunk.count) == code(OTA_OK))
        }
        var digest = [UInt8](repeating: 0, count: 32)
        #expect(ota_sha256_final(context, &digest) == code(OTA_OK))
        #expect(hexString(digest) == millionADigest)
    }

    @Test("NULL data with bytes, a NULL context or a NULL digest are usage errors")
    func nullArguments() throws {
        var digest = [UInt8](repeating: 0, count: 32)
        #expect(ota_sha256(nil, 0, &digest) == code(OTA_OK))
        #expect(hexString(digest) == emptyDigest)
        #expect(ota_sha256(nil, 1, &digest) == code(OTA_ERR_USAGE))
        let abc = Array("abc".utf8)
        #expect(ota_sha256(abc, abc.count, nil) == code(OTA_ERR_USAGE))

        #expect(ota_sha256_update(nil, abc, abc.count) == code(OTA_ERR_USAGE))
        #expect(ota_sha256_final(nil, &digest) == code(OTA_ERR_USAGE))
        ota_sha256_free(nil)

        let context = try #require(ota_sha256_new())
        defer { ota_sha256_free(context) }
        #expect(ota_sha256_update(context, nil, 1) == code(OTA_ERR_USAGE))
        #expect(ota_sha256_update(context, nil, 0) == code(OTA_OK))
        #expect(ota_sha256_final(context, nil) == code(OTA_ERR_USAGE))
        #expect(ota_sha256_update(context, abc, abc.count) == code(OTA_OK))
        #expect(ota_sha256_final(context, &digest) == code(OTA_OK))
        #expect(hexString(digest) == abcDigest)
    }
}

/// How one file argument of `ota_server_config_new` is made.
enum CredentialFile: Sendable, CustomStringConvertible {
    case sample(String)
    case missing
    case directory
    case fakeKey

    var description: String {
        switch self {
        case .sample(let name): name
        case .missing: "a missing file"
        case .directory: "a directory"
        case .fakeKey: "a PEM-shaped file that is not a key"
        }
    }

    /// A marker in the fake key's body: it must never come back in a detail.
    static let fakeKeySecret = "U0VDUkVUU0VDUkVUU0VDUkVUU0VDUkVUU0VDUkVU"

    func path(in directory: TemporaryDirectory) throws -> String {
        switch self {
        case .sample(let name): return Fixture.path(name)
        case .missing: return directory.path("no-such-file.pem")
        case .directory: return directory.url.path
        case .fakeKey:
            let text = "-----BEGIN PRIVATE KEY-----\n\(Self.fakeKeySecret)\n-----END PRIVATE KEY-----\n"
            return try directory.write("fake.key", Array(text.utf8))
        }
    }
}

/// A pair that `ota_server_config_new` must refuse, and what the detail must say.
struct RefusedPair: Sendable, CustomTestStringConvertible {
    let certificate: CredentialFile
    let key: CredentialFile
    /// Texts the detail must contain; "$cert" and "$key" stand for the paths passed.
    let mentions: [String]

    var testDescription: String { "certificate \(certificate), key \(key)" }
}

private let refusedPairs: [RefusedPair] = [
    RefusedPair(certificate: .sample("agent-rsa.crt"), key: .sample("agent-ec.key"), mentions: ["do not match"]),
    RefusedPair(certificate: .sample("agent-ec.crt"), key: .sample("agent-rsa.key"), mentions: ["do not match"]),
    RefusedPair(certificate: .sample("agent-ec.crt"), key: .sample("device.key"), mentions: ["do not match"]),
    RefusedPair(certificate: .sample("agent-rsa.crt"), key: .missing, mentions: ["$key"]),
    RefusedPair(certificate: .missing, key: .sample("agent-rsa.key"), mentions: ["$cert"]),
    RefusedPair(certificate: .sample("agent-ec.crt"), key: .directory, mentions: ["$key"]),
    RefusedPair(certificate: .sample("agent-ec.crt"), key: .fakeKey, mentions: ["$key"]),
    RefusedPair(certificate: .sample("agent-ec.key"), key: .sample("agent-ec.key"), mentions: ["$cert"]),
    RefusedPair(certificate: .sample("agent-ec.crt"), key: .sample("agent-ec.crt"), mentions: ["$key"]),
]

/// Pieces of every sample private key that would show key material leaking into a message.
private func keyMaterial() throws -> [String] {
    var pieces = [CredentialFile.fakeKeySecret]
    for name in ["agent-rsa.key", "agent-ec.key", "device.key"] {
        for line in try Fixture.text(name).split(separator: "\n") where !line.hasPrefix("-----") {
            // Any 12 consecutive base64 characters of the key would be a leak.
            var start = line.startIndex
            while let end = line.index(start, offsetBy: 12, limitedBy: line.endIndex) {
                pieces.append(String(line[start..<end]))
                start = line.index(start, offsetBy: 6)
            }
        }
    }
    return pieces
}

@Suite("credentials.c: ota_server_config_new")
struct ServerConfigTests {
    @Test("RSA and ECDSA pairs load; the certificate is the agent's",
          arguments: [("agent-rsa.crt", "agent-rsa.key"), ("agent-ec.crt", "agent-ec.key")])
    func loads(certificate: String, key: String) throws {
        var status: Int32 = 12345
        var detail = DetailBuffer()
        let config = ota_server_config_new(Fixture.path(certificate), Fixture.path(key), &status,
                                           &detail.storage, detail.storage.count)
        defer { ota_server_config_free(config) }
        #expect(config != nil, "\(detail.text)")
        #expect(status == code(OTA_OK))

        var info = ota_cert_info()
        #expect(ota_server_config_certificate(config, &info) == code(OTA_OK))
        #expect(string(fromCArray: info.subject) == "CN=ota-agent")
        #expect(info.has_ota_agent_name == 1)
        let der = try Fixture.derFromPEM(certificate)
        var digest = [UInt8](repeating: 0, count: 32)
        #expect(ota_sha256(der, der.count, &digest) == code(OTA_OK))
        #expect(withUnsafeBytes(of: info.sha256) { Array($0) } == digest)
        #expect(info.not_before < info.not_after)
    }

    @Test("a refused pair fails with a config or io status and a detail naming the cause, never the key",
          arguments: refusedPairs)
    func refuses(_ pair: RefusedPair) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let certificatePath = try pair.certificate.path(in: directory)
        let keyPath = try pair.key.path(in: directory)

        var status: Int32 = 12345
        var detail = DetailBuffer()
        let config = ota_server_config_new(certificatePath, keyPath, &status, &detail.storage,
                                           detail.storage.count)
        ota_server_config_free(config)
        #expect(config == nil)
        #expect(status == code(OTA_ERR_CONFIG) || status == code(OTA_ERR_IO), "status \(status)")

        let text = detail.text
        for mention in pair.mentions {
            let wanted = mention.replacingOccurrences(of: "$cert", with: certificatePath)
                .replacingOccurrences(of: "$key", with: keyPath)
            #expect(text.contains(wanted), "detail: \(text)")
        }
        #expect(!text.contains("PRIVATE KEY"), "detail: \(text)")
        for piece in try keyMaterial() {
            #expect(!text.contains(piece), "detail leaks key material: \(text)")
        }
    }

    @Test("NULL paths are a usage error with a detail; NULL status and detail are allowed")
    func nullArguments() {
        var status: Int32 = 0
        var detail = DetailBuffer()
        let withoutCertificate = ota_server_config_new(nil, Fixture.path("agent-ec.key"), &status,
                                                       &detail.storage, detail.storage.count)
        #expect(withoutCertificate == nil)
        #expect(status == code(OTA_ERR_USAGE))
        #expect(!detail.text.isEmpty)
        let withoutKey = ota_server_config_new(Fixture.path("agent-ec.crt"), nil, &status, nil, 0)
        #expect(withoutKey == nil)
        #expect(status == code(OTA_ERR_USAGE))

        let config = ota_server_config_new(Fixture.path("agent-ec.crt"), Fixture.path("agent-ec.key"), nil, nil, 0)
        #expect(config != nil)
        var info = ota_cert_info()
        #expect(ota_server_config_certificate(config, nil) == code(OTA_ERR_USAGE))
        #expect(ota_server_config_certificate(nil, &info) == code(OTA_ERR_USAGE))
        ota_server_config_free(config)
        ota_server_config_free(nil)
    }
}

@Suite("credentials.c: ota_key_pair_check")
struct KeyPairCheckTests {
    /// (certificate, key, status, matches)
    @Test("a pair matches; another key is a definite no; a missing file is a failure to answer",
          arguments: [("agent-rsa.crt", "agent-rsa.key", OTA_OK, 1), ("agent-ec.crt", "agent-ec.key", OTA_OK, 1),
                      ("agent-rsa.crt", "agent-ec.key", OTA_OK, 0),
                      ("dice-auth/client.crt", "dice-auth/other-client.key", OTA_OK, 0),
                      ("agent-rsa.crt", "no-such.key", OTA_ERR_IO, 0)])
    func pairs(certificate: String, key: String, status: ota_status, matches: Int32) {
        var matched: Int32 = 7
        var detail = DetailBuffer()
        let result = ota_key_pair_check(Fixture.path(certificate), Fixture.path(key), &matched,
                                        &detail.storage, detail.storage.count)
        #expect(result == code(status), "\(detail.text)")
        #expect(matched == matches, "\(detail.text)")
        if matches == 0 && status == OTA_OK {
            #expect(detail.text.contains(key) && detail.text.contains("do not match"), "\(detail.text)")
        }
    }

    @Test("NULL paths or answer are usage errors")
    func nullArguments() {
        var matched: Int32 = 0
        #expect(ota_key_pair_check(nil, Fixture.path("agent-ec.key"), &matched, nil, 0) == code(OTA_ERR_USAGE))
        #expect(ota_key_pair_check(Fixture.path("agent-ec.crt"), nil, &matched, nil, 0) == code(OTA_ERR_USAGE))
        #expect(ota_key_pair_check(Fixture.path("agent-ec.crt"), Fixture.path("agent-ec.key"), nil, nil, 0)
                == code(OTA_ERR_USAGE))
    }
}
