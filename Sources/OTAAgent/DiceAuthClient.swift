import CCurlShim
import CLibcurl
import Foundation

/// Dice-Auth's answer about one attestation certificate.
public enum Verdict: Sendable, Equatable {
    /// HTTP 200: the device is genuine.
    case verified
    /// Any other HTTP status: not verified.
    case rejected(status: Int)
    /// No usable answer (refused, timed out, malformed, too large): not verified.
    case unavailable(reason: String)

    public var isVerified: Bool { self == .verified }

    /// A short word for log lines.
    public var name: String {
        switch self {
        case .verified: "verified"
        case .rejected: "rejected"
        case .unavailable: "unavailable"
        }
    }
}

/// What one verification cost, for the logs.
public struct VerificationReport: Sendable {
    public let verdict: Verdict
    public let attempts: Int
    public let duration: Duration
    /// The last HTTP status seen, 0 when none.
    public let httpStatus: Int
}

/// Asks Dice-Auth about attestation certificates over HTTP(S) with libcurl.
///
/// `verify` blocks its calling thread for up to the decision deadline: call it from a thread
/// of the agent's own, never from Swift's cooperative pool. It fails closed: only HTTP 200 is
/// `.verified`. Transport errors, time-outs, 429 and 5xx are retried per the policy; other
/// statuses are final. Redirects are not followed.
public final class DiceAuthClient: @unchecked Sendable {
    /// The most of an answer's body read; a longer answer is malformed.
    static let maxAnswerBytes = 64 * 1024

    private let url: String
    private let settings: DiceAuthSettings
    let gate: FairGate
    /// curl handles between requests: at most one per gate slot. Reusing one keeps curl's
    /// per-handle set-up (its internal multi handle and wake-up socket pair) across requests;
    /// connections are still never reused (see `configure`).
    private let handlesLock = NSLock()
    private var idleHandles: [UnsafeMutableRawPointer] = []

    public init(url: String, settings: DiceAuthSettings) {
        DiceAuthClient.initializeCurl
        self.url = url
        self.settings = settings
        self.gate = FairGate(limit: settings.concurrency)
    }

    deinit {
        idleHandles.forEach { curl_easy_cleanup($0) }
    }

    private func takeHandle() -> UnsafeMutableRawPointer? {
        handlesLock.withLock { idleHandles.popLast() } ?? curl_easy_init()
    }

    private func returnHandle(_ handle: UnsafeMutableRawPointer) {
        curl_easy_reset(handle)
        handlesLock.withLock { idleHandles.append(handle) }
    }

    /// curl_global_init is not thread-safe: run it once, before any thread uses curl.
    private static let initializeCurl: Void = {
        curl_global_init(Int(CURL_GLOBAL_DEFAULT))
    }()

    /// Why curl would refuse `url`, or nil when it takes it (checked once, at start).
    static func urlProblem(_ url: String) -> String? {
        guard let parsed = curl_url() else { return "cannot check the URL (out of memory)" }
        defer { curl_url_cleanup(parsed) }
        let code = curl_url_set(parsed, CURLUPART_URL, url, 0)
        return code == CURLUE_OK ? nil : String(cString: curl_url_strerror(code))
    }

    /// Verifies a certificate given in PEM, within `deadline` in all.
    func verify(pem: String, deadline: Duration, cancel: CancelSource,
                random: () -> Double = { Double.random(in: 0...1) }) -> VerificationReport
    {
        let clock = ContinuousClock()
        let start = clock.now
        var attempts = 0
        while true {
            let attempt = queuedPost(pem: pem, until: start + deadline, cancel: cancel)
            attempts += 1
            let elapsed = clock.now - start
            if !attempt.retryable || cancel.isFired {
                return VerificationReport(verdict: attempt.verdict, attempts: attempts,
                                          duration: elapsed, httpStatus: attempt.status)
            }

            let delay = settings.retry.nextDelay(attemptsMade: attempts, elapsed: elapsed,
                                                 retryAfter: attempt.retryAfter,
                                                 remaining: deadline - elapsed, random: random())
            guard let delay, !cancel.wait(delay) else {
                return VerificationReport(verdict: attempt.givenUp(after: attempts), attempts: attempts,
                                          duration: clock.now - start, httpStatus: attempt.status)
            }
        }
    }

    /// One POST and how to read its outcome.
    struct Attempt {
        var verdict: Verdict
        var retryable: Bool
        var status: Int = 0
        var retryAfter: Duration?

        /// The verdict once retries are over: an overloaded or failing Dice-Auth (429, 5xx)
        /// gave no verdict at all, which the logs should not call a rejection.
        func givenUp(after attempts: Int) -> Verdict {
            guard case .rejected(let status) = verdict else { return verdict }
            return .unavailable(reason: "HTTP \(status) after \(attempts) attempts")
        }
    }

    /// One POST once a slot is free; the wait in the queue counts against the deadline.
    private func queuedPost(pem: String, until deadline: ContinuousClock.Instant,
                            cancel: CancelSource) -> Attempt
    {
        guard gate.acquire(until: deadline) else {
            let reason = cancel.isFired ? "cancelled" : "decision deadline passed while queued for Dice-Auth"
            return Attempt(verdict: .unavailable(reason: reason), retryable: false)
        }
        defer { gate.release() }
        let remaining = deadline - .now
        return post(pem: pem, timeout: min(settings.retry.attemptTimeout, remaining), cancel: cancel)
    }

