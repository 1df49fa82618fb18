/// A Dice-Auth URL as the agent prints it: credentials a URL may carry (a user and password
/// before the host, values in its query, such as an API token) replaced by `***`, and the
/// fragment dropped. Scheme, host, port and path stay, so the operator can still tell which
/// service is meant. Works on text, so a URL no parser takes is redacted too.
enum RedactedURL {
    static func text(_ url: String) -> String {
        var rest = Substring(url)
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        var query: Substring?
        if let question = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: question)...]
            rest = rest[..<question]
        }

        var result = String(rest)
        if let schemeEnd = result.range(of: "://") {
            let authorityStart = schemeEnd.upperBound
            let authorityEnd = result[authorityStart...].firstIndex(of: "/") ?? result.endIndex
            if let at = result[authorityStart..<authorityEnd].lastIndex(of: "@") {
                result.replaceSubrange(authorityStart..<at, with: "***")
            }
        }
        if let query {
            let pairs = query.split(separator: "&", omittingEmptySubsequences: false).map { pair in
                pair.firstIndex(of: "=").map { "\(pair[..<$0])=***" } ?? "***"
            }
            result += "?" + pairs.joined(separator: "&")
        }
        return result
    }
}
