import Foundation

/// State shared between the threads that feed it (pipe readers, process reapers) and the tests
/// that wait on it. A wait suspends until a condition on the state holds or its deadline
/// passes; nothing polls.
final class Monitor<State: Sendable>: @unchecked Sendable {
    private struct Waiter {
        let isSatisfied: (State) -> Bool
        let continuation: CheckedContinuation<Bool, Never>
    }

    private let lock = NSLock()
    private var state: State
    private var waiters: [UInt64: Waiter] = [:]
    private var nextWaiter: UInt64 = 0

    init(_ initial: State) {
        state = initial
    }

    /// A value computed from the state as it is now.
    func read<Value>(_ body: (State) -> Value) -> Value {
        lock.lock()
        defer { lock.unlock() }
        return body(state)
    }

    /// Changes the state and wakes every waiter whose condition now holds.
    func update(_ change: (inout State) -> Void) {
        lock.lock()
        change(&state)
        var ready: [CheckedContinuation<Bool, Never>] = []
        for (id, waiter) in waiters where waiter.isSatisfied(state) {
            ready.append(waiter.continuation)
            waiters[id] = nil
        }
        lock.unlock()
        ready.forEach { $0.resume(returning: true) }
    }

    /// Suspends until `condition` holds (true) or `timeout` passes (false).
    func wait(within timeout: Duration, until condition: @escaping @Sendable (State) -> Bool) async -> Bool {
        await withCheckedContinuation { continuation in
            lock.lock()
            if condition(state) {
                lock.unlock()
                continuation.resume(returning: true)
                return
            }
            let id = nextWaiter
            nextWaiter += 1
            waiters[id] = Waiter(isSatisfied: condition, continuation: continuation)
            lock.unlock()

            DispatchQueue.global().asyncAfter(deadline: .now() + timeout.timeInterval) { [self] in
                lock.lock()
                let expired = waiters.removeValue(forKey: id)
                lock.unlock()
                expired?.continuation.resume(returning: false)
            }
        }
    }
}

extension Duration {
    /// Seconds as a `TimeInterval`, for Dispatch and Foundation.
    var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
