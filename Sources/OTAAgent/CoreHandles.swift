import OTACore

/// The detail buffer size the C core's creation calls write into.
private let detailCapacity = 256

/// Why a C constructor returned NULL.
private struct ConstructionFailure: Error {
    let status: Int32
    let detail: String
}

/// Runs a C constructor that reports through `status` and a detail buffer.
private func construct(
    _ body: (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<CChar>, Int) -> OpaquePointer?
) -> Result<OpaquePointer, ConstructionFailure> {
    var status: Int32 = 0
    var detail = [CChar](repeating: 0, count: detailCapacity)
    let handle = detail.withUnsafeMutableBufferPointer { buffer in
        body(&status, buffer.baseAddress!, buffer.count)
    }
    if let handle { return .success(handle) }
    let text = detail.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    return .failure(ConstructionFailure(status: status, detail: text))
}

/// The server's certificate and key, loaded and checked once, shared by every session.
/// Read-only after creation, so any thread may use it.
final class ServerCredentials: @unchecked Sendable {
    let raw: OpaquePointer

    /// `tls` narrows the core's TLS policy; the core refuses anything that would widen it.
    /// A failure is named by the setting it is about, as `names` has it.
    init(certificatePath: String, keyPath: String, tls: TLSPolicySettings = TLSPolicySettings(),
         names: SettingNames = SettingNames()) throws(AgentError)
    {
        let minimum = tls.minimumVersion == .tls13 ? OTA_TLS_1_3 : OTA_TLS_1_2
        let result = construct {
            ota_server_config_new_with_policy(certificatePath, keyPath, tls.ciphers, minimum, $0, $1, $2)
        }
        switch result {
        case .success(let handle): raw = handle
        case .failure(let failure):
            throw .configuration("\(Self.settingName(failure.detail, names)): \(failure.detail)")
        }
    }

    /// Which setting a credentials failure is about, for the message.
    private static func settingName(_ detail: String, _ names: SettingNames) -> String {
        if detail.hasPrefix("tls ciphers:") { return names[.tlsCiphers] }
        if detail.hasPrefix("tls min version:") { return names[.tlsMinVersion] }
        if detail.hasPrefix("certificate and key:") { return "\(names[.certificatePath]) / \(names[.keyPath])" }
        return detail.hasPrefix("private key:") ? names[.keyPath] : names[.certificatePath]
    }

    deinit { ota_server_config_free(raw) }

    var certificate: CertificateIdentity { CertificateIdentity(certificateInfo) }

    /// The suites in effect, OpenSSL names joined by ':', in the server's preference order.
    var ciphers: String { String(cString: ota_server_config_ciphers(raw)) }

    /// The certificate's CN or a DNS name is "ota-agent", as the field devices check.
    var certificateNamesOTAAgent: Bool { certificateInfo.has_ota_agent_name != 0 }

    private var certificateInfo: ota_cert_info {
        var info = ota_cert_info()
        ota_server_config_certificate(raw, &info)
        return info
    }
}

/// The image file, opened once and read by offset by every transfer.
final class FirmwareImage: @unchecked Sendable {
    let raw: OpaquePointer
    let path: String
    /// The setting that named the file, for messages about it.
    let settingName: String

    init(path: String, settingName: String = SettingNames()[.firmwarePath]) throws(AgentError) {
        self.path = path
        self.settingName = settingName
        switch construct({ ota_image_open(path, $0, $1, $2) }) {
        case .success(let handle): raw = handle
        case .failure(let failure):
            throw .configuration("\(settingName): \(failure.detail)")
        }
        // The C core can send an empty image; a device would take it as complete, so the
        // agent never serves one.
        guard size > 0 else {
            throw .configuration("\(settingName): \(path) is empty")
        }
    }

    deinit { ota_image_free(raw) }

    var size: UInt64 { ota_image_size(raw) }

    /// Whether the path still names the file opened at start (not replaced, not deleted).
    var pathStillNamesIt: Bool { ota_image_path_names_image(raw, path) != 0 }

