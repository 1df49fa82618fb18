import Foundation
import Testing

/// How a plain TCP client's connection ended, as the client saw it.
enum RawEnding: String, Sendable {
    /// The agent ended the stream (FIN).
    case closed
    /// The agent reset the connection.
    case reset
    /// Nothing ended it before the client gave up.
    case stillOpen
}

/// What a plain TCP client received, and how its connection ended.
struct RawExchange: Sendable, CustomStringConvertible {
    let received: [UInt8]
    let ending: RawEnding
    let elapsed: Duration

    var description: String {
        "received \(received.count) bytes \(received.prefix(16).map { String(format: "%02x", $0) }.joined()) "
            + "ending=\(ending.rawValue) after \(elapsed)"
    }
}

/// A client that speaks raw bytes over TCP instead of TLS: garbage, a foreign protocol, or
/// hand-made TLS records no library will produce.
enum RawClient {
    /// Connects to 127.0.0.1:`port`, sends `bytes`, half-closes when `halfClose` says so, and
    /// reads until the agent ends the connection or `timeout` passes.
    static func exchange(port: UInt16, sending bytes: [UInt8], halfClose: Bool,
                         within timeout: Duration) async throws -> RawExchange
    {
        let descriptor = try LoopbackSocket.connect(port: port)
        return await onThreadOfItsOwn {
            defer { close(descriptor) }
            let start = ContinuousClock.now
            var sent = 0
            while sent < bytes.count {
                let count = bytes[sent...].withUnsafeBytes {
                    send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                }
                if count < 0 && errno == EINTR { continue }
                // The agent may refuse before it has read everything; what it answered still counts.
                if count <= 0 { break }
                sent += count
            }
            if halfClose {
                shutdown(descriptor, Int32(SHUT_WR))
            }
            let (received, ending) = readUntilEnd(descriptor, until: start + timeout)
            return RawExchange(received: received, ending: ending, elapsed: ContinuousClock.now - start)
        }
    }

    private static func readUntilEnd(_ descriptor: Int32, until deadline: ContinuousClock.Instant)
        -> ([UInt8], RawEnding)
    {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return (received, .stillOpen) }
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(left.timeInterval * 1000) + 1)
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 { continue }
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                received += buffer[0..<count]
            } else if count == 0 {
                return (received, .closed)
            } else if errno == ECONNRESET {
                return (received, .reset)
            } else if errno != EINTR {
                return (received, .closed)
            }
        }
    }
}

/// Runs blocking socket code on a thread of its own, so that no thread of the cooperative pool
/// (shared with the tests running in parallel) waits on a socket.
func onThreadOfItsOwn<Value: Sendable>(_ body: @escaping @Sendable () -> Value) async -> Value {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: body()) }
    }
}

/// TLS records made by hand, for hellos that neither OpenSSL nor mbedTLS on Debian 12 can
/// send any more (SSLv3) and for records cut short.
enum HandMadeTLS {
    static let handshakeType: UInt8 = 22
    static let alertType: UInt8 = 21

    /// A ClientHello in one handshake record, as a client whose highest version is `version`
    /// (0x0300 SSLv3, 0x0301 TLS 1.0, ... 0x0303 TLS 1.2) sends it: a fixed random, no session
    /// to resume, no compression, and `extensions` as (type, data) pairs (SSLv3 has none).
    static func clientHello(version: UInt16, cipherSuites: [UInt16],
                            extensions: [(UInt16, [UInt8])] = []) -> [UInt8]
    {
        var body = bigEndian(version, bytes: 2)
        body += (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
        body.append(0)
        body += bigEndian(cipherSuites.count * 2, bytes: 2)
        for suite in cipherSuites {
            body += bigEndian(suite, bytes: 2)
        }
        body += [1, 0]
        if !extensions.isEmpty {
            let encoded = extensions.flatMap { bigEndian($0.0, bytes: 2) + bigEndian($0.1.count, bytes: 2) + $0.1 }
            body += bigEndian(encoded.count, bytes: 2) + encoded
        }
        let handshake = [1] + bigEndian(body.count, bytes: 3) + body
        return record(type: handshakeType, version: version, payload: handshake)
    }

    /// An SSLv3 ClientHello offering only SSLv3 suites (3DES, RC4) and the renegotiation SCSV.
    static let sslv3Hello = clientHello(version: 0x0300, cipherSuites: [0x000A, 0x0005, 0x0004, 0x00FF])

    /// A TLS 1.2 ClientHello offering ECDHE-RSA with AES-GCM, P-256 and SHA-256 signatures,
    /// as the field devices do.
    static let tls12Hello = clientHello(
        version: 0x0303, cipherSuites: [0xC02F, 0xC030, 0x00FF],
        extensions: [(0x000A, [0x00, 0x02, 0x00, 0x17]),                 // supported_groups: secp256r1
                     (0x000B, [0x01, 0x00]),                             // ec_point_formats: uncompressed
                     (0x000D, [0x00, 0x04, 0x04, 0x01, 0x08, 0x04])])    // signature_algorithms

    static func record(type: UInt8, version: UInt16, payload: [UInt8]) -> [UInt8] {
        [type] + bigEndian(version, bytes: 2) + bigEndian(payload.count, bytes: 2) + payload
    }

    /// The content types of the whole records in `bytes`; nil when the bytes are not whole
    /// TLS records (a partial record, or no TLS at all).
    static func recordTypes(of bytes: [UInt8]) -> [UInt8]? {
        var types: [UInt8] = []
        var offset = 0
        while offset < bytes.count {
            guard bytes.count - offset >= 5 else { return nil }
            let length = Int(bytes[offset + 3]) << 8 | Int(bytes[offset + 4])
            guard bytes.count - offset - 5 >= length else { return nil }
            types.append(bytes[offset])
            offset += 5 + length
        }
        return types
    }

    private static func bigEndian<Number: BinaryInteger>(_ value: Number, bytes: Int) -> [UInt8] {
        (0..<bytes).reversed().map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
    }
}

/// A library for LD_PRELOAD that makes the disk fail under the agent: one pread(2) of the image
/// returns EIO once OTA_TEST_EIO_AFTER bytes of it have been read in all, and every other call
/// goes through. There is no other way to make a local file return EIO without root (no
/// device-mapper "error" target, no fault injection in an unprivileged test).
///
/// The C source lives here rather than as a .c file in the test folder: SwiftPM would take a
/// .c file there as a source of this Swift test target and refuse the mixed languages.
enum DiskErrorShim {
    static let source = #"""
    /* Test shim: one pread() of OTA_TEST_EIO_PATH fails with EIO, once OTA_TEST_EIO_AFTER bytes
     * of that file have been read in all. Everything else passes through to the C library. */
    #define _GNU_SOURCE
    #include <dlfcn.h>
    #include <errno.h>
    #include <stdatomic.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/types.h>
    #include <unistd.h>

