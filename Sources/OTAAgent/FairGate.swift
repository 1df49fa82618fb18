import Foundation

/// A bounded number of slots, handed out in arrival order.
///
/// The agent uses one to bound Dice-Auth requests in flight (Dice-Auth as deployed answers one
/// at a time and resets connections beyond a short listen queue) and one to bound TLS
/// handshakes (the CPU-heavy part of a session; see `Agent`). A release hands its slot straight
/// to the oldest waiter and wakes that waiter alone, so a queue of a thousand costs one wake-up
/// per slot, not a thousand.
final class FairGate: @unchecked Sendable {
    /// One blocked caller. `granted` is written under the gate's lock before `wake` is signalled.
    private final class Waiter {
        let wake = DispatchSemaphore(value: 0)
        var granted = false
    }

    private let lock = NSLock()
    private let limit: Int
    private var held = 0
    private var queue: [Waiter] = []
    private var interrupted = false

    init(limit: Int) {
        self.limit = max(1, limit)
    }

    /// Waits for a slot until `deadline` (nil: as long as it takes); false when the deadline
    /// passed or the gate was interrupted first.
    func acquire(until deadline: ContinuousClock.Instant?) -> Bool {
        lock.lock()
        if interrupted {
            lock.unlock()
            return false
        }
        if held < limit && queue.isEmpty {
            held += 1
            lock.unlock()
            return true
        }
        let waiter = Waiter()
        queue.append(waiter)
        lock.unlock()

        wait(waiter, until: deadline)

        return lock.withLock {
            // A grant that raced with the deadline still counts: the slot is ours to release.
            if waiter.granted { return true }
            queue.removeAll { $0 === waiter }
            return false
        }
    }

    private func wait(_ waiter: Waiter, until deadline: ContinuousClock.Instant?) {
        guard let deadline else {
            waiter.wake.wait()
            return
        }
        let left = deadline - .now
        let nanoseconds = left <= .zero ? 0 : left.components.seconds * 1_000_000_000
            + left.components.attoseconds / 1_000_000_000
        _ = waiter.wake.wait(timeout: .now() + .nanoseconds(Int(nanoseconds)))
    }

    /// Gives the slot back: to the oldest waiter if there is one.
    func release() {
        lock.withLock {
            guard !queue.isEmpty else {
                held -= 1
                return
            }
            let next = queue.removeFirst()
            next.granted = true
            next.wake.signal()
        }
    }

    /// Callers waiting for a slot (for tests and metrics).
    var waitingCount: Int { lock.withLock { queue.count } }

    /// Wakes every waiter for good with a refusal: the agent is stopping at once.
    func interrupt() {
        lock.withLock {
            interrupted = true
            for waiter in queue { waiter.wake.signal() }
            queue.removeAll()
        }
    }
}
