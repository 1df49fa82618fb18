import Testing
@testable import OTAAgent

@Suite("RedactedURL: Dice-Auth URLs as printed")
struct RedactedURLTests {
    @Test("credentials before the host and query values are replaced; the rest stays",
          arguments: [
              ("http://127.0.0.1:8080/verify", "http://127.0.0.1:8080/verify"),
              ("https://user:pw@dice.example/v", "https://***@dice.example/v"),
              ("https://user@dice.example/v", "https://***@dice.example/v"),
              ("http://a:b@c@[::1]:9/x?token=abc&x=1#frag", "http://***@[::1]:9/x?token=***&x=***"),
              ("http://h/v?secret", "http://h/v?***"),
              ("not a url ?k=v", "not a url ?k=***"),
              ("http://h/path@notuser", "http://h/path@notuser"),
          ])
    func redacts(url: String, shown: String) {
        #expect(RedactedURL.text(url) == shown)
    }
}
