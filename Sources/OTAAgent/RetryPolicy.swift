/// When and how often a Dice-Auth request is tried again.
///
/// Exponential back-off with full jitter: before retry n (from 0) the wait is a random time
/// in [0, min(cap, base * 2^n)]. A server's Retry-After raises the wait. Everything stays
/// inside `budget`, counted from the first attempt.
public struct RetryPolicy: Sendable, Equatable {
    public var connectTimeout: Duration = .seconds(3)
    public var attemptTimeout: Duration = .seconds(10)
    public var maxAttempts = 4
    public var baseDelay: Duration = .milliseconds(250)
    public var maxDelay: Duration = .seconds(4)
    public var budget: Duration = .seconds(30)

    public init() {}

    /// The ceiling of the jittered wait before retry `retry` (0 for the first retry).
    public func delayCeiling(beforeRetry retry: Int) -> Duration {
        let doublings = min(retry, 30)
        let grown = baseDelay * (1 << doublings)
        return min(grown, maxDelay)
    }

    /// The wait before the next attempt, or nil when no attempt is left in count or time.
    /// - Parameters:
    ///   - attemptsMade: attempts already made (at least 1).
    ///   - elapsed: time since the first attempt started.
    ///   - retryAfter: the server's Retry-After, if it sent one.
    ///   - remaining: time left before the caller's own deadline.
    ///   - random: a number in [0, 1], injected so tests can pin it.
    public func nextDelay(attemptsMade: Int, elapsed: Duration, retryAfter: Duration?,
                          remaining: Duration, random: Double) -> Duration?
    {
        guard attemptsMade < maxAttempts else { return nil }

        let jittered = delayCeiling(beforeRetry: attemptsMade - 1) * min(max(random, 0), 1)
        let delay = max(jittered, retryAfter ?? .zero)
        let left = min(budget - elapsed, remaining)
        // A retry that could not even start before the budget ends is not worth waiting for.
        guard delay < left else { return nil }
        return delay
    }
}
