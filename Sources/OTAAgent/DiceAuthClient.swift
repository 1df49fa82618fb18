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
/// statuses are final. Redirects are not followed. An https Dice-Auth is always verified
/// (against the system store or `caPath`), and a TLS failure is a final `.unavailable`,
/// never a reason to try without verification.
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
            return .unavailable(reason: "HTTP \(status) after \(attempts) attempt\(attempts == 1 ? "" : "s")")
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
                          exchange: Unmanaged.passUnretained(exchange).toOpaque(), errorText: exchange.errorText)
                return curl_easy_perform(handle)
            }
        }
        return interpret(handle, code: code, exchange: exchange)
    }

    /// How every request to Dice-Auth travels, the check's probe included: one connection each,
    /// no redirects, http and https only, the deadlines, and TLS verified with the configured CA
    /// and client certificate.
    static func configureTransport(_ handle: UnsafeMutableRawPointer, settings: DiceAuthSettings,
                                   timeout: Duration, errorText: UnsafeMutablePointer<CChar>)
    {
        ota_curl_set_long(handle, CURLOPT_NOSIGNAL, 1)
        // One connection per request, as before handles were reused: Dice-Auth as deployed
        // serves one connection at a time, and an idle one kept open here would block others.
        ota_curl_set_long(handle, CURLOPT_FORBID_REUSE, 1)
        ota_curl_set_long(handle, CURLOPT_FOLLOWLOCATION, 0)
        ota_curl_set_string(handle, CURLOPT_PROTOCOLS_STR, "http,https")
        ota_curl_set_long(handle, CURLOPT_CONNECTTIMEOUT_MS,
                          Int(min(settings.retry.connectTimeout, timeout).milliseconds))
        ota_curl_set_long(handle, CURLOPT_TIMEOUT_MS, Int(timeout.milliseconds))
        // curl's defaults, set anyway: nothing here may ever turn verification off.
        ota_curl_set_long(handle, CURLOPT_SSL_VERIFYPEER, 1)
        ota_curl_set_long(handle, CURLOPT_SSL_VERIFYHOST, 2)
        if let caPath = settings.caPath {
            ota_curl_set_string(handle, CURLOPT_CAINFO, caPath)
        }
        // Mutual TLS: curl reads both files per connection; only their paths are kept here.
        if let certificate = settings.clientCertificatePath, let key = settings.clientKeyPath {
            ota_curl_set_string(handle, CURLOPT_SSLCERT, certificate)
            ota_curl_set_string(handle, CURLOPT_SSLCERTTYPE, "PEM")
            ota_curl_set_string(handle, CURLOPT_SSLKEY, key)
            ota_curl_set_string(handle, CURLOPT_SSLKEYTYPE, "PEM")
        }
        ota_curl_set_pointer(handle, CURLOPT_ERRORBUFFER, UnsafeMutableRawPointer(errorText))
    }

    private func configure(_ handle: UnsafeMutableRawPointer, body: UnsafeMutableRawBufferPointer,
                           headers: UnsafeMutablePointer<curl_slist>?, timeout: Duration,
                           exchange: UnsafeMutableRawPointer, errorText: UnsafeMutablePointer<CChar>)
    {
        ota_curl_set_string(handle, CURLOPT_URL, url)
        ota_curl_set_long(handle, CURLOPT_POST, 1)
        ota_curl_set_pointer(handle, CURLOPT_POSTFIELDS, body.baseAddress)
        ota_curl_set_long(handle, CURLOPT_POSTFIELDSIZE, body.count)
        ota_curl_set_pointer(handle, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(headers))
        Self.configureTransport(handle, settings: settings, timeout: timeout, errorText: errorText)
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
            let detail = exchange.errorDetail
            let final = Self.isFinal(code) || Self.isCertificateAlert(code, detail: detail)
            let reason = Self.describe(code, detail: detail, final: final)
            return Attempt(verdict: .unavailable(reason: reason), retryable: !final)
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
    /// an https Dice-Auth whose certificate does not verify, and client certificate files
    /// curl cannot use or Dice-Auth says it wants.
    static func isFinal(_ code: CURLcode) -> Bool {
        [CURLE_URL_MALFORMAT, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE,
         CURLE_SSL_CERTPROBLEM, CURLE_SSL_CLIENTCERT, CURLE_SSL_ISSUER_ERROR,
         CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS].contains(code)
    }

    /// Dice-Auth refusing the agent's client certificate (or its absence). Under TLS 1.3 the
    /// server judges the client certificate after the client has finished its handshake, so
    /// curl reports the server's alert on the first read or write with a generic code (55, 56;
    /// 35 under TLS 1.2), the same codes as a connection reset that a retry may mend. Only
    /// OpenSSL's text of the alert tells them apart: it names the alert ("tlsv13 alert
    /// certificate required", "tlsv1 alert unknown ca", "sslv3 alert bad certificate"). A
    /// server that resets without an alert stays a retried transport error, still ending
    /// without a verdict.
    static func isCertificateAlert(_ code: CURLcode, detail: String) -> Bool {
        guard [CURLE_SSL_CONNECT_ERROR, CURLE_SEND_ERROR, CURLE_RECV_ERROR].contains(code) else {
            return false
        }
        let text = detail.lowercased()
        guard text.contains("alert") else { return false }
        return ["certificate", "unknown ca", "access denied"].contains { text.contains($0) }
    }

    /// The reason in the logs: what kind of failure, then curl's own detail when it gave one.
    static func describe(_ code: CURLcode, detail: String, final: Bool) -> String {
        let summary = String(cString: curl_easy_strerror(code))
        let text = detail.isEmpty ? summary : detail
        if code == CURLE_PEER_FAILED_VERIFICATION {
            return "Dice-Auth's TLS certificate does not verify: \(text)"
        }
        if isCertificateAlert(code, detail: detail) {
            return "Dice-Auth refused the TLS client certificate: \(text)"
        }
        if final && code != CURLE_URL_MALFORMAT {
            return "TLS to Dice-Auth failed: \(text)"
        }
        return text
    }

    /// State shared with curl's callbacks during one request.
    final class Exchange {
        let cancel: CancelSource
        private(set) var received = 0
        private(set) var overflowed = false
        /// curl's CURLOPT_ERRORBUFFER: the detail of a failure (OpenSSL's text for TLS).
        let errorText: UnsafeMutablePointer<CChar>

        init(cancel: CancelSource) {
            self.cancel = cancel
            errorText = .allocate(capacity: Int(CURL_ERROR_SIZE))
            errorText.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
        }

        deinit { errorText.deallocate() }

        /// The error buffer's text on one line, without curl's trailing newline.
        var errorDetail: String {
            String(cString: errorText).split(whereSeparator: \.isNewline).joined(separator: " ")
                .trimmingCharacters(in: .whitespaces)
        }

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
