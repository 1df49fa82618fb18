import Foundation
import OTACore

/// One line of `ota-agent check`.
public struct CheckResult: Sendable, Equatable {
    public enum Mark: String, Sendable {
        case ok
        /// Worth knowing; the agent would serve all the same (it warns at start too).
        case warn
        /// The agent would refuse to start, or devices would not get the image.
        case fail = "FAIL"
    }

    public let name: String
    public let mark: Mark
    public let detail: String

    public init(_ name: String, _ mark: Mark, _ detail: String) {
        self.name = name
        self.mark = mark
        self.detail = detail
    }

    /// `{"check":"image","result":"ok","detail":"..."}`, for `--log-format json`.
    public var jsonLine: String {
        JSONValue.object([("check", .string(name)), ("result", .string(mark.rawValue)),
                          ("detail", .string(detail))]).compact
    }

    /// `{"summary":"...","failed":0,"warnings":1}`, the last line in JSON.
    public static func summaryJSONLine(_ summary: String, failed: Int, warnings: Int) -> String {
        JSONValue.object([("summary", .string(summary)), ("failed", .integer(failed)),
                          ("warnings", .integer(warnings))]).compact
    }
}

/// `ota-agent check`: everything `Agent.start()` checks, and what it cannot (Dice-Auth
/// answering, the certificate's dates as a failure), without serving. Each check runs whatever
/// the others found, so one run lists every problem. Bounded in time: all checks are local but
/// the Dice-Auth probe, which takes at most `DiceAuthProbe.longest`. Nothing secret is printed:
/// files are named by path, certificates by subject and fingerprint.
public struct PreflightCheck {
    let configuration: AgentConfiguration
    /// An agent that is never started: its own start-up checks, run one by one.
    private let agent: Agent
    private let warnings = CapturedWarnings()
    /// Certificates expiring sooner than this are a warning.
    static let expiryWarning: Int64 = 30 * 86_400

    public init(configuration: AgentConfiguration) {
        self.configuration = configuration
        agent = Agent(configuration: configuration,
                      logger: Logger(level: .warning, format: .json, sink: warnings.sink))
    }

    /// Runs every check in order, handing each result to `report` as soon as it is known.
    @discardableResult
    public func run(report: (CheckResult) -> Void = { _ in }) -> [CheckResult] {
        var results: [CheckResult] = []
        let steps: [() -> [CheckResult]] = [
            settings, image, credentials, devicePolicy, diceAuthFiles, diceAuth, port, resultFile,
        ]
        for step in steps {
            for result in step() {
                report(result)
                results.append(result)
            }
        }
        return results
    }

    private func settings() -> [CheckResult] {
        let port = configuration.port == 0 ? "any free port" : "port \(configuration.port)"
        return [CheckResult("settings", .ok, "the required settings are given (image, Dice-Auth URL, certificate, "
            + "key); mode \(configuration.mode.rawValue), \(port)")]
    }

    private func image() -> [CheckResult] {
        do throws(AgentError) {
            let image = try FirmwareImage(path: configuration.imagePath,
                                          settingName: configuration.settingNames[.firmwarePath])
            let digest = try image.sha256()
            try agent.checkExpectedDigest(digest, of: image)
            var detail: String
            if configuration.allowAnyImage {
                detail = "\(image.path): format not checked (\(configuration.settingNames[.allowAnyImage]))"
            } else {
                let format = try image.checkAppFormat()
                detail = "\(image.path): ESP-IDF app image for \(format.chip), \(format.project) "
                    + "\(format.version) (IDF \(format.idfVersion))"
            }
            detail += ", \(image.size) bytes, sha256 \(digest)"
            if configuration.expectedSHA256 != nil {
                detail += " (as \(configuration.settingNames[.expectedSHA256]) says)"
            }
            return [CheckResult("image", .ok, detail)]
        } catch {
            return [CheckResult("image", .fail, error.message)]
        }
    }

