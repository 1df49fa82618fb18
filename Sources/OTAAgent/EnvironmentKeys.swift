/// Every environment variable the agent reads, in one place. The first four are the names
/// today's deployments already set; they must never change.
public enum EnvironmentKey: String, CaseIterable, Sendable {
    case firmwarePath = "NEW_FIRMWARE_PATH"
    case diceAuthURL = "DICE_AUTH_URL"
    case certificatePath = "SERVER_CRT_PATH"
    case keyPath = "SERVER_KEY_PATH"
    case expectedSHA256 = "NEW_FIRMWARE_SHA256"
    case allowAnyImage = "OTA_ALLOW_ANY_IMAGE"
    case imageInPlace = "OTA_IMAGE_IN_PLACE"
    case port = "OTA_PORT"
    case bindAddress = "OTA_BIND"
    case metricsPort = "OTA_METRICS_PORT"
    case metricsBindAddress = "OTA_METRICS_BIND"
    case mode = "OTA_MODE"
    case timeout = "OTA_TIMEOUT"
    case maxConcurrent = "OTA_MAX_CONCURRENT"
    case maxHandshakes = "OTA_MAX_HANDSHAKES"
    case maxPerAddress = "OTA_MAX_PER_ADDRESS"
    case maxUnattested = "OTA_MAX_UNATTESTED"
    case gracePeriod = "OTA_GRACE_PERIOD"
    case deadlineScale = "OTA_DEADLINE_SCALE"
    case handshakeTimeout = "OTA_HANDSHAKE_TIMEOUT"
    case certificateTimeout = "OTA_CERTIFICATE_TIMEOUT"
    case diceAuthTimeout = "OTA_DICE_AUTH_TIMEOUT"
    case stallTimeout = "OTA_STALL_TIMEOUT"
    case transferTimeout = "OTA_TRANSFER_TIMEOUT"
    case closeTimeout = "OTA_CLOSE_TIMEOUT"
    case diceAuthCAPath = "DICE_AUTH_CA_PATH"
    case diceAuthClientCertificatePath = "DICE_AUTH_CLIENT_CERT_PATH"
    case diceAuthClientKeyPath = "DICE_AUTH_CLIENT_KEY_PATH"
    case diceAuthConcurrency = "OTA_DICE_AUTH_CONCURRENCY"
    case tlsCiphers = "OTA_TLS_CIPHERS"
    case tlsMinVersion = "OTA_TLS_MIN_VERSION"
    case logLevel = "OTA_LOG_LEVEL"
    case logFormat = "OTA_LOG_FORMAT"
    case progressInterval = "OTA_PROGRESS_INTERVAL"
    case resultFile = "OTA_RESULT_FILE"
    case requireProof = "OTA_REQUIRE_PROOF"
    case expectedDevices = "OTA_EXPECTED_DEVICES"
    case deviceAddress = "OTA_DEVICE_ADDRESS"
}

extension Dictionary where Key == String, Value == String {
    /// The value of an agent variable; an empty value counts as unset.
    subscript(key: EnvironmentKey) -> String? {
        guard let value = self[key.rawValue], !value.isEmpty else { return nil }
        return value
    }
}
