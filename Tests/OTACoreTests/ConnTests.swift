import Foundation
import OTACore
import Testing

/// A server configuration, a loopback TCP connection, and the core's side of it wrapped in an
/// `ota_conn`. The test plays the device on `client` with plain (non-TLS) socket calls.
private final class Session {
    let config: OpaquePointer
    let listener: OpaquePointer
    let client: Int32
    let conn: OpaquePointer

    init(cancel: OpaquePointer? = nil) throws {
        // C calls outside #require: inside the macro a String's temporary C copy can be freed
        // before the call reads it (AddressSanitizer found it).
        let newConfig = ota_server_config_new(Fixture.path("agent-ec.crt"), Fixture.path("agent-ec.key"),
                                              nil, nil, 0)
        config = try #require(newConfig)
        let newListener = ota_listener_new("127.0.0.1", 0, 4, nil, nil, 0)
        listener = try #require(newListener)
        client = try connectLoopback(port: ota_listener_port(listener)).fd
        var fd: Int32 = -1
        var peer = [CChar](repeating: 0, count: 64)
        try #require(ota_listener_accept(listener, 5000, nil, &fd, &peer, peer.count, nil) == code(OTA_OK))
        conn = try #require(ota_conn_new(config, fd, cancel))
    }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    var detail: String { String(cString: ota_conn_detail(conn)) }

    deinit {
        ota_conn_free(conn)
        close(client)
        ota_listener_free(listener)
        ota_server_config_free(config)
    }
}

@Suite("conn.c: ota_conn_* without a TLS peer")
struct ConnTests {
    /// OpenSSL alone would answer "TLSv1.3" and "(NONE)" here; ota_core.h promises "".
    @Test("protocol and cipher are empty before the handshake")
    func emptyBeforeHandshake() throws {
        let session = try Session()
        #expect(String(cString: ota_conn_protocol(session.conn)) == "")
        #expect(String(cString: ota_conn_cipher(session.conn)) == "")
        #expect(String(cString: ota_conn_transfer_path(session.conn)) == "")
    }

    @Test("a silent peer makes the handshake time out, with a detail")
    func handshakeTimesOut() throws {
        let session = try Session()
        let start = ContinuousClock.now
        #expect(ota_conn_handshake(session.conn, 50) == code(OTA_ERR_TIMEOUT))
        #expect(milliseconds(since: start) >= 45)
        #expect(milliseconds(since: start) < 2000)
        #expect(!session.detail.isEmpty)
    }