    private func post(pem: String, timeout: Duration, cancel: CancelSource) -> Attempt {
        guard timeout > .zero else {
            return Attempt(verdict: .unavailable(reason: "decision deadline passed"), retryable: false)
        }
        guard let handle = takeHandle() else {
            return Attempt(verdict: .unavailable(reason: "curl_easy_init failed"), retryable: false)
        }
        defer { returnHandle(handle) }

        let exchange = Exchange(cancel: cancel)
        var headers: UnsafeMutablePointer<curl_slist>? = curl_slist_append(nil, "Content-Type: text/plain")
        // curl would otherwise send "Expect: 100-continue" for bodies over 1 KiB and wait.
        headers = curl_slist_append(headers, "Expect:")
        defer { curl_slist_free_all(headers) }

        var body = Array(pem.utf8)
        let code = body.withUnsafeMutableBytes { bodyBytes in
            withExtendedLifetime(exchange) {
                configure(handle, body: bodyBytes, headers: headers, timeout: timeout,
                          exchange: Unmanaged.passUnretained(exchange).toOpaque())
                return curl_easy_perform(handle)
            }
        }
        return interpret(handle, code: code, exchange: exchange)
    }

    private func configure(_ handle: UnsafeMutableRawPointer, body: UnsafeMutableRawBufferPointer,
                           headers: UnsafeMutablePointer<curl_slist>?, timeout: Duration,
                           exchange: UnsafeMutableRawPointer)
    {
        ota_curl_set_string(handle, CURLOPT_URL, url)
        ota_curl_set_long(handle, CURLOPT_POST, 1)
        ota_curl_set_pointer(handle, CURLOPT_POSTFIELDS, body.baseAddress)
        ota_curl_set_long(handle, CURLOPT_POSTFIELDSIZE, body.count)
        ota_curl_set_pointer(handle, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(headers))
        ota_curl_set_long(handle, CURLOPT_NOSIGNAL, 1)
        // One connection per request, as before handles were reused: Dice-Auth as deployed
        // serves one connection at a time, and an idle one kept open here would block others.
        ota_curl_set_long(handle, CURLOPT_FORBID_REUSE, 1)
        ota_curl_set_long(handle, CURLOPT_FOLLOWLOCATION, 0)
        ota_curl_set_string(handle, CURLOPT_PROTOCOLS_STR, "http,https")
        ota_curl_set_long(handle, CURLOPT_CONNECTTIMEOUT_MS,
                          Int(min(settings.retry.connectTimeout, timeout).milliseconds))
        ota_curl_set_long(handle, CURLOPT_TIMEOUT_MS, Int(timeout.milliseconds))
        if let caPath = settings.caPath {
            ota_curl_set_string(handle, CURLOPT_CAINFO, caPath)
        }
        ota_curl_set_data_function(handle, CURLOPT_WRITEFUNCTION) { data, size, count, context in
            let exchange = Unmanaged<Exchange>.fromOpaque(context!).takeUnretainedValue()
            return exchange.take(data, size * count)
        }
        ota_curl_set_pointer(handle, CURLOPT_WRITEDATA, exchange)
        ota_curl_set_long(handle, CURLOPT_NOPROGRESS, 0)
        ota_curl_set_progress_function(handle) { context, _, _, _, _ in
            let exchange = Unmanaged<Exchange>.fromOpaque(context!).takeUnretainedValue()
            return exchange.cancel.isFired ? 1 : 0
        }
        ota_curl_set_pointer(handle, CURLOPT_XFERINFODATA, exchange)
    }

    private func interpret(_ handle: UnsafeMutableRawPointer, code: CURLcode,
                           exchange: Exchange) -> Attempt
    {
        if code == CURLE_WRITE_ERROR && exchange.overflowed {
            return Attempt(verdict: .unavailable(reason: "answer larger than 64 KiB"), retryable: false)
        }
        if code == CURLE_ABORTED_BY_CALLBACK {
            return Attempt(verdict: .unavailable(reason: "cancelled"), retryable: false)
        }
        if code != CURLE_OK {
            let reason = String(cString: curl_easy_strerror(code))
            return Attempt(verdict: .unavailable(reason: reason), retryable: !Self.isFinal(code))
        }

        var status = 0
        ota_curl_get_long(handle, CURLINFO_RESPONSE_CODE, &status)
        var retryAfterSeconds: curl_off_t = 0
        ota_curl_get_offset(handle, CURLINFO_RETRY_AFTER, &retryAfterSeconds)
        let retryAfter: Duration? = retryAfterSeconds > 0 ? .seconds(retryAfterSeconds) : nil
        if status == 200 {
            return Attempt(verdict: .verified, retryable: false, status: status)
        }
        let retryable = status == 429 || (500...599).contains(status)
        return Attempt(verdict: .rejected(status: status), retryable: retryable, status: status,
                       retryAfter: retryAfter)
    }

    /// Failures that trying again cannot mend: a URL curl cannot use (checked at start too),
    /// and an https Dice-Auth whose certificate does not verify.
    private static func isFinal(_ code: CURLcode) -> Bool {
        [CURLE_URL_MALFORMAT, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE,
         CURLE_SSL_CERTPROBLEM].contains(code)
    }

    /// State shared with curl's callbacks during one request.
    final class Exchange {
        let cancel: CancelSource
        private(set) var received = 0
        private(set) var overflowed = false

        init(cancel: CancelSource) { self.cancel = cancel }

        /// Counts the body without keeping it: only the status decides.
        func take(_ data: UnsafeMutablePointer<CChar>?, _ length: Int) -> Int {
            received += length
            if received > DiceAuthClient.maxAnswerBytes {
                overflowed = true
                return 0
            }
            return length
        }
    }
}
