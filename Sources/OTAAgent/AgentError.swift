/// An error the agent reports to whoever started it: a kind that decides the exit code, and a
/// message that names the setting or phase and the cause.
public struct AgentError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What went wrong, broadly. Grows by adding static members, never by breaking callers.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        fileprivate let name: String

        /// A setting is missing or unusable, or the command line is wrong.
        public static let configuration = Kind(name: "configuration")
        /// Something that should not fail did (out of memory, a library refusing a call).
        public static let `internal` = Kind(name: "internal")

        public var description: String { name }
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    static func configuration(_ message: String) -> AgentError {
        AgentError(.configuration, message)
    }

    public var description: String { message }
}
