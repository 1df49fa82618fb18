import Foundation
import Testing

/// Where the tests find the repository's files and the built programs.
enum Fixtures {
    /// The package root: the nearest folder above this file holding Package.swift.
    static let repositoryRoot: URL = {
        var folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while folder.path != "/" {
            if FileManager.default.fileExists(atPath: folder.appendingPathComponent("Package.swift").path) {
                return folder
            }
            folder.deleteLastPathComponent()
        }
        fatalError("no Package.swift above \(#filePath)")
    }()

    static let certificates = repositoryRoot.appendingPathComponent("firmware-sample/certs")
    static let sampleImage = repositoryRoot.appendingPathComponent("firmware-sample/sample-firmware.bin")
    static let trustedRoots = certificates.appendingPathComponent("roots")

    static func certificate(_ name: String) -> URL {
        certificates.appendingPathComponent(name)
    }

    /// The build products folder: the test bundle sits next to the executables there.
    static let productsFolder = Bundle.main.bundleURL

    /// A program built by `swift build`; fails the test with a clear message if it is missing.
    static func program(_ name: String) throws -> URL {
        let url = productsFolder.appendingPathComponent(name)
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw HarnessError("\(name) not found in \(productsFolder.path); build the package first")
        }
        return url
    }

    /// A program of the system, looked up in the usual folders; nil when absent.
    static func systemProgram(_ name: String) -> URL? {
        ["/usr/bin", "/usr/local/bin", "/bin"]
            .map { URL(fileURLWithPath: $0).appendingPathComponent(name) }
            .first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    /// The environment every child starts from: nothing of the test runner's leaks in.
    static let baseEnvironment: [String: String] = {
        var environment = ["PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"]
        // A sanitizer run (scripts/sanitize) sets these for the test runner; the programs under
        // test are built the same way and need them too. OTA_DEADLINE_SCALE stretches the
        // agent's deadlines on slow (sanitized) builds.
        let forwarded = ["ASAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS", "UBSAN_OPTIONS", "OTA_DEADLINE_SCALE",
                         "SWIFT_BACKTRACE"]
        for name in forwarded {
            if let value = ProcessInfo.processInfo.environment[name] { environment[name] = value }
        }
        return environment
    }()
}

/// A folder of its own for one test, removed at the end of the test.
struct ScratchFolder {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("ota-e2e-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    /// Writes `bytes` to a new file of this folder.
    func write(_ name: String, _ bytes: [UInt8]) throws -> URL {
        let target = file(name)
        try Data(bytes).write(to: target)
        return target
    }

    /// Writes `count` random bytes to a new file of this folder.
    func writeRandom(_ name: String, count: Int) throws -> URL {
        let source = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/dev/urandom"))
        defer { try? source.close() }
        let target = file(name)
        try (source.readData(ofLength: count)).write(to: target)
        return target
    }

    func remove() {
        try? FileManager.default.removeItem(at: url)
    }
}

/// SHA-256 of a file as lower-case hex, by the system's sha256sum (Swift has no CryptoKit here).
func sha256Digest(of file: URL) async throws -> String {
    guard let tool = Fixtures.systemProgram("sha256sum") else {
        throw HarnessError("sha256sum is not installed")
    }
    let child = try ChildProcess(name: "sha256sum", executable: tool, arguments: [file.path],
                                 environment: Fixtures.baseEnvironment)
    defer { child.kill() }
    guard let ending = await child.waitForExit(within: .seconds(20)), ending == .exited(0),
          let digest = child.stdout.lines.first?.split(separator: " ").first, digest.count == 64
    else {
        throw HarnessError("sha256sum \(file.path) failed\n\(child.transcript)")
    }
    return String(digest)
}

/// Loopback sockets for tests that need a port in a known state.
enum LoopbackSocket {
    /// A TCP socket listening on 127.0.0.1 at an ephemeral port: (descriptor, port).
    static func listening() throws -> (Int32, UInt16) {
        try DescriptorCreation.serialized { try openListening(port: 0) }
    }

