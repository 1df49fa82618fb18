import Testing
@testable import OTAAgent

/// A policy with room for many attempts, so the ceiling's growth shows.
private func roomyPolicy() -> RetryPolicy {
    var policy = RetryPolicy()
    policy.maxAttempts = 20
    policy.budget = .seconds(3600)
    return policy
}

private let ceilings: [(attemptsMade: Int, ceiling: Duration)] = [
    (1, .milliseconds(250)), (2, .milliseconds(500)), (3, .seconds(1)), (4, .seconds(2)),
    (5, .seconds(4)), (6, .seconds(4)), (7, .seconds(4)), (12, .seconds(4)), (19, .seconds(4)),
]

@Suite("RetryPolicy")
struct RetryPolicyTests {
    @Test("the defaults: 4 attempts, 250 ms doubling to 4 s, 30 s budget")
    func defaults() {
        let policy = RetryPolicy()
        #expect(policy.maxAttempts == 4)
        #expect(policy.baseDelay == .milliseconds(250))
        #expect(policy.maxDelay == .seconds(4))
        #expect(policy.budget == .seconds(30))
    }

    @Test("the ceiling before retry n is 250 ms doubled n times, capped at 4 s",
          arguments: [(0, Duration.milliseconds(250)), (1, .milliseconds(500)), (2, .seconds(1)), (3, .seconds(2)),
                      (4, .seconds(4)), (5, .seconds(4)), (30, .seconds(4)), (31, .seconds(4)), (1000, .seconds(4))])
    func ceiling(retry: Int, expected: Duration) {
        #expect(RetryPolicy().delayCeiling(beforeRetry: retry) == expected)
    }

    @Test("random 1 waits the full ceiling, 0 waits nothing, 0.5 half", arguments: ceilings)
    func jitter(attemptsMade: Int, ceiling: Duration) {
        let policy = roomyPolicy()
        func delay(_ random: Double) -> Duration? {
            policy.nextDelay(attemptsMade: attemptsMade, elapsed: .zero, retryAfter: nil,
                             remaining: .seconds(3600), random: random)
        }
        #expect(delay(1) == ceiling)
        #expect(delay(0) == .zero)
        #expect(delay(0.5) == ceiling / 2)
        #expect(delay(7) == ceiling, "random above 1 is clamped")
        #expect(delay(-3) == .zero, "random below 0 is clamped")
    }

    @Test("no retry once maxAttempts attempts were made", arguments: [4, 5, 100])
    func attemptsExhausted(attemptsMade: Int) {
        #expect(RetryPolicy().nextDelay(attemptsMade: attemptsMade, elapsed: .zero, retryAfter: nil,
                                        remaining: .seconds(60), random: 1) == nil)
    }

    @Test("with the defaults, attempts 1 to 3 may be retried")
    func defaultAttempts() {
        let policy = RetryPolicy()
        for (made, expected) in [(1, Duration.milliseconds(250)), (2, .milliseconds(500)), (3, .seconds(1))] {
            #expect(policy.nextDelay(attemptsMade: made, elapsed: .zero, retryAfter: nil, remaining: .seconds(60),
                                     random: 1) == expected)
        }
    }

    @Test("Retry-After raises the wait above the jitter, never lowers it",
          arguments: [(Duration.seconds(3), 0.0, Duration.seconds(3)), (.seconds(3), 1.0, .seconds(3)),
                      (.milliseconds(100), 1.0, .milliseconds(250)), (.zero, 1.0, .milliseconds(250)),
                      (.milliseconds(100), 0.0, .milliseconds(100))])
    func retryAfter(retryAfter: Duration, random: Double, expected: Duration) {
        #expect(RetryPolicy().nextDelay(attemptsMade: 1, elapsed: .zero, retryAfter: retryAfter,
                                        remaining: .seconds(60), random: random) == expected)
    }

    @Test("no retry when the wait would not end before the budget or the caller's deadline",
          arguments: [
              // (elapsed, remaining, retryAfter, random, expected)
              (Duration.seconds(29.9), Duration.seconds(60), Duration?.none, 1.0, Duration?.none),
              (.seconds(29.75), .seconds(60), nil, 1.0, nil),
              (.seconds(29.7), .seconds(60), nil, 1.0, .milliseconds(250)),
              (.zero, .milliseconds(200), nil, 1.0, nil),
              (.zero, .milliseconds(250), nil, 1.0, nil),
              (.zero, .milliseconds(251), nil, 1.0, .milliseconds(250)),
              (.zero, .seconds(60), .seconds(30), 0.0, nil),
              (.zero, .seconds(10), .seconds(11), 0.0, nil),
              (.seconds(20), .seconds(60), .seconds(9), 0.0, .seconds(9)),
              (.seconds(31), .seconds(60), nil, 0.0, nil),
              (.zero, .zero, nil, 0.0, nil),
          ] as [(Duration, Duration, Duration?, Double, Duration?)])
    func budget(elapsed: Duration, remaining: Duration, retryAfter: Duration?, random: Double,
                expected: Duration?) {
        #expect(RetryPolicy().nextDelay(attemptsMade: 1, elapsed: elapsed, retryAfter: retryAfter,
                                        remaining: remaining, random: random) == expected)
    }
}
