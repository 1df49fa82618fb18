import Foundation

/// Bounds the Dice-Auth requests in flight and serves the waiting ones in arrival order.
///
/// Dice-Auth as deployed answers one request at a time and resets connections beyond a short
/// listen queue, so the agent holds its devices back instead of flooding it. A slot is held
/// for one request only: a device backing off between attempts holds none. Waiting counts
/// against the device's decision deadline.
final class DiceAuthGate: @unchecked Sendable {
    private let condition = NSCondition()
    private let limit: Int
    private var inFlight = 0
    private var queue: [UInt64] = []
    private var nextTicket: UInt64 = 0
    private var interrupted = false

    init(limit: Int) {
        self.limit = max(1, limit)
    }

    /// Waits for a slot until `deadline`; false when the deadline passed or the gate was
    /// interrupted first.
    func acquire(until deadline: ContinuousClock.Instant) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let ticket = nextTicket
        nextTicket += 1
        queue.append(ticket)
        defer {
            queue.removeAll { $0 == ticket }
            condition.broadcast()
        }

        while !interrupted && !(queue.first == ticket && inFlight < limit) {
            let left = deadline - .now
            if left <= .zero { return false }
            _ = condition.wait(until: Date().addingTimeInterval(left.seconds))
        }
        guard !interrupted else { return false }
        inFlight += 1
        return true
    }

    /// Requests waiting for a slot (for tests and metrics).
    var waitingCount: Int { condition.withLock { queue.count } }

    func release() {
        condition.withLock {
            inFlight -= 1
            condition.broadcast()
        }
    }

    /// Wakes every waiter for good: the agent is stopping at once.
    func interrupt() {
        condition.withLock {
            interrupted = true
            condition.broadcast()
        }
    }
}