    private static func openListening(port: UInt16) throws -> (Int32, UInt16) {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw HarnessError("socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(descriptor, 1) == 0 else {
            close(descriptor)
            throw HarnessError("bind/listen on 127.0.0.1: errno \(errno)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard named == 0 else {
            close(descriptor)
            throw HarnessError("getsockname: errno \(errno)")
        }
        return (descriptor, UInt16(bigEndian: address.sin_port))
    }

    /// The errno of a TCP connect to 127.0.0.1:`port` (0 when it connected).
    static func connectError(port: UInt16) -> Int32 {
        switch connected(port: port) {
        case .success(let descriptor):
            close(descriptor)
            return 0
        case .failure(let error):
            return error.code
        }
    }

    /// A TCP connection to 127.0.0.1:`port` from the loopback address `source` (any of
    /// 127.0.0.0/8, to play another client), left open for the caller to close.
    static func connect(port: UInt16, from source: String? = nil) throws -> Int32 {
        switch connected(port: port, from: source) {
        case .success(let descriptor): return descriptor
        case .failure(let error): throw HarnessError("connect to 127.0.0.1:\(port): errno \(error.code)")
        }
    }

    /// A client that connects and sends the start of a ClientHello (a record header and the
    /// first bytes of a 200-byte hello), then nothing: it holds whatever a handshaking device
    /// holds until the agent's handshake deadline.
    static func connectSendingPartialHello(port: UInt16, from source: String? = nil) throws -> Int32 {
        let partialHello: [UInt8] = [0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03]
        let descriptor = try connect(port: port, from: source)
        guard write(descriptor, partialHello, partialHello.count) == partialHello.count else {
            close(descriptor)
            throw HarnessError("write of a partial hello to 127.0.0.1:\(port): errno \(errno)")
        }
        return descriptor
    }

    /// A client that sends a whole TLS 1.2 ClientHello, waits for the agent's answering flight,
    /// then sends nothing more: to the agent it looks like a device computing its key exchange.
    static func connectStallingAfterServerFlight(port: UInt16) throws -> Int32 {
        let descriptor = try connect(port: port)
        let hello = HandMadeTLS.tls12Hello
        var flight = [UInt8](repeating: 0, count: 1)
        var watched = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard write(descriptor, hello, hello.count) == hello.count, poll(&watched, 1, 10_000) == 1,
              read(descriptor, &flight, 1) == 1, flight[0] == HandMadeTLS.handshakeType else {
            close(descriptor)
            throw HarnessError("no handshake flight from 127.0.0.1:\(port) for a TLS 1.2 hello")
        }
        return descriptor
    }

    struct ConnectError: Error { let code: Int32 }

    private static func connected(port: UInt16, from source: String? = nil) -> Result<Int32, ConnectError> {
        DescriptorCreation.serialized {
            let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard descriptor >= 0 else { return .failure(ConnectError(code: errno)) }
            if let source {
                var local = sockaddr_in()
                local.sin_family = sa_family_t(AF_INET)
                local.sin_addr.s_addr = inet_addr(source)
                let bound = withUnsafePointer(to: &local) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
                guard bound == 0 else {
                    let code = errno
                    close(descriptor)
                    return .failure(ConnectError(code: code))
                }
            }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = port.bigEndian
            let status = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard status == 0 else {
                let code = errno
                close(descriptor)
                return .failure(ConnectError(code: code))
            }
            return .success(descriptor)
        }
    }

    /// A loopback port nobody listens on: bound once by us, then released. It is chosen outside
    /// the kernel's ephemeral range, so that no other test running meanwhile is handed it for its
    /// own port 0 before the test that asked for it listens there itself.
    static func closedPort() throws -> UInt16 {
        let (low, high) = ephemeralRange()
        let outside = low > 11_024 ? Array(UInt16(10_024)..<UInt16(low)) : Array(UInt16(min(high + 1, 65_535))...65_535)
        for _ in 0..<100 {
            guard let port = outside.randomElement() else { break }
            if let (descriptor, _) = try? DescriptorCreation.serialized({ try openListening(port: port) }) {
                close(descriptor)
                return port
            }
        }
        throw HarnessError("no free loopback port outside the ephemeral range")
    }

    /// The kernel's range for ephemeral ports (Linux's default when it cannot be read).
    private static func ephemeralRange() -> (Int, Int) {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let numbers = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
        return numbers.count == 2 ? (numbers[0], numbers[1]) : (32_768, 60_999)
    }

    /// Whether this host can bind the IPv6 loopback address ::1.
    static let ipv6LoopbackAvailable: Bool = DescriptorCreation.serialized {
        let descriptor = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_addr = in6addr_loopback
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) == 0
            }
        }
    }
}
