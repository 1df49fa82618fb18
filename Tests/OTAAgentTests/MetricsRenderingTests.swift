import Foundation
import Testing
@testable import OTAAgent

/// The exposition text, the event hub and the HTTP server, inside the process.
@Suite("Metrics and events")
struct MetricsRenderingTests {
    static func record(_ outcome: SessionOutcome, _ phase: SessionPhase, proof: Bool = false,
                       path: String = "", transfer: Duration? = nil, bytes: UInt64 = 0) -> SessionRecord {
        var record = SessionRecord(peer: "127.0.0.1:40000")
        record.outcome = outcome
        record.phase = phase
        record.provedPossession = proof
        record.transferPath = path
        record.transferDuration = transfer
        record.bytesSent = bytes
        return record
    }

    /// The value of the sample line starting with `series`.
    static func value(_ text: String, _ series: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.map { String($0.split(separator: " ").last!) }
    }

    @Test("every family has HELP and TYPE before its samples, and every series exists at 0 from the start")
    func wellFormedFromTheStart() {
        let text = AgentMetrics().render()
        var declared: Set<String> = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") { continue }
            if line.hasPrefix("# TYPE ") {
                let words = line.split(separator: " ")
                #expect(words.count == 4 && ["counter", "gauge", "histogram"].contains(words[3]), "\(line)")
                declared.insert(String(words[2]))
                continue
            }
            let name = String(line.prefix { $0 != "{" && $0 != " " })
            let family = ["_bucket", "_sum", "_count"].reduce(name) { name, suffix in
                declared.contains(name) ? name : (name.hasSuffix(suffix) ? String(name.dropLast(suffix.count)) : name)
            }
            #expect(declared.contains(family), "sample before its TYPE: \(line)")
            #expect(Double(line.split(separator: " ").last!) != nil || line.hasSuffix(" +Inf"), "\(line)")
        }
        #expect(text.hasSuffix("\n"))
        #expect(Self.value(text, "ota_agent_devices_refused_total{phase=\"attestation\",proof=\"yes\"}") == "0")
        #expect(Self.value(text, "ota_agent_devices_failed_total{phase=\"close\"}") == "0")
        #expect(Self.value(text, "ota_agent_transfers_total{path=\"ktls-sendfile\"}") == "0")
        #expect(Self.value(text, "ota_agent_dice_auth_duration_seconds_count{verdict=\"unavailable\"}") == "0")
        #expect(Self.value(text, "ota_agent_accepting") == "0")
    }

    @Test("session ends count by outcome, phase, proof and path; gauges come back to 0")
    func sessionEnds() {
        let metrics = AgentMetrics()
        let ends: [(SessionRecord, Bool)] = [
            (Self.record(.updated, .done, proof: true, path: "pread", transfer: .milliseconds(300)), true),
            (Self.record(.updated, .done, path: "ktls-sendfile", transfer: .seconds(2)), true),
            (Self.record(.refused, .attestation, proof: true), false),
            (Self.record(.refused, .certificate), false),
            (Self.record(.failed, .handshake), false),
            (Self.record(.failed, .transfer, path: "pread", transfer: .seconds(1000)), true),
        ]
        for (record, transferred) in ends {
            metrics.sessionStarted()
            if transferred { metrics.transferStarted() }
            metrics.sessionEnded(record, transferred: transferred)
        }
        metrics.addBytes(1234)
        let text = metrics.render()
        let expected = [
            "ota_agent_devices_updated_total{proof=\"yes\"}": "1",
            "ota_agent_devices_updated_total{proof=\"no\"}": "1",
            "ota_agent_devices_refused_total{phase=\"attestation\",proof=\"yes\"}": "1",
            "ota_agent_devices_refused_total{phase=\"certificate\",proof=\"no\"}": "1",
            "ota_agent_devices_failed_total{phase=\"handshake\"}": "1",
            "ota_agent_devices_failed_total{phase=\"transfer\"}": "1",
            "ota_agent_transfers_total{path=\"pread\"}": "2",
            "ota_agent_transfers_total{path=\"ktls-sendfile\"}": "1",
            "ota_agent_sessions_in_flight": "0",
            "ota_agent_transfers_in_flight": "0",
            "ota_agent_bytes_sent_total": "1234",
            "ota_agent_transfer_duration_seconds_bucket{outcome=\"updated\",le=\"0.25\"}": "0",
            "ota_agent_transfer_duration_seconds_bucket{outcome=\"updated\",le=\"0.5\"}": "1",
            "ota_agent_transfer_duration_seconds_bucket{outcome=\"updated\",le=\"2.5\"}": "2",
            "ota_agent_transfer_duration_seconds_bucket{outcome=\"updated\",le=\"+Inf\"}": "2",
            "ota_agent_transfer_duration_seconds_sum{outcome=\"updated\"}": "2.3",
            "ota_agent_transfer_duration_seconds_count{outcome=\"updated\"}": "2",
            "ota_agent_transfer_duration_seconds_bucket{outcome=\"failed\",le=\"900\"}": "0",
            "ota_agent_transfer_duration_seconds_bucket{outcome=\"failed\",le=\"+Inf\"}": "1",
        ]
        for (series, value) in expected {
            #expect(Self.value(text, series) == value, "\(series)\n\(text)")
        }
    }

    @Test("a bucket counts observations at or below its bound")
    func bucketBounds() {
        let metrics = AgentMetrics()
        metrics.observeVerdict(.verified, after: .milliseconds(5))
        metrics.observeVerdict(.rejected(status: 403), after: .milliseconds(6))
        metrics.observeVerdict(.unavailable(reason: "timeout"), after: .seconds(61))
        let text = metrics.render()
        let bucket = "ota_agent_dice_auth_duration_seconds_bucket"
        #expect(Self.value(text, "\(bucket){verdict=\"verified\",le=\"0.005\"}") == "1")
        #expect(Self.value(text, "\(bucket){verdict=\"rejected\",le=\"0.005\"}") == "0")
        #expect(Self.value(text, "\(bucket){verdict=\"rejected\",le=\"0.01\"}") == "1")
        #expect(Self.value(text, "\(bucket){verdict=\"unavailable\",le=\"60\"}") == "0")
        #expect(Self.value(text, "\(bucket){verdict=\"unavailable\",le=\"+Inf\"}") == "1")
    }

    @Test("label values and numbers are written as the text format reads them")
    func escaping() {
        #expect(escape("a\\b\"c\nd") == "a\\\\b\\\"c\\nd")
        #expect(prometheusNumber(1) == "1")
        #expect(prometheusNumber(0.25) == "0.25")
        #expect(prometheusNumber(.infinity) == "+Inf")
    }

    @Test("progress is reported at the start, at most every 250 ms, and at the last byte; bytes count as they go")
    func progressThrottle() async {
        let hub = AgentEventHub()
        let stream = hub.subscribe(bufferSize: 10_000)
        let reporter = SessionReporter(hub: hub, peer: "127.0.0.1:1")
        reporter.connected()
        reporter.transferStarted(totalBytes: 1000)
        for done in stride(from: UInt64(10), through: 1000, by: 10) {
            reporter.progress(bytesSent: done, totalBytes: 1000)
        }
        var record = Self.record(.updated, .done, path: "pread", transfer: .milliseconds(1), bytes: 1000)
        record.verdict = .verified
        reporter.ended(record)
        hub.finish()
        var progress: [UInt64] = []
        var kinds: [String] = []
        for await event in stream {
            switch event {
            case .connected: kinds.append("connected")
            case .verdict: kinds.append("verdict")
            case .progress(_, let sent, _): progress.append(sent); kinds.append("progress")
            case .ended: kinds.append("ended")
            }
        }
        #expect(progress == [0, 1000], "a fast transfer: its start and its end only")
        #expect(kinds == ["connected", "progress", "progress", "ended"])
        #expect(Self.value(hub.metrics.render(), "ota_agent_bytes_sent_total") == "1000")
    }

    @Test("a consumer that never reads loses the oldest events, counted, and blocks nothing")
    func slowConsumer() async {
        let hub = AgentEventHub()
        let stream = hub.subscribe(bufferSize: 2)
        for number in 0..<100 { hub.publish(.connected(peer: "127.0.0.1:\(number)")) }
        hub.finish()
        var peers: [String] = []
        for await event in stream { peers.append(event.peer) }
        #expect(peers == ["127.0.0.1:98", "127.0.0.1:99"])
        #expect(Self.value(hub.metrics.render(), "ota_agent_events_dropped_total") == "98")
        var late = 0
        for await _ in hub.subscribe(bufferSize: 8) { late += 1 }
        #expect(late == 0, "a stream asked for after the end ends at once")
    }

    @Test("request heads: complete only at the empty line; the request line read, headers skipped")
    func requestHeads() {
        #expect(HTTPRequestHead(Array("GET /metrics HTTP/1.1\r\nHost: x\r\n".utf8)) == nil)
        let head = HTTPRequestHead(Array("GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(head?.method == "GET" && head?.target == "/metrics?x=1" && head?.version == "HTTP/1.1")
        #expect(HTTPRequestHead(Array("GET /healthz HTTP/1.0\n\n".utf8))?.target == "/healthz")
        let route: MetricsServer.Route = { $0 == "/healthz" ? .text(200, "ok\n") : nil }
        let answers = [
            ("GET /healthz HTTP/1.1\r\n\r\n", 200), ("GET /healthz?verbose HTTP/1.0\r\n\r\n", 200),
            ("GET /other HTTP/1.1\r\n\r\n", 404), ("HEAD /healthz HTTP/1.1\r\n\r\n", 200),
            ("POST /healthz HTTP/1.1\r\n\r\n", 405),
            ("GET /healthz HTTP/2.0\r\n\r\n", 400), ("GET healthz HTTP/1.1\r\n\r\n", 400),
            ("GET  /healthz HTTP/1.1\r\n\r\n", 400), ("\r\n\r\n", 400),
            // Whole heads get the 400 that the same line gets when it arrives in pieces.
            ("ABCDEFGHIJKLMNOPQ /healthz HTTP/1.1\r\n\r\n", 400), ("GET /heal\u{1}thz HTTP/1.1\r\n\r\n", 400),
            ("G\u{c9}T /healthz HTTP/1.1\r\n\r\n", 400), ("GET /healthz\u{7f} HTTP/1.1\r\n\r\n", 400),
            ("GE(T /healthz HTTP/1.1\r\n\r\n", 400),
        ]
        for (request, status) in answers {
            let parsed = HTTPRequestHead(Array(request.utf8))
            #expect(parsed.map { MetricsServer.reply(to: $0, route: route).status } == status, "\(request)")
        }
    }

    @Test("a head that cannot become an HTTP/1.x request line is known before its empty line")
    func headsThatCannotBeHTTP() {
        for start in ["\u{16}\u{03}\u{01}\u{02}\u{00}", "\u{00}", "GET /metrics\u{1b}[2J", "G\tET", "GET /m\u{7f}",
                      "ABCDEFGHIJKLMNOPQ", "GET /metrics\r\n", "GET /metrics HTTP/2\r\nHost: x\r\n",
                      "GET metrics HTTP/1.1\n", "\r\nGET / HTTP/1.1\r\n", "GET /a\rb HTTP/1.1\r\n", "é"] {
            #expect(HTTPRequestHead.cannotBeHTTP(Array(start.utf8)), "\(start.debugDescription)")
        }
        for start in ["", "G", "GET", "GET /met", "GET /metrics HTTP/1.1", "GET /metrics HTTP/1.1\r",
                      "GET /metrics HTTP/1.1\r\nHost: x\r\n", "POST /metrics HTTP/1.0\n",
                      "GET /metrics HTTP/1.1\r\nX-Bytes: \u{1}\u{ff}"] {
            #expect(!HTTPRequestHead.cannotBeHTTP(Array(start.utf8)), "\(start.debugDescription)")
        }
    }

    @Test("the server answers over IPv6 loopback, and stops at once with a client still trickling")
    func serverOnIPv6Loopback() async throws {
        let server = try MetricsServer(bindAddress: "::1", port: 0) { $0 == "/healthz" ? .text(200, "ok\n") : nil }
        server.start()
        let port = server.port
        #expect(server.address == "::1")
        let answer = await Thread.run { LoopbackClient.exchange(port: port, "GET /healthz HTTP/1.1\r\n\r\n") }
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n") && answer.hasSuffix("\r\n\r\nok\n"), "\(answer)")
        let missing = await Thread.run { LoopbackClient.exchange(port: port, "GET /nope HTTP/1.1\r\n\r\n") }
        #expect(missing.hasPrefix("HTTP/1.1 404 "), "\(missing)")

        let trickling = LoopbackClient.connect(port: port)
        defer { close(trickling) }
        _ = send(trickling, "GET /he", 7, Int32(MSG_NOSIGNAL))
        // Timed on the stopping thread itself: the test's task may resume late on a busy machine.
        let stopping = await Thread.run { () -> Duration in
            let start = ContinuousClock.now
            server.stop()
            return ContinuousClock.now - start
        }
        #expect(stopping < .seconds(1), "stop took \(stopping) (the client's deadline is 5 s)")
        #expect(LoopbackClient.connect(port: port) < 0, "the port is closed after stop")
    }

    /// A server whose routes answer 200, 503 and (unknown path) 404, for the method tests.
    static func methodServer() throws -> MetricsServer {
        try MetricsServer(bindAddress: "::1", port: 0) { path in
            switch path {
            case "/healthz": .text(200, "ok\n")
            case "/readyz": .text(503, "not accepting devices\n")
            default: nil
            }
        }
    }

    @Test("HEAD gets GET's status line and headers, Content-Length of GET's body, and no body",
          arguments: ["/healthz", "/readyz", "/nope"])
    func headIsGetWithoutBody(path: String) async throws {
        let server = try Self.methodServer()
        server.start()
        defer { server.stop() }
        let port = server.port
        let get = await Thread.run { LoopbackClient.exchange(port: port, "GET \(path) HTTP/1.1\r\n\r\n") }
        let head = await Thread.run { LoopbackClient.exchange(port: port, "HEAD \(path) HTTP/1.1\r\n\r\n") }
        let getParts = get.components(separatedBy: "\r\n\r\n")
        #expect(getParts.count == 2 && !getParts[1].isEmpty, "\(get)")
        #expect(getParts[0].contains("\r\nContent-Length: \(getParts[1].utf8.count)\r\n"), "\(get)")
        #expect(head == getParts[0] + "\r\n\r\n", "HEAD: \(head)\nGET: \(get)")
    }

    @Test("a method other than GET and HEAD is answered 405 with Allow: GET, HEAD",
          arguments: ["POST", "PUT", "DELETE", "OPTIONS", "get", "TRACE"])
    func otherMethodsAreNotAllowed(method: String) async throws {
        let server = try Self.methodServer()
        server.start()
        defer { server.stop() }
        let port = server.port
        let answer = await Thread.run {
            LoopbackClient.exchange(port: port, "\(method) /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        }
        #expect(answer.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n"), "\(answer)")
        #expect(answer.contains("\r\nAllow: GET, HEAD\r\n"), "\(answer)")
        #expect(!answer.contains("\r\n\r\nok\n"), "\(answer)")
    }
}

/// A blocking IPv6 loopback client for the server tests.
enum LoopbackClient {
    static func connect(port: UInt16) -> Int32 {
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = port.bigEndian
        address.sin6_addr = in6addr_loopback
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
            }
        }
        guard status == 0 else {
            close(fd)
            return -1
        }
        return fd
    }

    /// Sends `request` and reads to the end of the connection (5 s at most).
    static func exchange(port: UInt16, _ request: String) -> String {
        let fd = connect(port: port)
        guard fd >= 0 else { return "connect failed: errno \(errno)" }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = request.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { break }
            received += buffer.prefix(count)
        }
        return String(decoding: received, as: UTF8.self)
    }
}

extension Thread {
    /// Runs blocking `body` on a thread of its own, off the cooperative pool.
    static func run<Value: Sendable>(_ body: @escaping @Sendable () -> Value) async -> Value {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: body()) }
        }
    }
}
