import Foundation
import Testing
@testable import OTAAgent

@Suite("FairGate")
struct FairGateTests {
    @Test("slots are handed out in arrival order, no more than the limit at once")
    func arrivalOrderWithinLimit() async throws {
        let gate = FairGate(limit: 1)
        #expect(gate.acquire(until: .now + .seconds(1)))
        let order = OrderLog()
        let waiters = (0..<5).map { index in
            let thread = Thread {
                if gate.acquire(until: .now + .seconds(10)) {
                    order.append(index)
                    gate.release()
                }
            }
            return thread
        }
        // Start them one after the other so that their arrival order is known.
        for (index, thread) in waiters.enumerated() {
            thread.start()
            while order.waiting(gate) < index + 1 { usleep(1000) }
        }
        gate.release()
        try await order.waitForCount(5)
        #expect(order.values == [0, 1, 2, 3, 4])
    }

    @Test("a waiter whose deadline passes leaves the queue and the next one is served")
    func deadlinePassesInQueue() {
        let gate = FairGate(limit: 1)
        #expect(gate.acquire(until: .now + .seconds(1)))
        let start = ContinuousClock.now
        #expect(!gate.acquire(until: .now + .milliseconds(100)))
        #expect(ContinuousClock.now - start >= .milliseconds(90))
        gate.release()
        #expect(gate.acquire(until: .now + .milliseconds(100)))
    }

    @Test("interrupt wakes every waiter with a refusal")
    func interruptWakesWaiters() async throws {
        let gate = FairGate(limit: 1)
        #expect(gate.acquire(until: .now + .seconds(1)))
        let order = OrderLog()
        Thread { order.append(gate.acquire(until: .now + .seconds(30)) ? 1 : 0) }.start()
        while order.waiting(gate) < 1 { usleep(1000) }
        gate.interrupt()
        try await order.waitForCount(1)
        #expect(order.values == [0])
    }
}

/// A thread-safe record of what the waiters did.
final class OrderLog: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [Int] = []

    func append(_ value: Int) { lock.withLock { recorded.append(value) } }
    var values: [Int] { lock.withLock { recorded } }

    func waiting(_ gate: FairGate) -> Int { gate.waitingCount }

    func waitForCount(_ count: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while values.count < count {
            guard ContinuousClock.now < deadline else { throw AgentError(.internal, "waiters never finished") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}
