import Foundation
import OTACore

/// A minimal HTTP/1.x server for `/metrics`, `/healthz` and `/readyz`, on threads of its own so
/// it never waits on the agent, nor the agent on it.
///
/// One thread accepts (the core's listener, interruptible); another serves every open
/// connection with `poll`, never blocking on any one. Each connection gets one request: a GET
/// or HEAD whose head (request line and headers) fits in `Limits.requestBytes` and arrives
/// within `Limits.requestDeadline`; the answer must be taken within `Limits.responseDeadline`;
/// then the connection is closed. Anything else is answered 400, 405, 404 or 431, or reset at
/// its deadline; a first line that cannot begin an HTTP/1.x request (TLS or other binary bytes,
/// a malformed request line) is answered 400 at once, without waiting for the rest of the head.
/// At most `Limits.connections` are open at once: a newcomer beyond that closes the oldest, so
/// clients that trickle bytes or never read cannot crowd out a scraper.
final class MetricsServer: @unchecked Sendable {
    struct Limits: Sendable {
        var requestBytes = 8192
        var requestDeadline: Duration = .seconds(5)
        var responseDeadline: Duration = .seconds(5)
        /// After the answer, how long the client's unread bytes are drained before closing, so
        /// that closing does not reset the connection under the answer.
        var lingerDeadline: Duration = .seconds(1)
        var connections = 64
    }

    /// What a request gets: status, content type and body.
    struct Reply: Sendable, Equatable {
        let status: Int
        let contentType: String
        let body: String
        var allow: String?

        static func text(_ status: Int, _ body: String) -> Reply {
            Reply(status: status, contentType: "text/plain; charset=utf-8", body: body)
        }
    }

    typealias Route = @Sendable (_ path: String) -> Reply?

    private let listener: Listener
    private let cancel: CancelSource
    private let route: Route
    private let limits: Limits
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let lock = NSLock()
    private var incoming: [Int32] = []
    private var stopping = false
    private var stopped = false
    private let threadsDone = DispatchGroup()

    /// Binds `bindAddress`:`port`; a failure names the metrics settings (`settingName`, by
    /// default both ways, see `SettingNames`).
    init(bindAddress: String, port: UInt16, limits: Limits = Limits(),
         settingName: String = AgentConfiguration.defaultMetricsListenerSettingName,
         route: @escaping Route) throws(AgentError)
    {
        listener = try Listener(bindAddress: bindAddress, port: port, backlog: 128, settingName: settingName)
        cancel = try CancelSource()
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            throw AgentError(.internal, "metrics: pipe: \(String(cString: strerror(errno)))")
        }
        for end in ends {
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        wakeRead = ends[0]
        wakeWrite = ends[1]
        self.route = route
        self.limits = limits
    }

    deinit {
        assert(stopped || !started, "MetricsServer dropped while running: call stop()")
    }

    private var started = false

    var port: UInt16 { listener.port }
    var address: String { listener.address }

    /// Starts the two threads.
    func start() {
        started = true
        for (name, body) in [("ota-agent-metrics-accept", acceptLoop), ("ota-agent-metrics", serveLoop)] {
            threadsDone.enter()
            let thread = Thread { [threadsDone] in
                body()
                threadsDone.leave()
            }
            thread.name = name
            thread.start()
        }
    }

    /// Closes the listener and every connection, and waits for both threads. Any thread; once.
    func stop() {
        let first = lock.withLock {
            defer { stopping = true }
            return !stopping
        }
        guard first else { return }
        cancel.fire()
        listener.interrupt()
        wake()
        if started { threadsDone.wait() }
        lock.withLock { incoming.forEach { ota_listener_refuse($0) } }
        close(wakeRead)
        close(wakeWrite)
        stopped = true
    }

    private var isStopping: Bool { lock.withLock { stopping } }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    // MARK: - Accepting

    private func acceptLoop() {
        defer { listener.close() }
        while true {
            switch listener.accept(timeout: nil, cancel: cancel) {
            case .connection(let fd, _, _):
                lock.withLock { incoming.append(fd) }
                wake()
            case .stopped:
                return
            case .timedOut:
                continue
            case .failed:
                // Out of descriptors, typically: wait a little instead of spinning.
                if cancel.wait(.milliseconds(100)) { return }
            }
        }
    }

    // MARK: - Serving

    private enum Stage {
        case reading([UInt8])
        case writing([UInt8], written: Int)
        case draining
    }

    private struct Connection {
        let fd: Int32
        var stage: Stage
        var deadline: ContinuousClock.Instant
    }

