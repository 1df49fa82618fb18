import Foundation
import Testing
@testable import OTAAgent

@Suite("SessionWorkers")
struct SessionWorkersTests {
    @Test("a worker that finished a session serves the next one on the same thread")
    func finishedWorkerIsReused() throws {
        let workers = SessionWorkers(keepIdle: 4, idleLimit: .seconds(30), threadName: "test")
        let seen = ThreadLog()
        workers.run { seen.recordCurrentThread() }
        try waitUntil { workers.waitingCount == 1 }
        workers.run { seen.recordCurrentThread() }
        try waitUntil { seen.count == 2 }

        #expect(seen.distinctThreads == 1)
        #expect(workers.threadCount == 1)
        #expect(workers.close(waitingUpTo: .seconds(5)))
        #expect(workers.threadCount == 0)
    }

    @Test("sessions at once each get a thread: none waits behind another")
    func concurrentJobsGetThreads() throws {
        let workers = SessionWorkers(keepIdle: 4, idleLimit: .seconds(30), threadName: "test")
        let seen = ThreadLog()
        let release = DispatchSemaphore(value: 0)
        for _ in 0..<3 {
            workers.run {
                seen.recordCurrentThread()
                release.wait()
            }
        }
        try waitUntil { seen.count == 3 }

        #expect(seen.distinctThreads == 3)
        #expect(workers.threadCount == 3)
        (0..<3).forEach { _ in release.signal() }
        #expect(workers.close(waitingUpTo: .seconds(5)))
    }

    @Test("at most keepIdle workers wait, and they end after the idle limit")
    func idleWorkersAreBoundedAndEnd() throws {
        let workers = SessionWorkers(keepIdle: 2, idleLimit: .seconds(1), threadName: "test")
        let release = DispatchSemaphore(value: 0)
        let started = ThreadLog()
        for _ in 0..<4 {
            workers.run {
                started.recordCurrentThread()
                release.wait()
            }
        }
        try waitUntil { started.count == 4 }
        (0..<4).forEach { _ in release.signal() }

        // Two keep waiting for a while; the other two end at once.
        try waitUntil { workers.threadCount == 2 && workers.waitingCount == 2 }
        try waitUntil(within: .seconds(10)) { workers.threadCount == 0 }
    }

    @Test("close waits for a busy worker to finish its session, then for its thread to end")
    func closeWaitsForBusyWorkers() throws {
        let workers = SessionWorkers(keepIdle: 4, idleLimit: .seconds(30), threadName: "test")
        let finished = ThreadLog()
        workers.run {
            Thread.sleep(forTimeInterval: 0.3)
            finished.recordCurrentThread()
        }

        #expect(workers.close(waitingUpTo: .seconds(10)))
        #expect(finished.count == 1)
        #expect(workers.threadCount == 0)
    }

    @Test("close gives up at its limit while a session still runs")
    func closeGivesUpAtLimit() throws {
        let workers = SessionWorkers(keepIdle: 4, idleLimit: .seconds(30), threadName: "test")
        let release = DispatchSemaphore(value: 0)
        let started = ThreadLog()
        workers.run {
            started.recordCurrentThread()
            release.wait()
        }
        try waitUntil { started.count == 1 }

        #expect(!workers.close(waitingUpTo: .milliseconds(200)))
        release.signal()
        #expect(workers.close(waitingUpTo: .seconds(10)))
    }
}

/// Which threads ran the jobs.
private final class ThreadLog: @unchecked Sendable {
    private let lock = NSLock()
    private var threads: [pthread_t] = []

    func recordCurrentThread() { lock.withLock { threads.append(pthread_self()) } }
    var count: Int { lock.withLock { threads.count } }
    var distinctThreads: Int { lock.withLock { Set(threads.map { UInt($0) }).count } }
}

private struct TimedOut: Error {}

/// Polls `condition` until it holds; throws when `within` passes first.
private func waitUntil(within limit: Duration = .seconds(10), _ condition: () -> Bool) throws {
    let deadline = ContinuousClock.now + limit
    while !condition() {
        guard ContinuousClock.now < deadline else { throw TimedOut() }
        usleep(2000)
    }
}
