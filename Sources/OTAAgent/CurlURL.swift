import CLibcurl

/// curl's own reading of a URL, so that a Dice-Auth URL accepted at start is one the requests
/// can use. Apart from the client so that the configuration parser (and its fuzzer) need no more
/// of curl than this.
enum CurlURL {
    /// Why curl would refuse `url`, or nil when it takes it.
    static func problem(_ url: String) -> String? {
        guard let parsed = curl_url() else { return "cannot check the URL (out of memory)" }
        defer { curl_url_cleanup(parsed) }
        let code = curl_url_set(parsed, CURLUPART_URL, url, 0)
        return code == CURLUE_OK ? nil : String(cString: curl_url_strerror(code))
    }
}
