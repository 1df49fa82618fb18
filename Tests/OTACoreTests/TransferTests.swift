import Foundation
import OTACore
import Testing

/// Whole sessions through the C API alone, against `openssl s_client` as the device: what the
/// Swift layer never does (an empty image) must still behave.
@Suite("conn.c: a whole session at the C level")
struct CoreTransferTests {
    @Test("an empty image: the device gets a clean end and no byte")
    func emptyImageEndsCleanly() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let imagePath = try directory.write("empty.bin", [])
        let received = directory.path("received.bin")

        var status: Int32 = 0
        let openedImage = ota_image_open(imagePath, &status, nil, 0)
        let image = try #require(openedImage)
        defer { ota_image_free(image) }
        let device = try DeviceConnection(output: received, startClient: startClient)
        let (client, conn) = (device.client, device.conn)

        #expect(ota_conn_handshake(conn, 10_000) == code(OTA_OK), "\(String(cString: ota_conn_detail(conn)))")
        var certificate = [UInt8](repeating: 0, count: Int(OTA_DER_MAX_LENGTH))
        var length = 0
        #expect(ota_conn_read_certificate(conn, &certificate, certificate.count, &length, 10_000) == code(OTA_OK))
        #expect(Array(certificate.prefix(length)) == (try Fixture.bytes("device.der")))

        var limits = ota_transfer_limits(stall_timeout_ms: 5_000, total_timeout_ms: 10_000)
        var sent: UInt64 = 99
        #expect(ota_conn_send_image(conn, image, &limits, nil, nil, &sent) == code(OTA_OK))
        #expect(sent == 0)
        #expect(ota_conn_finish(conn, 5_000) == code(OTA_OK), "\(String(cString: ota_conn_detail(conn)))")

        client.waitUntilExit()
        #expect(client.terminationStatus == 0)
        #expect((try Data(contentsOf: URL(fileURLWithPath: received))).isEmpty)
    }

    /// `openssl s_client` as a TLS 1.2 device: sends device.der, writes what it receives.
    private func startClient(port: UInt16, output: String) throws -> Process {
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        client.arguments = ["s_client", "-connect", "127.0.0.1:\(port)", "-tls1_2", "-quiet",
                            "-CAfile", Fixture.path("agent-rsa.crt"), "-verify_hostname", "ota-agent",
                            "-verify_return_error"]
        client.standardInput = try FileHandle(forReadingFrom: Fixture.certificates.appendingPathComponent("device.der"))
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        client.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        client.standardError = FileHandle.nullDevice
        try client.run()
        return client
    }
}

/// The agent's side of one connection from `openssl s_client`: a server configuration with the
/// RSA certificate, a listener, the client started against it, and the accepted `ota_conn`.
private final class DeviceConnection {
    let config: OpaquePointer
    let listener: OpaquePointer
    let client: Process
    let conn: OpaquePointer

    init(output: String, startClient: (UInt16, String) throws -> Process) throws {
        var status: Int32 = 0
        let created = ota_server_config_new(Fixture.path("agent-rsa.crt"), Fixture.path("agent-rsa.key"),
                                            &status, nil, 0)
        config = try #require(created)
        let opened = ota_listener_new("127.0.0.1", 0, 4, &status, nil, 0)
        listener = try #require(opened)
        client = try startClient(ota_listener_port(listener), output)
        var fd: Int32 = -1
        var peer = [CChar](repeating: 0, count: 64)
        try #require(ota_listener_accept(listener, 10_000, nil, &fd, &peer, peer.count, nil) == code(OTA_OK))
        conn = try #require(ota_conn_new(config, fd, nil))
    }

    deinit {
        if client.isRunning { client.terminate() }
        ota_conn_free(conn)
        ota_listener_free(listener)
        ota_server_config_free(config)
    }
}