    /// The pair, then the certificate's name, dates and the key file's mode. The name and dates
    /// are read from the certificate file alone when the pair does not load.
    private func credentials() -> [CheckResult] {
        var results: [CheckResult] = []
        var identity: (CertificateIdentity, Bool)?
        do throws(AgentError) {
            let credentials = try ServerCredentials(certificatePath: configuration.certificatePath,
                                                    keyPath: configuration.keyPath, tls: configuration.tls,
                                                    names: configuration.settingNames)
            let certificate = credentials.certificate
            identity = (certificate, credentials.certificateNamesOTAAgent)
            results.append(CheckResult("certificate-and-key", .ok, "\(certificate.subject) (fp "
                + "\(certificate.shortFingerprint)) and its key load and match; "
                + "TLS \(configuration.tls.minimumVersion.rawValue) and up, "
                + "\(credentials.ciphers.split(separator: ":").count) suites"))
        } catch {
            results.append(CheckResult("certificate-and-key", .fail, error.message))
            identity = Self.inspectCertificateFile(configuration.certificatePath)
        }
        guard let (certificate, namesAgent) = identity else {
            results.append(CheckResult("certificate-name", .fail, "cannot read a certificate from "
                + "\(configuration.certificatePath) (see certificate-and-key)"))
            results.append(keyPermissions())
            return results
        }
        results.append(namesAgent
            ? CheckResult("certificate-name", .ok, "names ota-agent, as devices check")
            : CheckResult("certificate-name", .fail, "names neither CN nor DNS ota-agent: field devices refuse it"))
        results.append(Self.dates(notBefore: certificate.notBefore, notAfter: certificate.notAfter,
                                  now: Int64(Date().timeIntervalSince1970)))
        results.append(keyPermissions())
        if configuration.tls.minimumVersion == .tls13 {
            results.append(CheckResult("tls-policy", .warn,
                "minimum TLS 1.3: TLS 1.2-only field devices (all of today's) are locked out"))
        }
        return results
    }

    /// The validity dates against `now`: outside them a failure (devices that keep time refuse
    /// the certificate; the agent itself only warns, since devices without a clock accept it),
    /// within 30 days of the end a warning.
    static func dates(notBefore: Int64, notAfter: Int64, now: Int64) -> CheckResult {
        let range = "valid from \(Logger.utc(seconds: notBefore)) to \(Logger.utc(seconds: notAfter))"
        if now < notBefore {
            return CheckResult("certificate-dates", .fail, "not valid yet: \(range)")
        }
        if now > notAfter {
            return CheckResult("certificate-dates", .fail, "expired: \(range)")
        }
        let days = (notAfter - now) / 86_400
        if notAfter - now < expiryWarning {
            return CheckResult("certificate-dates", .warn, "\(range): expires in \(days) days")
        }
        return CheckResult("certificate-dates", .ok, "\(range) (\(days) days left)")
    }

    private func keyPermissions() -> CheckResult {
        let before = warnings.reasons.count
        agent.warnAboutKeyPermissions()
        if let reason = warnings.reasons.dropFirst(before).first {
            return CheckResult("key-permissions", .warn, "\(configuration.keyPath): \(reason)")
        }
        return CheckResult("key-permissions", .ok, "\(configuration.keyPath) is not open to group or others")
    }

    private func devicePolicy() -> [CheckResult] {
        do throws(AgentError) {
            try agent.checkProofSupport()
        } catch {
            return [CheckResult("device-policy", .fail, error.message)]
        }
        let policy = configuration.devicePolicy
        var parts = [policy.requireProof ? "proof of possession required" : "legacy devices served"]
        parts.append(policy.expectedDevices.isEmpty ? "any certificate"
            : "\(policy.expectedDevices.count) expected certificate(s)")
        parts.append(policy.allowedPeers.isEmpty ? "any address" : "\(policy.allowedPeers.count) allowed address(es)")
        return [CheckResult("device-policy", .ok, parts.joined(separator: ", "))]
    }

    /// The Dice-Auth CA and client certificate files, when any are given.
    private func diceAuthFiles() -> [CheckResult] {
        let settings = configuration.diceAuth
        guard settings.caPath != nil || settings.clientCertificatePath != nil || settings.clientKeyPath != nil else {
            return []
        }
        let before = warnings.reasons.count
        do throws(AgentError) {
            try agent.checkDiceAuthFiles()
        } catch {
            return [CheckResult("dice-auth-files", .fail, error.message)]
        }
        if let reason = warnings.reasons.dropFirst(before).first {
            return [CheckResult("dice-auth-files", .warn, reason)]
        }
        var files: [String] = []
        if let ca = settings.caPath { files.append("CA \(ca)") }
        if let certificate = settings.clientCertificatePath {
            files.append("client certificate \(certificate) with its key")
        }
        return [CheckResult("dice-auth-files", .ok, files.joined(separator: ", ") + ": readable")]
    }

