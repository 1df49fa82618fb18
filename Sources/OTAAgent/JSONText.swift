/// JSON as the agent writes it: JSON log lines and the result file. Written by hand so that
/// members keep the order given (Foundation's serializer sorts or scrambles them) and a log line
/// costs no more than its text.
enum JSONValue: Sendable, Equatable {
    case string(String)
    /// A number's JSON text as it stands, e.g. "42" or "0.5".
    case number(String)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([(String, JSONValue)])

    static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        lhs.compact == rhs.compact
    }

    static func integer(_ value: some BinaryInteger) -> JSONValue { .number(String(value)) }

    /// A string, or null when absent.
    static func optional(_ value: String?) -> JSONValue { value.map { .string($0) } ?? .null }

    /// On one line, no spaces: a log line.
    var compact: String {
        var text = ""
        write(into: &text, indent: nil, depth: 0)
        return text
    }

    /// Indented by two spaces a level, with a final newline: a file people also read.
    var pretty: String {
        var text = ""
        write(into: &text, indent: "  ", depth: 0)
        return text + "\n"
    }

    private func write(into text: inout String, indent: String?, depth: Int) {
        switch self {
        case .string(let value): JSONValue.appendQuoted(value, to: &text)
        case .number(let value): text += value
        case .bool(let value): text += value ? "true" : "false"
        case .null: text += "null"
        case .array(let items):
            writeMembers(items.map { (nil, $0) }, open: "[", close: "]", into: &text, indent: indent, depth: depth)
        case .object(let members):
            writeMembers(members.map { ($0.0, $0.1) }, open: "{", close: "}", into: &text, indent: indent,
                         depth: depth)
        }
    }

    private func writeMembers(_ members: [(String?, JSONValue)], open: String, close: String,
                              into text: inout String, indent: String?, depth: Int)
    {
        text += open
        guard !members.isEmpty else {
            text += close
            return
        }
        let inner = indent.map { "\n" + String(repeating: $0, count: depth + 1) } ?? ""
        for (index, (key, value)) in members.enumerated() {
            if index > 0 { text += "," }
            text += inner
            if let key {
                JSONValue.appendQuoted(key, to: &text)
                text += indent == nil ? ":" : ": "
            }
            value.write(into: &text, indent: indent, depth: depth + 1)
        }
        text += indent.map { "\n" + String(repeating: $0, count: depth) } ?? ""
        text += close
    }

    /// `value` as a JSON string. Quotes, backslashes and every control character (C0, DEL, C1)
    /// are escaped, and so are U+2028 and U+2029, which some JavaScript readers take for line
    /// ends: one event stays one line. Swift strings hold only valid Unicode (bytes of a
    /// certificate subject that are not UTF-8 were replaced by U+FFFD when read), so the output
    /// is always valid UTF-8.
    static func appendQuoted(_ value: String, to text: inout String) {
        text += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case _ where scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value)
                || scalar.value == 0x2028 || scalar.value == 0x2029:
                let digits = String(scalar.value, radix: 16)
                text += "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }
}