    typedef ssize_t (*pread_function)(int, void *, size_t, off_t);

    static atomic_ullong bytes_read;
    static atomic_int failed_once;

    /* Compares the file behind fd with the path the test gave (both resolved by the kernel). */
    static int is_image(int fd)
    {
        const char *path = getenv("OTA_TEST_EIO_PATH");
        char link[64];
        char target[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t length = readlink(link, target, sizeof target - 1);
        if (path == NULL || length < 0) {
            return 0;
        }
        target[length] = '\0';
        return strcmp(target, path) == 0;
    }

    static ssize_t shim_pread(pread_function real, int fd, void *buffer, size_t count,
                              off_t offset)
    {
        if (atomic_load(&failed_once) || !is_image(fd)) {
            return real(fd, buffer, count, offset);
        }
        const char *after_text = getenv("OTA_TEST_EIO_AFTER");
        unsigned long long after = after_text != NULL ? strtoull(after_text, NULL, 10) : 0;
        if (atomic_load(&bytes_read) + count > after && !atomic_exchange(&failed_once, 1)) {
            errno = EIO;
            return -1;
        }
        ssize_t got = real(fd, buffer, count, offset);
        if (got > 0) {
            atomic_fetch_add(&bytes_read, (unsigned long long)got);
        }
        return got;
    }

    ssize_t pread(int fd, void *buffer, size_t count, off_t offset)
    {
        static pread_function real;
        if (real == NULL) {
            real = (pread_function)dlsym(RTLD_NEXT, "pread");
        }
        return shim_pread(real, fd, buffer, count, offset);
    }

    ssize_t pread64(int fd, void *buffer, size_t count, off_t offset)
    {
        static pread_function real;
        if (real == NULL) {
            real = (pread_function)dlsym(RTLD_NEXT, "pread64");
        }
        return shim_pread(real, fd, buffer, count, offset);
    }
    """#

    static let compiler = Fixtures.systemProgram("cc")

    /// Compiles the shim into `folder` and returns the library's path.
    static func build(in folder: ScratchFolder) async throws -> URL {
        guard let compiler else { throw HarnessError("no C compiler (cc) to build the disk error shim") }
        let sourceURL = folder.file("eio_shim.c")
        try source.write(to: sourceURL, atomically: true, encoding: .utf8)
        let library = folder.file("eio_shim.so")
        let child = try ChildProcess(
            name: "cc", executable: compiler,
            arguments: ["-shared", "-fPIC", "-O1", "-Wall", "-o", library.path, sourceURL.path, "-ldl"],
            environment: Fixtures.baseEnvironment)
        defer { child.kill() }
        guard await child.waitForExit(within: .seconds(60)) == .exited(0) else {
            throw HarnessError("cannot build the disk error shim\n\(child.transcript)")
        }
        return library
    }

    /// Agent settings that preload the shim: the image at `image` fails once `after` of its
    /// bytes have been read (the agent reads the whole image once at start to hash it).
    static func settings(library: URL, image: URL, failAfter after: Int) -> [String: String] {
        ["LD_PRELOAD": library.path,
         "OTA_TEST_EIO_PATH": image.resolvingSymlinksInPath().path,
         "OTA_TEST_EIO_AFTER": String(after)]
    }
}
