import Foundation
import OTACore
import Testing

@Suite("util.c: ota_cancel_*")
struct CancelTests {
    @Test("a new source is not fired; waiting on it times out after the timeout")
    func unfiredTimesOut() throws {
        let cancel = try #require(ota_cancel_new())
        defer { ota_cancel_free(cancel) }
        #expect(ota_cancel_is_fired(cancel) == 0)

        let start = ContinuousClock.now
        #expect(ota_cancel_wait(cancel, 50) == code(OTA_ERR_TIMEOUT))
        let waited = milliseconds(since: start)
        #expect(waited >= 45)
        #expect(waited < 2000)
        #expect(ota_cancel_wait(cancel, 0) == code(OTA_ERR_TIMEOUT))
    }

    @Test("once fired it stays fired, and every wait returns cancelled at once")
    func firedIsCancelled() throws {
        let cancel = try #require(ota_cancel_new())
        defer { ota_cancel_free(cancel) }
        ota_cancel_fire(cancel)
        #expect(ota_cancel_is_fired(cancel) != 0)

        for _ in 0..<3 {
            let start = ContinuousClock.now
            #expect(ota_cancel_wait(cancel, 10_000) == code(OTA_ERR_CANCELLED))
            #expect(milliseconds(since: start) < 1000)
        }
        #expect(ota_cancel_wait(cancel, 0) == code(OTA_ERR_CANCELLED))
        #expect(ota_cancel_wait(cancel, -1) == code(OTA_ERR_CANCELLED))

        ota_cancel_fire(cancel)
        #expect(ota_cancel_is_fired(cancel) != 0, "firing twice keeps it fired")
    }

    @Test("firing from another thread ends a wait in progress promptly")
    func fireFromAnotherThread() throws {
        let cancel = try #require(ota_cancel_new())
        defer { ota_cancel_free(cancel) }
        let handle = SendableHandle(raw: cancel)
        let start = ContinuousClock.now
        let waiter = ThreadResult { () -> (Int32, Double) in
            let status = ota_cancel_wait(handle.raw, 10_000)
            return (status, milliseconds(since: start))
        }
        Thread.sleep(forTimeInterval: 0.1)
        let firedAt = milliseconds(since: start)
        ota_cancel_fire(cancel)
        let (status, returnedAt) = try #require(waiter.wait(seconds: 15))
        #expect(status == code(OTA_ERR_CANCELLED))
        #expect(returnedAt - firedAt < 1000)
    }

    @Test("a NULL source is never fired, firing it does nothing, waiting on it sleeps then times out")
    func nullSource() {
        #expect(ota_cancel_is_fired(nil) == 0)
        ota_cancel_fire(nil)
        let start = ContinuousClock.now
        #expect(ota_cancel_wait(nil, 30) == code(OTA_ERR_TIMEOUT))
        #expect(milliseconds(since: start) >= 25)
        ota_cancel_free(nil)
    }
}

@Suite("util.c: names, backend, log callback")
struct UtilNameTests {
    @Test("ota_status_name gives each code its stable name",
          arguments: [
              (OTA_PENDING, "pending"), (OTA_OK, "ok"), (OTA_ERR_CLOSED, "closed"), (OTA_ERR_TIMEOUT, "timeout"),
              (OTA_ERR_PROTOCOL, "protocol"), (OTA_ERR_IO, "io"), (OTA_ERR_USAGE, "usage"),
              (OTA_ERR_CONFIG, "config"), (OTA_ERR_MEMORY, "memory"), (OTA_ERR_CHANGED, "changed"),
              (OTA_ERR_CANCELLED, "cancelled"), (OTA_ERR_INTERNAL, "internal"),
          ])
    func statusName(status: ota_status, name: String) {
        #expect(String(cString: ota_status_name(status.rawValue)) == name)
    }

    @Test("codes outside the enumeration are \"unknown\"", arguments: [2, -11, 42, Int32.min, Int32.max])
    func unknownStatus(status: Int32) {
        #expect(String(cString: ota_status_name(status)) == "unknown")
    }

    @Test("the backend name matches the trait the package was built with")
    func backendName() {
        let name = String(cString: ota_backend_name())
        #if MbedTLS
        #expect(name == "mbedtls")
        #else
        #expect(name == "openssl")
        #endif
        let version = String(cString: ota_backend_version())
        #expect(!version.isEmpty)
        #expect(version.lowercased().contains(name == "openssl" ? "openssl" : "mbed"), "version text \(version)")
    }

    @Test("setting no log callback (NULL callback and context) is accepted")
    func nullLogCallback() {
        ota_set_log_callback(nil, nil)
    }
}