    private func diceAuth() -> [CheckResult] {
        var results: [CheckResult] = []
        let before = warnings.reasons.count
        agent.warnAboutPlainDiceAuth()
        if let reason = warnings.reasons.dropFirst(before).first {
            results.append(CheckResult("dice-auth-https", .warn, reason))
        }
        let url = RedactedURL.text(configuration.diceAuthURL)
        let timeout = min(DiceAuthProbe.longest, configuration.deadlines.diceAuth)
        switch DiceAuthProbe.probe(url: url, settings: configuration.diceAuth, timeout: timeout) {
        case .answered(let status, let milliseconds) where DiceAuthProbe.isUnavailable(status):
            results.append(CheckResult("dice-auth", .fail, "\(url) answered HTTP \(status) in \(milliseconds) ms: "
                + "the service is unavailable; devices would get no verdict"))
        case .answered(let status, let milliseconds) where status == 200:
            results.append(CheckResult("dice-auth", .fail, "\(url) answered HTTP 200 in \(milliseconds) ms to an "
                + "empty request: 200 means verified, so this endpoint looks like it would approve any device"))
        case .answered(let status, let milliseconds) where (300...399).contains(status):
            results.append(CheckResult("dice-auth", .fail, "\(url) answered HTTP \(status) (a redirect) in "
                + "\(milliseconds) ms: the agent follows no redirect, so every device would be refused; "
                + "give the URL it points to"))
        case .answered(let status, let milliseconds):
            results.append(CheckResult("dice-auth", .ok, "\(url) answered HTTP \(status) in \(milliseconds) ms "
                + "(an empty request: any answer shows it is there)"))
        case .failed(let reason):
            results.append(CheckResult("dice-auth", .fail, "\(url): \(reason)"))
        }
        return results
    }

    /// Binds the port the way the agent does, then the metrics port while the first is held
    /// (the two must not clash), and releases both.
    private func port() -> [CheckResult] {
        var results: [CheckResult] = []
        let address = configuration.bindAddress ?? "every address"
        var held: Listener?
        do throws(AgentError) {
            let listener = try Listener(bindAddress: configuration.bindAddress, port: configuration.port,
                                        backlog: 1, settingName: configuration.listenerSettingName)
            held = listener
            let which = configuration.port == 0 ? "an ephemeral port (\(listener.port) this time)"
                : "port \(listener.port)"
            results.append(CheckResult("port", .ok, "\(which) on \(address) can be bound (bound and released)"))
        } catch {
            results.append(CheckResult("port", .fail, error.message))
        }
        results += metricsPort()
        held?.close()
        return results
    }

    /// The metrics endpoint's port, bound the way the agent binds it, and its exposure.
    private func metricsPort() -> [CheckResult] {
        guard let port = configuration.metricsPort else { return [] }
        let address = configuration.metricsBindAddress
        do throws(AgentError) {
            let listener = try Listener(bindAddress: address, port: port, backlog: 1,
                                        settingName: configuration.metricsListenerSettingName)
            listener.close()
        } catch {
            return [CheckResult("metrics-port", .fail, error.message)]
        }
        if !(PeerAddress(address)?.isLoopback ?? false) {
            return [CheckResult("metrics-port", .warn, "\(address) port \(port) can be bound, but the endpoint has "
                + "no authentication: anyone who can reach this address reads the metrics")]
        }
        return [CheckResult("metrics-port", .ok, "\(address) port \(port) can be bound (bound and released)")]
    }

    private func resultFile() -> [CheckResult] {
        guard let path = configuration.resultFilePath else { return [] }
        do throws(AgentError) {
            try ResultFile.checkWritable(path, inputs: configuration.inputFiles,
                                         name: configuration.settingNames[.resultFile])
            return [CheckResult("result-file", .ok, "\(path) can be written")]
        } catch {
            return [CheckResult("result-file", .fail, error.message)]
        }
    }

    /// The first certificate of a PEM file, inspected by the TLS library: its identity and
    /// whether it names ota-agent. Nil when there is none to read.
    static func inspectCertificateFile(_ path: String) -> (CertificateIdentity, Bool)? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        guard let begin = text.range(of: "-----BEGIN CERTIFICATE-----"),
              let end = text.range(of: "-----END CERTIFICATE-----", range: begin.upperBound..<text.endIndex),
              let der = Data(base64Encoded: String(text[begin.upperBound..<end.lowerBound]),
                             options: .ignoreUnknownCharacters)
        else { return nil }
        var info = ota_cert_info()
        var detail = [CChar](repeating: 0, count: 256)
        let bytes = [UInt8](der)
        guard ota_cert_inspect(bytes, bytes.count, &info, &detail, detail.count) == OTA_OK.rawValue else { return nil }
        return (CertificateIdentity(info), info.has_ota_agent_name != 0)
    }
}

/// The `reason` of each warning the agent's start-up checks log, in order.
private final class CapturedWarnings: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []

    var sink: Logger.Sink {
        { [self] line in
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            let reason = object?["reason"] as? String ?? line
            lock.withLock { stored.append(reason) }
        }
    }

    var reasons: [String] { lock.withLock { stored } }
}
