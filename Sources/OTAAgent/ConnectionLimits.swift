import Foundation

/// Bounds what clients that have proved nothing can hold: connections per client address, and
/// connections that have not yet delivered a certificate ("unattested").
///
/// Without them a flood of idle connections would fill every session slot and keep a real
/// device waiting until their deadlines passed. With them one address holds only a few
/// connections (more are refused with a reset), and at the unattested bound the agent stops
/// accepting until there is room: a session gets its certificate, ends, or has sent nothing at
/// all for a while (`silenceBeforeEviction`), in which case it is closed to make room. A real
/// device sends its hello within a round trip, so it is never the one closed, and a burst of
/// real devices only waits its turn in the listen queue.
final class ConnectionLimits: @unchecked Sendable {
    /// One admitted connection, from accept to the end of its session.
    struct Ticket: Sendable {
        fileprivate let id: UInt64
        let address: String
    }

    /// A session still waiting for its device's first bytes.
    private struct Silent {
        let fd: Int32
        let since: ContinuousClock.Instant
    }

    /// How long a connection must have sent nothing before it may be closed to make room.
    static let silenceBeforeEviction: Duration = .seconds(1)

    private let condition = NSCondition()
    private let perAddressLimit: Int
    private let unattestedLimit: Int
    private var perAddress: [String: Int] = [:]
    private var unattested: Set<UInt64> = []
    /// Ids grow with time, so the smallest silent id is the oldest connection.
    private var silent: [UInt64: Silent] = [:]
    private var evicted: Set<UInt64> = []
    private var nextID: UInt64 = 0
    private var interrupted = false

    init(perAddress: Int, unattested: Int) {
        perAddressLimit = max(1, perAddress)
        unattestedLimit = max(1, unattested)
    }

    /// Blocks the accept loop until one more unattested connection fits, closing the oldest
    /// long-silent one if that is what makes room. False when interrupted or when `deadline`
    /// passed first.
    func waitForRoom(until deadline: ContinuousClock.Instant?) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !interrupted && unattested.count >= unattestedLimit {
            var wakeAt = deadline
            if let (oldest, entry) = silent.min(by: { $0.key < $1.key }) {
                let eligibleAt = entry.since + Self.silenceBeforeEviction
                if ContinuousClock.now >= eligibleAt {
                    evict(oldest, entry)
                    return true
                }
                wakeAt = min(wakeAt ?? eligibleAt, eligibleAt)
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

    /// Wakes that session's wait for its hello; it sees `evicted` and ends itself. Its socket
    /// is still open: a session deregisters (`helloWaitEnded`) before anything closes it.
    private func evict(_ id: UInt64, _ entry: Silent) {
        silent[id] = nil
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
            perAddress[address] = fromAddress + 1
            unattested.insert(nextID)
            return Ticket(id: nextID, address: address)
        }
    }

    var addressLimit: Int { perAddressLimit }

    /// The session starts waiting for its device's first bytes on `fd`.
    func waitingForHello(_ ticket: Ticket, fd: Int32) {
        condition.withLock {
            guard !evicted.contains(ticket.id) else { return }
            silent[ticket.id] = Silent(fd: fd, since: .now)
            condition.broadcast()
        }
    }

    /// The wait for the first bytes is over; true when it ended because the session was
    /// closed to make room.
    func helloWaitEnded(_ ticket: Ticket) -> Bool {
        condition.withLock {
            silent[ticket.id] = nil
            return evicted.contains(ticket.id)
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
            silent[ticket.id] = nil
            evicted.remove(ticket.id)
            unattested.remove(ticket.id)
            let left = perAddress[ticket.address, default: 1] - 1
            perAddress[ticket.address] = left > 0 ? left : nil
            condition.broadcast()
        }
    }

    /// Ends every wait for room for good: the agent stops accepting.
    func interrupt() {
        condition.withLock {
            interrupted = true
            condition.broadcast()
        }
    }
}
