/// A line of `key=value` fields after some plain words, as the agent logs and the simulator and
/// verifier report:
///
///     2026-12-04T17:10:00.123Z info session-end device=127.0.0.1:5 cert="CN=x, O=y" bytes=0
///
/// Values may be double-quoted with backslash escapes. The plain words are the leading tokens
/// without `=` (for the agent: time, level, event).
struct KeyValueLine: Sendable, CustomStringConvertible {
    let text: String
    let words: [String]
    let fields: [String: String]

    init(_ text: String) {
        self.text = text
        var words: [String] = []
        var fields: [String: String] = [:]
        for token in Self.tokens(of: text) {
            if let equals = token.firstIndex(of: "="), equals != token.startIndex {
                let key = String(token[..<equals])
                fields[key] = Self.unquoted(String(token[token.index(after: equals)...]))
            } else {
                words.append(token)
            }
        }
        self.words = words
        self.fields = fields
    }

    subscript(key: String) -> String? { fields[key] }

    /// An integer field, nil if absent or not a number.
    func integer(_ key: String) -> Int? { fields[key].flatMap { Int($0) } }

    var description: String { text }

    /// Splits at spaces outside double quotes; quotes and escapes stay in the tokens.
    private static func tokens(of text: String) -> [String] {
        var tokens: [String] = []
        var current = ""
        var quoted = false
        var escaped = false
        for character in text {
            if escaped {
                escaped = false
            } else if character == "\\" && quoted {
                escaped = true
            } else if character == "\"" {
                quoted.toggle()
            } else if character == " " && !quoted {
                if !current.isEmpty { tokens.append(current) }
                current = ""
                continue
            }
            current.append(character)
        }
        if !current.isEmpty { tokens.append(current) }
        return tokens
    }

    private static func unquoted(_ value: String) -> String {
        guard value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") else { return value }
        var result = ""
        var escaped = false
        for character in value.dropFirst().dropLast() {
            if escaped {
                result.append(character == "n" ? "\n" : character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else {
                result.append(character)
            }
        }
        return result
    }
}

/// One line of the agent's log: `time level event key=value...`.
struct LogLine: Sendable, CustomStringConvertible {
    let line: KeyValueLine

    init?(_ text: String) {
        let line = KeyValueLine(text)
        guard line.words.count >= 3 else { return nil }
        self.line = line
    }

    var level: String { line.words[1] }
    var event: String { line.words[2] }
    subscript(key: String) -> String? { line[key] }
    func integer(_ key: String) -> Int? { line.integer(key) }
    var description: String { line.text }
}