    private func serveLoop() {
        var connections: [Connection] = []
        defer { connections.forEach { ota_listener_refuse($0.fd) } }
        while !isStopping {
            take(&connections)
            let now = ContinuousClock.now
            connections.removeAll { connection in
                guard connection.deadline <= now else { return false }
                ota_listener_refuse(connection.fd)
                return true
            }
            var watched = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            for connection in connections {
                let events = if case .writing = connection.stage { POLLOUT } else { POLLIN }
                watched.append(pollfd(fd: connection.fd, events: Int16(events), revents: 0))
            }
            let timeout = connections.map { $0.deadline - now }.min().map { max(1, Int32(clamping: $0.milliseconds)) }
            let ready = poll(&watched, nfds_t(watched.count), timeout ?? -1)
            if ready < 0 && errno != EINTR { break }
            guard ready > 0 else { continue }
            if watched[0].revents != 0 { drainWake() }
            var kept: [Connection] = []
            for (index, var connection) in connections.enumerated() {
                if watched[index + 1].revents == 0 || advance(&connection) {
                    kept.append(connection)
                }
            }
            connections = kept
        }
    }

    /// Takes the accepted connections; beyond the bound, the oldest open ones are closed.
    private func take(_ connections: inout [Connection]) {
        let fresh = lock.withLock {
            defer { incoming.removeAll() }
            return incoming
        }
        let now = ContinuousClock.now
        for fd in fresh {
            connections.append(Connection(fd: fd, stage: .reading([]), deadline: now + limits.requestDeadline))
        }
        while connections.count > limits.connections {
            ota_listener_refuse(connections.removeFirst().fd)
        }
    }

    private func drainWake() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(wakeRead, &buffer, buffer.count) > 0 {}
    }

    /// Moves one connection on as far as its socket allows; false once it is closed.
    private func advance(_ connection: inout Connection) -> Bool {
        switch connection.stage {
        case .reading(var head):
            return readRequest(&connection, &head)
        case .writing(let bytes, let written):
            return writeReply(&connection, bytes, written)
        case .draining:
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = recv(connection.fd, &buffer, buffer.count, 0)
            if count < 0 && (errno == EAGAIN || errno == EINTR) { return true }
            if count > 0 { return true }
            close(connection.fd)
            return false
        }
    }

    private func readRequest(_ connection: inout Connection, _ head: inout [UInt8]) -> Bool {
        var buffer = [UInt8](repeating: 0, count: limits.requestBytes - head.count)
        let count = recv(connection.fd, &buffer, buffer.count, 0)
        if count < 0 && (errno == EAGAIN || errno == EINTR) { return true }
        guard count > 0 else {
            // Closed, or reset, before a whole request: nothing to answer.
            ota_listener_refuse(connection.fd)
            return false
        }
        head += buffer.prefix(count)
        let reply: Reply
        var bodyIncluded = true
        if let complete = HTTPRequestHead(head) {
            reply = Self.reply(to: complete, route: route)
            // HEAD gets GET's status and headers, Content-Length included, and never a body
            // (RFC 9110, section 9.3.2): the client reads no further than the blank line.
            bodyIncluded = complete.method != "HEAD"
        } else if HTTPRequestHead.cannotBeHTTP(head) {
            reply = Self.badRequest
        } else if head.count >= limits.requestBytes {
            reply = .text(431, "request head larger than \(limits.requestBytes) bytes\n")
        } else {
            connection.stage = .reading(head)
            return true
        }
        let bytes = Self.encode(reply, bodyIncluded: bodyIncluded)
        connection.stage = .writing(bytes, written: 0)
        connection.deadline = .now + limits.responseDeadline
        return writeReply(&connection, bytes, 0)
    }

    private func writeReply(_ connection: inout Connection, _ bytes: [UInt8], _ written: Int) -> Bool {
        let count = bytes.withUnsafeBytes { buffer in
            send(connection.fd, buffer.baseAddress! + written, buffer.count - written, Int32(MSG_NOSIGNAL))
        }
        if count < 0 && (errno == EAGAIN || errno == EINTR) { return true }
        guard count > 0 else {
            ota_listener_refuse(connection.fd)
            return false
        }
        guard written + count == bytes.count else {
            connection.stage = .writing(bytes, written: written + count)
            return true
        }
        shutdown(connection.fd, Int32(SHUT_WR))
        connection.stage = .draining
        connection.deadline = .now + limits.lingerDeadline
        return true
    }

    // MARK: - HTTP

    /// The answer to one complete request head.
    static func reply(to head: HTTPRequestHead, route: Route) -> Reply {
        guard head.isHTTP1 else { return badRequest }
        guard head.method == "GET" || head.method == "HEAD" else {
            var reply = Reply.text(405, "only GET and HEAD\n")
            reply.allow = "GET, HEAD"
            return reply
        }
        let path = head.target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        return route(String(path)) ?? .text(404, "not found: try /metrics, /healthz or /readyz\n")
    }

    static let badRequest = Reply.text(400, "bad request: not HTTP/1.x\n")

    static func encode(_ reply: Reply, bodyIncluded: Bool) -> [UInt8] {
        let body = Array(reply.body.utf8)
        var head = "HTTP/1.1 \(reply.status) \(reasonPhrase(reply.status))\r\n"
            + "Content-Type: \(reply.contentType)\r\n"
            + "Content-Length: \(body.count)\r\n"
            + "Cache-Control: no-store\r\n"
            + "Connection: close\r\n"
        if let allow = reply.allow { head += "Allow: \(allow)\r\n" }
        head += "\r\n"
        return Array(head.utf8) + (bodyIncluded ? body : [])
    }

    private static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 431: "Request Header Fields Too Large"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}

