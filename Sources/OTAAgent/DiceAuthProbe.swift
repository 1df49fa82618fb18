import CCurlShim
import CLibcurl
import Foundation

/// Whether Dice-Auth answers, for `ota-agent check`: one POST with an empty body, sent the way
/// the agent sends its requests (same URL, CA, client certificate, no redirects followed).
///
/// Without a device certificate there is nothing to verify, so any HTTP status counts as an
/// answer: a verifier answers an empty body with a 4xx. Only 502, 503 and 504, which say the
/// service behind the URL is not there, fail; and so does every transport failure (refused
/// connection, TLS, timeout).
enum DiceAuthProbe {
    enum Answer: Equatable {
        case answered(status: Int, milliseconds: Int)
        case failed(String)
    }

    /// The most one probe may take, whatever the Dice-Auth deadline: check is an init step.
    static let longest: Duration = .seconds(5)

    static func probe(url: String, settings: DiceAuthSettings, timeout: Duration) -> Answer {
        // The client's creation runs curl's global initialisation, once per process.
        _ = DiceAuthClient(url: url, settings: settings)
        guard let handle = curl_easy_init() else { return .failed("curl_easy_init failed") }
        defer { curl_easy_cleanup(handle) }

        var headers: UnsafeMutablePointer<curl_slist>? = curl_slist_append(nil, "Content-Type: text/plain")
        defer { curl_slist_free_all(headers) }
        let errorText = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE))
        errorText.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
        defer { errorText.deallocate() }

        ota_curl_set_string(handle, CURLOPT_URL, url)
        ota_curl_set_long(handle, CURLOPT_POST, 1)
        ota_curl_set_string(handle, CURLOPT_POSTFIELDS, "")
        ota_curl_set_long(handle, CURLOPT_POSTFIELDSIZE, 0)
        headers = curl_slist_append(headers, "Expect:")
        ota_curl_set_pointer(handle, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(headers))
        DiceAuthClient.configureTransport(handle, settings: settings, timeout: timeout, errorText: errorText)
        // The body is not read: only whether a status came back matters.
        ota_curl_set_data_function(handle, CURLOPT_WRITEFUNCTION) { _, size, count, _ in size * count }

        let clock = ContinuousClock()
        let start = clock.now
        let code = curl_easy_perform(handle)
        let milliseconds = Int((clock.now - start).milliseconds)
        guard code == CURLE_OK else {
            let detail = String(cString: errorText).split(whereSeparator: \.isNewline).joined(separator: " ")
                .trimmingCharacters(in: .whitespaces)
            let final = DiceAuthClient.isFinal(code) || DiceAuthClient.isCertificateAlert(code, detail: detail)
            return .failed(DiceAuthClient.describe(code, detail: detail, final: final))
        }
        var status = 0
        ota_curl_get_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return .answered(status: status, milliseconds: milliseconds)
    }

    /// Statuses with which a gateway or the service says it is not there at all.
    static func isUnavailable(_ status: Int) -> Bool {
        [502, 503, 504].contains(status)
    }
}
