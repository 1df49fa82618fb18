import OTACore

/// The agent's version and the TLS backend it was built with.
public enum AgentVersion {
    public static let number = "0.1.0"

    public static var text: String {
        "\(number) (\(String(cString: ota_backend_name())): \(String(cString: ota_backend_version())))"
    }
}
