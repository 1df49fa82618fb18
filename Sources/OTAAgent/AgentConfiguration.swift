import Foundation

/// How long the agent serves.
public enum AgentMode: String, Sendable, CaseIterable {
    /// Serve until one device has been updated, then exit (today's orchestrator).
    case once
    /// Serve devices until stopped by SIGINT or SIGTERM.
    case serve
}

/// Everything the agent needs, parsed once and never changed. Later layers receive the parts
/// they need, never the environment.
public struct AgentConfiguration: Sendable {
    public var imagePath: String
    public var diceAuthURL: String
    public var certificatePath: String
    public var keyPath: String
    /// The image's SHA-256, lower-case hex: at start, a file whose digest differs is refused.
    public var expectedSHA256: String?
    /// Serve a file of any format: no ESP-IDF app image check (size and SHA-256 still logged).
    public var allowAnyImage = false
    /// Serve the file at the image path itself rather than a private copy made at start (see
    /// `ota_image_make_private`): a change to the file then stops the agent.
    public var imageInPlace = false
    public var port: UInt16 = 4433
    /// A numeric address to bind, or nil for every address (IPv6 and IPv4).
    public var bindAddress: String?
    /// The port of the Prometheus endpoint (`/metrics`, `/healthz`, `/readyz`); 0 for any free
    /// port, nil (the default) for none.
    public var metricsPort: UInt16?
    /// The numeric address the metrics endpoint binds; loopback unless asked otherwise.
    public var metricsBindAddress = "127.0.0.1"
    public var mode: AgentMode = .once
    /// With no device updated by then, the run ends with `.timedOut`. Nil: wait for ever.
    public var timeout: Duration?
    public var maxConcurrent = 64
    /// TLS handshakes computing at once; devices beyond wait their turn in arrival order.
    public var maxHandshakes = AgentConfiguration.defaultMaxHandshakes
    /// Connections one client address may hold at once; more are refused with a reset.
    public var maxPerAddress = 8
    /// Connections that have not yet delivered a certificate; beyond it the oldest silent one
    /// is closed to make room, or, when none is silent, the newcomer is refused.
    public var maxUnattested = 64
    /// How long transfers in flight may go on once the agent stops accepting.
    public var gracePeriod: Duration = .seconds(60)
    public var deadlines = Deadlines()
    public var diceAuth = DiceAuthSettings()
    public var tls = TLSPolicySettings()
    /// Proof of possession, and the device (fingerprint, address) a job is for.
    public var devicePolicy = DevicePolicy()
    /// `text` (key=value lines) or `json` (one object per line) for the log on standard error.
    public var logFormat: LogFormat = .text
    /// Off a terminal, the least time between two `progress` lines of one transfer (each at a
    /// tenth of the image); zero logs every tenth. A transfer shorter than this logs none: its
    /// `session-end` line says the rest.
    public var progressInterval: Duration = .seconds(1)
    /// Where the CLI writes its JSON summary of the run on exit; checked writable at start.
    public var resultFilePath: String?
    public var logLevel: LogLevel = .info
    /// How messages name each setting: as the command line or the environment gave it.
    public var settingNames = SettingNames()

    /// Eight per core: enough to keep the cores busy while handshakes wait on slow devices'
    /// round trips, few enough that each finishes in milliseconds of CPU.
    public static var defaultMaxHandshakes: Int {
        8 * max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    /// The files the agent reads, each with the setting that names it.
    var inputFiles: [(setting: String, path: String)] {
        let files: [(EnvironmentKey, String?)] = [
            (.firmwarePath, imagePath), (.certificatePath, certificatePath), (.keyPath, keyPath),
            (.diceAuthCAPath, diceAuth.caPath),
            (.diceAuthClientCertificatePath, diceAuth.clientCertificatePath),
            (.diceAuthClientKeyPath, diceAuth.clientKeyPath),
        ]
        return files.compactMap { key, path in path.map { (setting: settingNames[key], path: $0) } }
    }

    /// The settings a failure to bind the device port is about.
    var listenerSettingName: String {
        let port = settingNames[.port]
        return bindAddress == nil ? port : "\(settingNames[.bindAddress]) / \(port)"
    }

    /// The settings a failure to bind the metrics port is about.
    var metricsListenerSettingName: String { Self.metricsListenerSettingName(settingNames) }

    static var defaultMetricsListenerSettingName: String { metricsListenerSettingName(SettingNames()) }

    private static func metricsListenerSettingName(_ names: SettingNames) -> String {
        "\(names[.metricsBindAddress]) / \(names[.metricsPort])"
    }

    public init(imagePath: String, diceAuthURL: String, certificatePath: String, keyPath: String) {
        self.imagePath = imagePath
        self.diceAuthURL = diceAuthURL
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }
}

/// How a message names a setting: the way it was given, the flag from the command line or the
/// variable from the environment, so the operator looks in the right place. A setting not given
/// (a default, or a configuration filled in code) is named both ways, "VARIABLE (--flag)", as
/// either would set it.
public struct SettingNames: Sendable, Equatable {
    private var given: [EnvironmentKey: String] = [:]

    public init() {}

    /// Records that `key`'s setting came as `name` (its flag or its variable).
    mutating func record(_ key: EnvironmentKey, givenAs name: String) { given[key] = name }

    public subscript(key: EnvironmentKey) -> String {
        if let name = given[key] { return name }
        guard let flag = ConfigurationParser.settings.first(where: { $0.key == key })?.flag else {
            return key.rawValue
        }
        return "\(key.rawValue) (\(flag))"
    }
}

/// How the agent talks to Dice-Auth.
extension SettingNames: CustomDebugStringConvertible {
    /// The settings given and how, sorted: a dictionary's own order differs from one instance
    /// to the next, and two equal configurations should read the same.
    public var debugDescription: String {
        "SettingNames(" + given.map { "\($0.key.rawValue): \($0.value)" }.sorted().joined(separator: ", ") + ")"
    }
}

public struct DiceAuthSettings: Sendable, Equatable {
    /// A PEM file of CA certificates to trust for an https Dice-Auth, instead of the system's.
    public var caPath: String?
    /// The agent's client certificate (PEM) for mutual TLS to Dice-Auth; with `clientKeyPath`.
    public var clientCertificatePath: String?
    /// The private key (PEM) of `clientCertificatePath`; never logged.
    public var clientKeyPath: String?
    /// Requests in flight at once; the rest queue in arrival order.
    public var concurrency = 1
    public var retry = RetryPolicy()

    public init() {}
}

/// The lowest TLS protocol version the agent accepts.
public enum TLSVersion: String, Sendable, CaseIterable {
    /// What the field devices speak; the default.
    case tls12 = "1.2"
    /// Locks out every TLS 1.2-only device; only the OpenSSL backend has TLS 1.3.
    case tls13 = "1.3"
}

/// A TLS policy stricter than the built-in one (see `ota_server_config_new_with_policy`).
public struct TLSPolicySettings: Sendable, Equatable {
    /// Suite names separated by ':' or ',', each one of the default policy's; nil for all.
    public var ciphers: String?
    public var minimumVersion: TLSVersion = .tls12

    public init() {}
}