    @Test("part of a hello: the stepped handshake is pending, still awaiting the hello; no more input times out")
    func partialHelloIsPending() throws {
        let session = try Session()
        let partialHello: [UInt8] = [0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03]
        _ = partialHello.withUnsafeBytes { Glibc.send(session.client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }

        #expect(ota_conn_wait_input(session.conn, 5000) == code(OTA_OK))
        #expect(ota_conn_handshake_advance(session.conn, 5000) == code(OTA_PENDING), "\(session.detail)")
        #expect(ota_conn_handshake_awaits_hello(session.conn) == 1)
        #expect(ota_conn_wait_input(session.conn, 50) == code(OTA_ERR_TIMEOUT))
        #expect(session.detail == "handshake: deadline passed")
        #expect(ota_conn_handshake_awaits_hello(nil) == 0)
        #expect(ota_conn_handshake_advance(nil, 10) == code(OTA_ERR_USAGE))
        #expect(ota_conn_wait_input(nil, 10) == code(OTA_ERR_USAGE))
    }

    /// A whole TLS 1.2 ClientHello for the ECDSA certificate: ECDHE-ECDSA-AES128-GCM-SHA256, P-256,
    /// ecdsa_secp256r1_sha256, a zero random and no session id.
    static let ecdsaHello: [UInt8] = [0x16, 0x03, 0x01, 0x00, 0x47,   // record: handshake, 71 bytes
        0x01, 0x00, 0x00, 0x43, 0x03, 0x03] + [UInt8](repeating: 0, count: 32) + [0x00,
        0x00, 0x04, 0xc0, 0x2b, 0x00, 0xff, 0x01, 0x00,             // suites, null compression
        0x00, 0x16, 0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17, // supported_groups: P-256
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,                         // ec_point_formats
        0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03]             // signature_algorithms

    @Test("a whole hello: the server answers it, then the stepped handshake is pending on the device")
    func answeredHelloIsPendingOnTheDevice() throws {
        let session = try Session()
        _ = Self.ecdsaHello.withUnsafeBytes { Glibc.send(session.client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }

        #expect(ota_conn_wait_input(session.conn, 5000) == code(OTA_OK))
        #expect(ota_conn_handshake_advance(session.conn, 5000) == code(OTA_PENDING), "\(session.detail)")
        #expect(ota_conn_handshake_awaits_hello(session.conn) == 0)
        var answer = [UInt8](repeating: 0, count: 1)
        #expect(recv(session.client, &answer, 1, 0) == 1 && answer[0] == 0x16, "no handshake record came back")
    }

    @Test("a peer speaking HTTP instead of TLS is a protocol error, with a detail")
    func handshakeGarbage() throws {
        let session = try Session()
        session.send("GET / HTTP/1.1\r\nHost: ota-agent\r\n\r\n")
        #expect(ota_conn_handshake(session.conn, 5000) == code(OTA_ERR_PROTOCOL))
        #expect(!session.detail.isEmpty)
    }

    @Test("a peer that closes before the handshake is reported as closed")
    func handshakePeerCloses() throws {
        let session = try Session()
        shutdown(session.client, Int32(SHUT_WR))
        #expect(ota_conn_handshake(session.conn, 5000) == code(OTA_ERR_CLOSED), "detail: \(session.detail)")
    }

    @Test("a fired cancel source ends the handshake as cancelled")
    func handshakeCancelled() throws {
        let cancel = try #require(ota_cancel_new())
        defer { ota_cancel_free(cancel) }
        let session = try Session(cancel: cancel)
        ota_cancel_fire(cancel)
        let start = ContinuousClock.now
        #expect(ota_conn_handshake(session.conn, 10_000) == code(OTA_ERR_CANCELLED))
        #expect(milliseconds(since: start) < 1000)
    }

    @Test("abort resets the TCP connection: the peer reads ECONNRESET, not an end of file")
    func abortResets() throws {
        let session = try Session()
        ota_conn_abort(session.conn)
        var byte: UInt8 = 0
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(session.client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let got = recv(session.client, &byte, 1, 0)
        let error = errno
        #expect(got == -1)
        #expect(error == ECONNRESET, "errno \(error)")
    }

    @Test("after abort every call is a usage error or a no-op")
    func usageAfterAbort() throws {
        let session = try Session()
        ota_conn_abort(session.conn)
        ota_conn_abort(session.conn)
        #expect(ota_conn_handshake(session.conn, 10) == code(OTA_ERR_USAGE))
        var buffer = [UInt8](repeating: 0, count: 64)
        var length = 99
        #expect(ota_conn_read_certificate(session.conn, &buffer, buffer.count, &length, 10) == code(OTA_ERR_USAGE))
        let opened = ota_image_open(Fixture.path("device.der"), nil, nil, 0)
        let image = try #require(opened)
        defer { ota_image_free(image) }
        var limits = ota_transfer_limits(stall_timeout_ms: 10, total_timeout_ms: 10)
        var sent: UInt64 = 99
        #expect(ota_conn_send_image(session.conn, image, &limits, nil, nil, &sent) == code(OTA_ERR_USAGE))
        #expect(sent == 0)
        #expect(ota_conn_finish(session.conn, 10) == code(OTA_ERR_USAGE))
        #expect(ota_conn_refuse(session.conn) == code(OTA_ERR_USAGE))
        #expect(String(cString: ota_conn_protocol(session.conn)) == "")
        #expect(String(cString: ota_conn_cipher(session.conn)) == "")
    }

    @Test("NULL connection, config, buffers, image or limits are usage errors; NULL getters give \"\"")
    func nullArguments() throws {
        #expect(ota_conn_new(nil, -1, nil) == nil)
        let created = ota_server_config_new(Fixture.path("agent-ec.crt"), Fixture.path("agent-ec.key"), nil, nil, 0)
        let config = try #require(created)
        defer { ota_server_config_free(config) }
        #expect(ota_conn_new(config, -1, nil) == nil)

        #expect(ota_conn_handshake(nil, 10) == code(OTA_ERR_USAGE))
        var buffer = [UInt8](repeating: 0, count: 64)
        var length = 0
        #expect(ota_conn_read_certificate(nil, &buffer, buffer.count, &length, 10) == code(OTA_ERR_USAGE))
        var limits = ota_transfer_limits(stall_timeout_ms: 10, total_timeout_ms: 10)
        var sent: UInt64 = 99
        #expect(ota_conn_send_image(nil, nil, &limits, nil, nil, &sent) == code(OTA_ERR_USAGE))
        #expect(sent == 0)
        #expect(ota_conn_send_image(nil, nil, nil, nil, nil, nil) == code(OTA_ERR_USAGE))
        #expect(ota_conn_finish(nil, 10) == code(OTA_ERR_USAGE))
        #expect(ota_conn_refuse(nil) == code(OTA_ERR_USAGE))
        #expect(String(cString: ota_conn_protocol(nil)) == "")
        #expect(String(cString: ota_conn_cipher(nil)) == "")
        #expect(String(cString: ota_conn_transfer_path(nil)) == "")
        #expect(String(cString: ota_conn_detail(nil)) == "")
        ota_conn_abort(nil)
        ota_conn_free(nil)

        let session = try Session()
        #expect(ota_conn_read_certificate(session.conn, nil, 64, &length, 10) == code(OTA_ERR_USAGE))
        #expect(ota_conn_read_certificate(session.conn, &buffer, buffer.count, nil, 10) == code(OTA_ERR_USAGE))
        let opened = ota_image_open(Fixture.path("device.der"), nil, nil, 0)
        let image = try #require(opened)
        defer { ota_image_free(image) }
        #expect(ota_conn_send_image(session.conn, nil, &limits, nil, nil, &sent) == code(OTA_ERR_USAGE))
        #expect(ota_conn_send_image(session.conn, image, nil, nil, nil, &sent) == code(OTA_ERR_USAGE))
    }
}

@Suite("conn.c: ota_conn_peer_certificate, ota_backend_supports_proof")
struct PeerCertificateTests {
    @Test("the OpenSSL backend asks devices for a client certificate; the mbedTLS backend cannot")
    func backendSupportsProof() {
        #if MbedTLS
        #expect(ota_backend_supports_proof() == 0)
        #else
        #expect(ota_backend_supports_proof() == 1)
        #endif
    }

    @Test("before the handshake there is no client certificate: OTA_OK, NULL and 0")
    func noneBeforeHandshake() throws {
        let session = try Session()
        var der: UnsafePointer<UInt8>? = UnsafePointer(bitPattern: 1)
        var length = 99
        #expect(ota_conn_peer_certificate(session.conn, &der, &length) == code(OTA_OK))
        #expect(der == nil && length == 0)
    }

    @Test("NULL connection or out-parameters are usage errors, and the out-parameters given are cleared")
    func nullArguments() throws {
        let session = try Session()
        var der: UnsafePointer<UInt8>? = UnsafePointer(bitPattern: 1)
        var length = 99
        #expect(ota_conn_peer_certificate(nil, &der, &length) == code(OTA_ERR_USAGE))
        #expect(der == nil && length == 0)
        #expect(ota_conn_peer_certificate(session.conn, nil, &length) == code(OTA_ERR_USAGE))
        #expect(ota_conn_peer_certificate(session.conn, &der, nil) == code(OTA_ERR_USAGE))
    }
}
