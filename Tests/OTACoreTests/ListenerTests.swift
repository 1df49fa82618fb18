import Foundation
import OTACore
import Testing

/// A listener made for one test.
private func listen(on address: String?, port: UInt16 = 0) -> (listener: OpaquePointer?, status: Int32,
                                                                 detail: String) {
    var status: Int32 = 12345
    var detail = DetailBuffer()
    let listener = ota_listener_new(address, port, 16, &status, &detail.storage, detail.storage.count)
    return (listener, status, detail.text)
}

/// A plain blocking TCP connection to 127.0.0.1:`port`; returns the socket and its local port.
func connectLoopback(port: UInt16) throws -> (fd: Int32, localPort: UInt16) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw FixtureError("socket: errno \(errno)") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard connected == 0 else {
        close(fd)
        throw FixtureError("connect: errno \(errno)")
    }
    var local = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &local) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return (fd, UInt16(bigEndian: local.sin_port))
}

/// The outcome of one `ota_listener_accept`.
struct AcceptResult: Sendable {
    let status: Int32
    let fd: Int32
    let peer: String
    let peerPort: UInt16
    /// When the call returned, in milliseconds after the given start.
    let returnedAfter: Double
}

private func accept(_ listener: OpaquePointer?, timeout: Int32, cancel: OpaquePointer? = nil,
                    start: ContinuousClock.Instant = .now) -> AcceptResult {
    var fd: Int32 = -1
    var peer = [CChar](repeating: 0, count: 64)
    var peerPort: UInt16 = 0
    let status = ota_listener_accept(listener, timeout, cancel, &fd, &peer, peer.count, &peerPort)
    return AcceptResult(status: status, fd: fd, peer: text(ofCString: peer), peerPort: peerPort,
                        returnedAfter: milliseconds(since: start))
}

@Suite("listener.c: ota_listener_*")
struct ListenerTests {
    @Test("127.0.0.1 port 0 binds an ephemeral port and reports the address")
    func ephemeralPort() throws {
        let made = listen(on: "127.0.0.1")
        let listener = try #require(made.listener, "\(made.detail)")
        defer { ota_listener_free(listener) }
        #expect(made.status == code(OTA_OK))
        #expect(ota_listener_port(listener) > 0)
        #expect(String(cString: ota_listener_address(listener)) == "127.0.0.1")
    }

    @Test("binding a port already listened on fails with config and a detail naming address and port")
    func portInUse() throws {
        let first = listen(on: "127.0.0.1")
        let listener = try #require(first.listener, "\(first.detail)")
        defer { ota_listener_free(listener) }
        let port = ota_listener_port(listener)

        let second = listen(on: "127.0.0.1", port: port)
        ota_listener_free(second.listener)
        #expect(second.listener == nil)
        #expect(second.status == code(OTA_ERR_CONFIG))
        #expect(second.detail.contains("127.0.0.1"), "detail: \(second.detail)")
        #expect(second.detail.contains("\(port)"), "detail: \(second.detail)")
    }

    @Test("an address that is not numeric fails with config and a detail naming it",
          arguments: ["localhost", "not-an-address", "256.1.1.1"])
    func notNumeric(address: String) {
        let made = listen(on: address)
        ota_listener_free(made.listener)
        #expect(made.listener == nil)
        #expect(made.status == code(OTA_ERR_CONFIG))
        #expect(made.detail.contains(address), "detail: \(made.detail)")
    }

    @Test("accept with a 50 ms timeout returns timeout after about 50 ms")
    func acceptTimesOut() throws {
        let listener = try #require(listen(on: "127.0.0.1").listener)
        defer { ota_listener_free(listener) }
        let result = accept(listener, timeout: 50)
        #expect(result.status == code(OTA_ERR_TIMEOUT))
        #expect(result.returnedAfter >= 45)
        #expect(result.returnedAfter < 2000)
    }

    @Test("interrupt from another thread ends a blocked accept promptly, and every later one")
    func interruptEndsAccept() throws {
        let listener = try #require(listen(on: "127.0.0.1").listener)
        defer { ota_listener_free(listener) }
        let handle = SendableHandle(raw: listener)
        let start = ContinuousClock.now
        // A long but finite timeout: a broken interrupt fails the test instead of hanging it.
        let blocked = ThreadResult { accept(handle.raw, timeout: 10_000, start: start) }

        Thread.sleep(forTimeInterval: 0.2)
        let interruptedAt = milliseconds(since: start)
        ota_listener_interrupt(listener)
        let result = try #require(blocked.wait(seconds: 15))
        #expect(result.status == code(OTA_ERR_CANCELLED))
        #expect(result.returnedAfter >= interruptedAt)
        #expect(result.returnedAfter - interruptedAt < 1000, "accept returned long after the interrupt")

        #expect(accept(listener, timeout: 5000).status == code(OTA_ERR_CANCELLED))
        #expect(accept(listener, timeout: -1).status == code(OTA_ERR_CANCELLED))
    }