    /// Copies the image into a private file in `directory` and serves that from now on (see
    /// `ota_image_make_private`); nil when done, else why not.
    func makePrivate(in directory: String) -> String? {
        var detail = [CChar](repeating: 0, count: 512)
        let status = ota_image_make_private(raw, directory, &detail, detail.count)
        guard status != OTA_OK.rawValue else { return nil }
        return detail.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// SHA-256 of the file as it is now, in lower-case hex.
    func sha256() throws(AgentError) -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        let status = ota_image_sha256(raw, &digest)
        guard status == OTA_OK.rawValue else {
            throw AgentError(.internal, "cannot hash image \(path): \(statusName(status))")
        }
        return hex(digest)
    }
}

/// What an ESP-IDF app image says about itself (see `ota_app_image_info`); text is printable ASCII.
struct AppImageInfo: Sendable {
    let chip: String
    let project: String
    let version: String
    let idfVersion: String
    let segments: Int
    let hashAppended: Bool
    /// Bytes after the image proper, such as a secure boot signature block.
    let trailingBytes: UInt64
}

extension FirmwareImage {
    /// Checks the file as an ESP-IDF app image (`ota_image_check_app_format`): a defect is a
    /// configuration error naming it, a read failure an internal one.
    func checkAppFormat() throws(AgentError) -> AppImageInfo {
        var info = ota_app_image_info()
        var detail = [CChar](repeating: 0, count: 512)
        let status = ota_image_check_app_format(raw, &info, &detail, detail.count)
        let text = detail.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        guard status == OTA_OK.rawValue else {
            let setting = settingName
            guard status == OTA_ERR_CONFIG.rawValue else {
                throw AgentError(.internal, "\(setting): cannot check \(path): \(text)")
            }
            throw .configuration("\(setting): \(path) is not a valid ESP-IDF app image: \(text) "
                + "(--allow-any-image or \(EnvironmentKey.allowAnyImage.rawValue)=1 serves files of other formats)")
        }
        return AppImageInfo(chip: info.chip_name.map { String(cString: $0) } ?? "?",
                            project: Self.text(info.project_name), version: Self.text(info.version),
                            idfVersion: Self.text(info.idf_version), segments: Int(info.segment_count),
                            hashAppended: info.hash_appended != 0, trailingBytes: info.trailing_bytes)
    }

    /// A NUL-terminated C array field as a string.
    private static func text<T>(_ field: T) -> String {
        withUnsafeBytes(of: field) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}

/// A cancellation source: once fired, every blocking core call given it returns promptly.
final class CancelSource: @unchecked Sendable {
    let raw: OpaquePointer

    init() throws(AgentError) {
        guard let handle = ota_cancel_new() else {
            throw AgentError(.internal, "cannot create a cancellation event (eventfd)")
        }
        raw = handle
    }

    deinit { ota_cancel_free(raw) }

    func fire() { ota_cancel_fire(raw) }
    var isFired: Bool { ota_cancel_is_fired(raw) != 0 }

    /// Sleeps up to `duration`; true when woken by cancellation instead.
    func wait(_ duration: Duration) -> Bool {
        ota_cancel_wait(raw, duration.milliseconds) == OTA_ERR_CANCELLED.rawValue
    }
}

/// The listening socket. Closed in deinit, after every accept has returned.
final class Listener: @unchecked Sendable {
    let raw: OpaquePointer

    /// `settingName` names the settings a failure is about (see `listenerSettingName`).
    init(bindAddress: String?, port: UInt16, backlog: Int32, settingName: String) throws(AgentError) {
        switch construct({ ota_listener_new(bindAddress, port, backlog, $0, $1, $2) }) {
        case .success(let handle): raw = handle
        case .failure(let failure):
            throw .configuration("\(settingName): \(failure.detail)")
        }
    }

    deinit { ota_listener_free(raw) }

    var port: UInt16 { ota_listener_port(raw) }
    var address: String { String(cString: ota_listener_address(raw)) }

