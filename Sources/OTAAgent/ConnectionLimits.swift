import Foundation

/// Bounds what clients that have proved nothing can hold: connections per client address, and
/// connections that have not yet delivered a certificate ("unattested").
///
/// Without them a flood of idle connections would fill every session slot and keep a real
/// device waiting until their deadlines passed. With them one address holds only a few
/// connections (more are refused with a reset), and at the unattested bound the agent stops
/// accepting until there is room: a session gets its certificate or ends, or one that is
/// waiting on its device has waited longer than a device would (its `Patience`), in which case
/// it is closed to make room, the one furthest past its patience first. A real device answers
/// within a round trip or a moment of computing, so it is not the one closed, and a burst of
/// real devices only waits its turn in the listen queue. Short patience keeps the turnover high:
/// at the default bound of 64, a flood of idle connections is drained at 256 a second.
final class ConnectionLimits: @unchecked Sendable {
    /// One admitted connection, from accept to the end of its session.
    struct Ticket: Sendable {
        fileprivate let id: UInt64
        let address: String
    }

    /// How long a session may wait on its device before, at the bound, it may be closed.
    enum Patience {
        /// The device owes bytes it sends at once: its hello after connecting, its certificate
        /// after the handshake.
        case prompt
        /// The device is computing its side of the handshake (its key exchange, the check of the
        /// server's signature): a microcontroller without a crypto accelerator needs a while.
        case computing

        var duration: Duration {
            switch self {
            case .prompt: .milliseconds(250)
            case .computing: .seconds(2)
            }
        }
    }

    /// A session waiting on its device before attestation.
    private struct Waiting {
        let fd: Int32
        let evictableAt: ContinuousClock.Instant
    }

    private let condition = NSCondition()
    private let perAddressLimit: Int
    private let unattestedLimit: Int
    private let sessionLimit: Int
    /// Connections admitted whose sessions have not ended, those closed to make room included.
    private var open = 0
    private var perAddress: [String: Int] = [:]
    private var unattested: Set<UInt64> = []
    private var waiting: [UInt64: Waiting] = [:]
    private var evicted: Set<UInt64> = []
    private var nextID: UInt64 = 0
    private var interrupted = false

    /// `sessions` is the agent's bound on sessions at once: when they are all taken, a new
    /// connection needs room as much as at the unattested bound.
    init(perAddress: Int, unattested: Int, sessions: Int = .max) {
        perAddressLimit = max(1, perAddress)
        unattestedLimit = max(1, unattested)
        sessionLimit = max(1, sessions)
    }

    /// No room for one more connection: the unattested bound is reached, or every session is
    /// taken by one not already on its way out.
    private var full: Bool {
        unattested.count >= unattestedLimit || open - evicted.count >= sessionLimit
    }

    /// Blocks the accept loop until one more connection fits (see `full`), closing the session
    /// furthest past its patience if that is what makes room. False when interrupted or when
    /// `deadline` passed first.
    func waitForRoom(until deadline: ContinuousClock.Instant?) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !interrupted && full {
            var wakeAt = deadline
            if let (id, entry) = waiting.min(by: { $0.value.evictableAt < $1.value.evictableAt }) {
                if ContinuousClock.now >= entry.evictableAt {
                    evict(id, entry)
                    return true
                }
                wakeAt = min(wakeAt ?? entry.evictableAt, entry.evictableAt)
            }
            if let deadline, ContinuousClock.now >= deadline { return false }
            if let wakeAt {
                _ = condition.wait(until: Date().addingTimeInterval(max(0, (wakeAt - .now).seconds)))
            } else {
                condition.wait()
            }
        }
        return !interrupted
    }

    /// Wakes that session's wait on its device; it sees `evicted` and ends itself. Its socket
    /// is still open: a session deregisters (`waitOnDeviceEnded`) before anything closes it.
    private func evict(_ id: UInt64, _ entry: Waiting) {
        waiting[id] = nil
        evicted.insert(id)
        unattested.remove(id)
        shutdown(entry.fd, Int32(SHUT_RDWR))
    }

    /// Counts a connection just accepted from `address`; nil when that address already holds
    /// the most it may.
    func admit(address: String) -> Ticket? {
        condition.withLock {
            let fromAddress = perAddress[address, default: 0]
            guard fromAddress < perAddressLimit else { return nil }
            nextID += 1
            open += 1
            perAddress[address] = fromAddress + 1
            unattested.insert(nextID)
            return Ticket(id: nextID, address: address)
        }
    }

    var addressLimit: Int { perAddressLimit }

    /// The session waits on its device on `fd`, which has owed what it waits for since `since`
    /// (not since its last byte: a client trickling its hello a byte at a time is as late as
    /// one sending nothing), and may keep it waiting `patience` from then. Once the agent
    /// stops accepting, such a wait ends at once (see `interrupt`).
    func waitingOnDevice(_ ticket: Ticket, fd: Int32, patience: Patience, since: ContinuousClock.Instant) {
        condition.withLock {
            guard !evicted.contains(ticket.id), unattested.contains(ticket.id) else { return }
            let entry = Waiting(fd: fd, evictableAt: since + patience.duration)
            if interrupted {
                evict(ticket.id, entry)
                return
            }
            waiting[ticket.id] = entry
            condition.broadcast()
        }
    }

    /// How a wait on the device ended.
    enum WaitEnd {
        case device
        /// Closed to make room for a newer connection.
        case closedForRoom
        /// Closed because the agent stopped accepting.
        case closedForStop
    }

    /// The wait on the device is over; says whether the agent closed the session meanwhile.
    func waitOnDeviceEnded(_ ticket: Ticket) -> WaitEnd {
        condition.withLock {
            waiting[ticket.id] = nil
            guard evicted.contains(ticket.id) else { return .device }
            return interrupted ? .closedForStop : .closedForRoom
        }
    }

    /// The device delivered its certificate: it no longer counts as unattested.
    func certificateReceived(_ ticket: Ticket) {
        condition.withLock {
            unattested.remove(ticket.id)
            condition.broadcast()
        }
    }

    /// The session is over, however it ended.
    func ended(_ ticket: Ticket) {
        condition.withLock {
            waiting[ticket.id] = nil
            evicted.remove(ticket.id)
            unattested.remove(ticket.id)
            open -= 1
            let left = perAddress[ticket.address, default: 1] - 1
            perAddress[ticket.address] = left > 0 ? left : nil
            condition.broadcast()
        }
    }

    /// Ends every wait for room for good: the agent stops accepting. Sessions waiting on a
    /// device that has not sent its certificate are closed too, now and as they come to wait:
    /// the grace period is for devices being served, not for silent or half-open connections,
    /// which would otherwise hold the stop up to their handshake deadline.
    func interrupt() {
        condition.withLock {
            interrupted = true
            for (id, entry) in waiting { evict(id, entry) }
            condition.broadcast()
        }
    }
}