    @Test("a fired cancel source ends accept at once")
    func cancelEndsAccept() throws {
        let listener = try #require(listen(on: "127.0.0.1").listener)
        defer { ota_listener_free(listener) }
        let cancel = try #require(ota_cancel_new())
        defer { ota_cancel_free(cancel) }
        ota_cancel_fire(cancel)
        let result = accept(listener, timeout: 5000, cancel: cancel)
        #expect(result.status == code(OTA_ERR_CANCELLED))
        #expect(result.returnedAfter < 1000)
    }

    @Test("a TCP connection from 127.0.0.1 is accepted with its address and port, non-blocking",
          arguments: ["127.0.0.1", nil] as [String?])
    func acceptsConnection(bindAddress: String?) throws {
        let made = listen(on: bindAddress)
        let listener = try #require(made.listener, "\(made.detail)")
        defer { ota_listener_free(listener) }
        if bindAddress == nil {
            let shown = String(cString: ota_listener_address(listener))
            #expect(shown == "::" || shown == "0.0.0.0", "wildcard shown as \(shown)")
        }

        let client = try connectLoopback(port: ota_listener_port(listener))
        defer { close(client.fd) }
        let result = accept(listener, timeout: 5000)
        #expect(result.status == code(OTA_OK))
        #expect(result.peer == "127.0.0.1", "IPv4-mapped addresses are shown as plain IPv4")
        #expect(result.peerPort == client.localPort)
        #expect(result.fd >= 0)
        if result.fd >= 0 {
            #expect(fcntl(result.fd, F_GETFL) & O_NONBLOCK != 0)
            #expect(fcntl(result.fd, F_GETFD) & FD_CLOEXEC != 0)
            close(result.fd)
        }
    }

    /// inet_ntop fails on a short buffer and leaves it as it was; the core cuts the name instead.
    @Test("a peer buffer too small for the address comes back cut short and NUL-terminated")
    func smallPeerBuffer() throws {
        let listener = try #require(listen(on: "127.0.0.1").listener)
        defer { ota_listener_free(listener) }
        let client = try connectLoopback(port: ota_listener_port(listener))
        defer { close(client.fd) }

        var fd: Int32 = -1
        var peer = [CChar](repeating: 0x78, count: 8)
        let status = ota_listener_accept(listener, 5000, nil, &fd, &peer, 4, nil)
        if fd >= 0 { close(fd) }
        #expect(peer[4...].allSatisfy { $0 == 0x78 }, "nothing is written past peer_size")
        #expect(status == code(OTA_OK) && peer[..<4].contains(0),
                "status \(status), peer bytes \(peer[..<4].map { $0 })")
    }

    @Test("NULL listener, fd or peer buffer, or a zero peer size, are usage errors; NULL handles are ignored")
    func nullArguments() throws {
        var fd: Int32 = -1
        var peer = [CChar](repeating: 0, count: 64)
        var port: UInt16 = 0
        #expect(ota_listener_accept(nil, 10, nil, &fd, &peer, peer.count, &port) == code(OTA_ERR_USAGE))

        let listener = try #require(listen(on: "127.0.0.1").listener)
        defer { ota_listener_free(listener) }
        #expect(ota_listener_accept(listener, 10, nil, nil, &peer, peer.count, &port) == code(OTA_ERR_USAGE))
        #expect(ota_listener_accept(listener, 10, nil, &fd, nil, 64, &port) == code(OTA_ERR_USAGE))
        #expect(ota_listener_accept(listener, 10, nil, &fd, &peer, 0, &port) == code(OTA_ERR_USAGE))
        // A NULL peer port is allowed.
        #expect(ota_listener_accept(listener, 10, nil, &fd, &peer, peer.count, nil) == code(OTA_ERR_TIMEOUT))

        #expect(ota_listener_port(nil) == 0)
        #expect(String(cString: ota_listener_address(nil)) == "")
        ota_listener_interrupt(nil)
        ota_listener_free(nil)

        // NULL status and detail are allowed on failure too.
        let unparsable = ota_listener_new("not-an-address", 0, 16, nil, nil, 0)
        #expect(unparsable == nil)
    }
}