    enum Accepted {
        case connection(fd: Int32, peer: String, port: UInt16)
        case timedOut
        case stopped
        case failed(String)
    }

    /// Blocks until a connection waits to be accepted (`.connection` with fd -1: it is not
    /// taken), the timeout passes or `cancel` fires.
    func waitForConnection(timeout: Duration?, cancel: CancelSource) -> Accepted {
        let status = ota_listener_wait_connection(raw, Self.milliseconds(timeout), cancel.raw)
        switch status {
        case OTA_OK.rawValue: return .connection(fd: -1, peer: "", port: 0)
        case OTA_ERR_TIMEOUT.rawValue: return .timedOut
        case OTA_ERR_CANCELLED.rawValue: return .stopped
        default: return .failed("poll on the listening socket: \(statusName(status))")
        }
    }

    private static func milliseconds(_ timeout: Duration?) -> Int32 {
        timeout.map { max(0, $0.milliseconds) } ?? -1
    }

    /// Blocks until a device connects, the timeout passes or `cancel` fires.
    func accept(timeout: Duration?, cancel: CancelSource) -> Accepted {
        var fd: Int32 = -1
        var peerPort: UInt16 = 0
        var peer = [CChar](repeating: 0, count: 128)
        let timeoutMs = Self.milliseconds(timeout)
        let status = peer.withUnsafeMutableBufferPointer { buffer in
            ota_listener_accept(raw, timeoutMs, cancel.raw, &fd, buffer.baseAddress!, buffer.count,
                                &peerPort)
        }
        let text = peer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        switch status {
        case OTA_OK.rawValue: return .connection(fd: fd, peer: text, port: peerPort)
        case OTA_ERR_TIMEOUT.rawValue: return .timedOut
        case OTA_ERR_CANCELLED.rawValue: return .stopped
        default: return .failed(text)
        }
    }

    /// Makes a blocked accept, and every later one, return `.stopped`. Any thread.
    func interrupt() { ota_listener_interrupt(raw) }

    /// Closes the socket so new devices are refused at once. Only from the accepting thread,
    /// after it stopped accepting.
    func close() { ota_listener_close(raw) }
}

/// The result of one core call on a session.
struct CoreFailure: Error {
    let status: Int32
    let detail: String

    var name: String { statusName(status) }

    /// A wait outside the core (a queue of the agent's own) ended by cancellation.
    static func cancelled(in phase: String) -> CoreFailure {
        CoreFailure(status: OTA_ERR_CANCELLED.rawValue, detail: "\(phase): cancelled")
    }

    /// The agent closed the connection itself, for `reason`.
    static func closedByAgent(_ detail: String) -> CoreFailure {
        CoreFailure(status: OTA_ERR_CLOSED.rawValue, detail: detail)
    }
}

/// One device's TLS session. Used by one thread; ended by finish, refuse or abort.
final class DeviceConnection {
    private let raw: OpaquePointer

    /// Takes ownership of `fd`; on failure it has been reset and closed.
    init?(credentials: ServerCredentials, fd: Int32, cancel: CancelSource) {
        guard let handle = ota_conn_new(credentials.raw, fd, cancel.raw) else { return nil }
        raw = handle
    }

    deinit { ota_conn_free(raw) }

    private func check(_ status: Int32) throws(CoreFailure) {
        guard status == OTA_OK.rawValue else {
            throw CoreFailure(status: status, detail: String(cString: ota_conn_detail(raw)))
        }
    }

    /// Waits until the device has sent more bytes (or closed).
    func waitForInput(within deadline: Duration) throws(CoreFailure) {
        try check(ota_conn_wait_input(raw, max(.zero, deadline).milliseconds))
    }

    /// Runs the handshake as far as the bytes already here allow; true once it is complete.
    func advanceHandshake(within deadline: Duration) throws(CoreFailure) -> Bool {
        let status = ota_conn_handshake_advance(raw, max(.zero, deadline).milliseconds)
        if status == OTA_PENDING.rawValue { return false }
        try check(status)
        return true
    }

