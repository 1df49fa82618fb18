import Foundation
import Testing

/// What an HTTP request to the metrics endpoint got back.
struct HTTPAnswer: Sendable, CustomStringConvertible {
    let status: Int?
    let headers: [String: String]
    let body: String
    let exchange: RawExchange

    var description: String { "status=\(status.map(String.init) ?? "none") \(exchange)\n\(body.prefix(400))" }

    init(_ exchange: RawExchange) {
        self.exchange = exchange
        let text = String(decoding: exchange.received, as: UTF8.self)
        let parts = text.components(separatedBy: "\r\n\r\n")
        let head = parts.first?.components(separatedBy: "\r\n") ?? []
        let statusWords = head.first?.split(separator: " ") ?? []
        status = statusWords.count >= 2 ? Int(statusWords[1]) : nil
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...]
                .trimmingCharacters(in: .whitespaces)
        }
        self.headers = headers
        body = parts.dropFirst().joined(separator: "\r\n\r\n")
    }
}

/// A Prometheus text exposition, parsed: every sample by its name and sorted labels.
struct MetricsSample: Sendable, CustomStringConvertible {
    let text: String
    private let values: [String: Double]

    init(_ text: String) {
        self.text = text
        var values: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                continue
            }
            values[Self.key(String(line[..<space]))] = value
        }
        self.values = values
    }

    /// The sample `name` with exactly `labels`; nil when absent.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        let pairs = labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\($0.value)\"" }
        return values[pairs.isEmpty ? name : "\(name){\(pairs.joined(separator: ","))}"]
    }

    /// `name{b="2",a="1"}` as `name{a="1",b="2"}`. Label values here never hold commas.
    private static func key(_ series: String) -> String {
        guard let brace = series.firstIndex(of: "{"), series.hasSuffix("}") else { return series }
        let inner = series[series.index(after: brace)..<series.index(before: series.endIndex)]
        let pairs = inner.split(separator: ",").map(String.init).sorted()
        return "\(series[..<brace]){\(pairs.joined(separator: ","))}"
    }

    var description: String { text }
}

/// HTTP over loopback to the agent's metrics endpoint.
enum MetricsClient {
    /// The metrics port the agent logged (`metrics-listening ... port=N`).
    static func port(of agent: Agent) throws -> UInt16 {
        let line = try #require(agent.log("metrics-listening").first, "\(agent.transcript)")
        return try #require(line.integer("port").flatMap { UInt16(exactly: $0) }, "\(line)")
    }

    /// Sends `request` as is and reads the answer to the end of the connection.
    static func raw(port: UInt16, _ request: String, within timeout: Duration = .seconds(5)) async throws
        -> HTTPAnswer
    {
        HTTPAnswer(try await RawClient.exchange(port: port, sending: Array(request.utf8), halfClose: false,
                                                within: timeout))
    }

    static func get(port: UInt16, _ path: String, within timeout: Duration = .seconds(5)) async throws
        -> HTTPAnswer
    {
        try await raw(port: port, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n",
                      within: timeout)
    }

    static func scrape(port: UInt16) async throws -> MetricsSample {
        let answer = try await get(port: port, "/metrics")
        #expect(answer.status == 200, "\(answer)")
        return MetricsSample(answer.body)
    }

    /// Scrapes until `condition` holds (sessions update the metrics just after logging their
    /// end), or `timeout` passes; returns the last sample.
    static func waitFor(port: UInt16, within timeout: Duration = .seconds(10),
                        _ condition: (MetricsSample) -> Bool) async throws -> MetricsSample
    {
        let deadline = ContinuousClock.now + timeout
        while true {
            let sample = try await scrape(port: port)
            if condition(sample) || ContinuousClock.now >= deadline { return sample }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}