/// The request line of a complete HTTP request head; nil while the head is incomplete (no
/// empty line yet). Headers are read past, never interpreted: the answer does not depend on them.
struct HTTPRequestHead: Equatable {
    let method: String
    let target: String
    let version: String

    init?(_ bytes: [UInt8]) {
        guard let end = Self.endOfHead(bytes) else { return nil }
        let lineEnd = bytes[..<end].firstIndex(of: UInt8(ascii: "\n")) ?? end
        var line = bytes[..<lineEnd]
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        // A malformed line still makes a head: it is answered 400 by an empty method, whether
        // it arrived whole or in pieces (see `cannotBeHTTP`).
        guard parts.count == 3, !Self.breaksLineRules(line) else {
            self.method = ""
            self.target = ""
            self.version = ""
            return
        }
        method = String(decoding: parts[0], as: UTF8.self)
        target = String(decoding: parts[1], as: UTF8.self)
        version = String(decoding: parts[2], as: UTF8.self)
    }

    /// A request line the server answers (400 aside): a method, an origin-form target, HTTP/1.0 or 1.1.
    var isHTTP1: Bool {
        (version == "HTTP/1.0" || version == "HTTP/1.1") && target.hasPrefix("/")
    }

    /// True when `bytes`, the start of a head still incomplete, can no longer become a request
    /// line the server would answer with anything but 400: a byte that no method may hold
    /// (a TLS record's 0x16, a NUL, any control or non-ASCII byte), a control or non-ASCII byte
    /// anywhere in the first line, a method longer than any real one, or a complete first line
    /// that is not an HTTP/1.x request line. So binary clients get their 400 at once instead of
    /// a reset at the head's deadline.
    static func cannotBeHTTP(_ bytes: [UInt8]) -> Bool {
        let lineEnd = bytes.firstIndex(of: UInt8(ascii: "\n"))
        var line = bytes[..<(lineEnd ?? bytes.count)]
        // The CR of the line's end (or, the LF not yet here, of its coming end).
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        if breaksLineRules(line) { return true }
        guard lineEnd != nil else { return false }
        return !(HTTPRequestHead(Array(line) + Array("\r\n\r\n".utf8))?.isHTTP1 ?? false)
    }

    /// A request line (or its start) no request may have: a byte that is not printable ASCII
    /// (no CR inside the line, no TAB, no control or non-ASCII byte), or a method that is not a
    /// token or is longer than any real one.
    private static func breaksLineRules(_ line: ArraySlice<UInt8>) -> Bool {
        if line.contains(where: { $0 < 0x20 || $0 >= 0x7f }) { return true }
        let method = line.prefix { $0 != UInt8(ascii: " ") }
        return !method.allSatisfy(isTokenByte) || method.count > 16
    }

    /// RFC 9110's `tchar`: what a method is made of.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    /// Where the empty line ending the head is: "\r\n\r\n", or "\n\n" from lenient clients.
    private static func endOfHead(_ bytes: [UInt8]) -> Int? {
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "\n") {
                let next = index + 1
                if next < bytes.count && bytes[next] == UInt8(ascii: "\n") { return index }
                let crlf = next + 1 < bytes.count && bytes[next] == UInt8(ascii: "\r")
                    && bytes[next + 1] == UInt8(ascii: "\n")
                if crlf { return index }
            }
            index += 1
        }
        return nil
    }
}