    /// True until the device's whole ClientHello has been read and answered.
    var awaitsHello: Bool { ota_conn_handshake_awaits_hello(raw) != 0 }

    var protocolName: String { String(cString: ota_conn_protocol(raw)) }
    var cipher: String { String(cString: ota_conn_cipher(raw)) }
    var transferPath: String { String(cString: ota_conn_transfer_path(raw)) }
    var transferNote: String { String(cString: ota_conn_transfer_note(raw)) }

    func readCertificate(within deadline: Duration) throws(CoreFailure) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: Int(OTA_DER_MAX_LENGTH))
        var length = 0
        let status = ota_conn_read_certificate(raw, &buffer, buffer.count, &length,
                                               deadline.milliseconds)
        try check(status)
        return Array(buffer.prefix(length))
    }

    /// The certificate the device presented as its TLS client certificate, DER; nil when it
    /// presented none (a legacy device, or a backend that does not ask). Valid after the
    /// handshake. Presenting it proved, by the handshake's signature, that the device holds its key.
    func presentedCertificate() throws(CoreFailure) -> [UInt8]? {
        var der: UnsafePointer<UInt8>?
        var length = 0
        try check(ota_conn_peer_certificate(raw, &der, &length))
        guard let der, length > 0 else { return nil }
        return Array(UnsafeBufferPointer(start: der, count: length))
    }

    /// Whether this build's TLS backend asks devices for a client certificate (OpenSSL: yes;
    /// mbedTLS 2.28: no, it cannot accept DICE certificates as client certificates).
    static var backendSupportsProof: Bool { ota_backend_supports_proof() != 0 }

    /// Sends the image; `progress` runs on this thread after each block.
    func send(image: FirmwareImage, deadlines: Deadlines,
              progress: (UInt64, UInt64) -> Void) -> (bytes: UInt64, failure: CoreFailure?)
    {
        var limits = ota_transfer_limits(stall_timeout_ms: deadlines.stall.milliseconds,
                                         total_timeout_ms: deadlines.transfer.milliseconds)
        var sent: UInt64 = 0
        let status = withoutActuallyEscaping(progress) { callback in
            withUnsafePointer(to: callback) { pointer in
                ota_conn_send_image(raw, image.raw, &limits, { context, done, total in
                    let callback = context!.assumingMemoryBound(
                        to: ((UInt64, UInt64) -> Void).self)
                    callback.pointee(done, total)
                }, UnsafeMutableRawPointer(mutating: pointer), &sent)
            }
        }
        if status == OTA_OK.rawValue { return (sent, nil) }
        return (sent, CoreFailure(status: status, detail: String(cString: ota_conn_detail(raw))))
    }

    /// Throws when the device sent anything after its certificate, or closed.
    func checkIdle() throws(CoreFailure) {
        try check(ota_conn_check_idle(raw))
    }

    func finish(within deadline: Duration) throws(CoreFailure) {
        try check(ota_conn_finish(raw, deadline.milliseconds))
    }

    func refuse() { ota_conn_refuse(raw) }
    func abort() { ota_conn_abort(raw) }
}

func statusName(_ status: Int32) -> String { String(cString: ota_status_name(status)) }

private let hexDigits = Array("0123456789abcdef".utf8)

func hex(_ bytes: some Sequence<UInt8>) -> String {
    // By hand: String(format:) per byte cost more than a session's certificate parse.
    let digits = hexDigits
    var text: [UInt8] = []
    text.reserveCapacity(64)
    for byte in bytes {
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0x0f)])
    }
    return String(decoding: text, as: UTF8.self)
}

/// The C core's status codes, as plain integers for comparisons.
enum CoreStatus {
    static let ok = OTA_OK.rawValue
    static let closed = OTA_ERR_CLOSED.rawValue
    static let timeout = OTA_ERR_TIMEOUT.rawValue
    static let protocolError = OTA_ERR_PROTOCOL.rawValue
    static let cancelled = OTA_ERR_CANCELLED.rawValue
    static let changed = OTA_ERR_CHANGED.rawValue
}
