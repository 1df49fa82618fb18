import Foundation
import OTACore

/// The threads that serve device sessions, kept for the next device when a session ends.
///
/// A thread started for each device cost about as much CPU as the agent's own work for an
/// update: its stack is mapped, guarded and unmapped, and OpenSSL seeds two random generators
/// for every new thread and frees them when it ends. A worker that has finished a session waits
/// `idleLimit` for the next one and then ends; at most `keepIdle` wait at once, so a burst of
/// devices leaves no crowd of idle threads behind.
///
/// Jobs are never queued behind a busy worker: a job goes to a waiting worker, or gets a new
/// thread. How many run at once is the accept loop's business (its session slots).
final class SessionWorkers: @unchecked Sendable {
    typealias Job = @Sendable () -> Void

    private let condition = NSCondition()
    /// Jobs handed over and not yet taken: never more than `waiting`, so each has a worker.
    private var handedOver: [Job] = []
    private var waiting = 0
    private var threads = 0
    private var closed = false

    private let keepIdle: Int
    private let idleLimit: Duration
    private let threadName: String

    init(keepIdle: Int, idleLimit: Duration, threadName: String) {
        self.keepIdle = keepIdle
        self.idleLimit = idleLimit
        self.threadName = threadName
    }

    /// Runs `job` on a waiting worker, or on a new thread when none waits.
    func run(_ job: @escaping Job) {
        let handed = condition.withLock {
            guard waiting > handedOver.count else {
                threads += 1
                return false
            }
            handedOver.append(job)
            condition.signal()
            return true
        }
        if handed { return }

        let thread = Thread { [self] in work(first: job) }
        thread.name = threadName
        thread.start()
    }

    /// Ends the waiting workers and waits up to `limit` for every worker to end, so that no
    /// thread is still inside the TLS library when the caller goes on (the process may exit).
    /// Jobs already handed over still run. False if a worker was still busy at `limit`.
    @discardableResult
    func close(waitingUpTo limit: Duration) -> Bool {
        let until = Date().addingTimeInterval(limit.seconds)
        return condition.withLock {
            closed = true
            condition.broadcast()
            while threads > 0 {
                if !condition.wait(until: until) { return threads == 0 }
            }
            return true
        }
    }

    /// Threads alive now, busy or waiting.
    var threadCount: Int { condition.withLock { threads } }

    /// Workers waiting for a job now.
    var waitingCount: Int { condition.withLock { waiting } }

    private func work(first: @escaping Job) {
        var job: Job? = first
        while let current = job {
            current()
            job = nextJob()
        }

        // The TLS library's per-thread state goes with the thread, before it counts as ended.
        ota_thread_done()
        let last = condition.withLock {
            threads -= 1
            condition.broadcast()
            return threads == 0
        }
        // The last worker ended: no session has run for `idleLimit`. A burst of devices left
        // its freed memory in the threads' malloc arenas; give it back now, once.
        if last { ota_heap_trim() }
    }

    /// The next job handed to this worker, or nil when the worker should end: closed, enough
    /// others already waiting, or none came within `idleLimit`.
    private func nextJob() -> Job? {
        condition.withLock {
            guard !closed, waiting < keepIdle else { return nil }
            waiting += 1
            defer { waiting -= 1 }

            let until = Date().addingTimeInterval(idleLimit.seconds)
            while handedOver.isEmpty && !closed {
                if !condition.wait(until: until) { break }
            }
            // A job handed over just as the wait ended is still this worker's to run.
            return handedOver.isEmpty ? nil : handedOver.removeFirst()
        }
    }
}
