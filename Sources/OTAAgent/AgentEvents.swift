import Foundation

/// What happens to one device, as it happens: delivered to embedders through
/// `Agent.events(bufferSize:)` and counted by the agent's metrics.
///
/// Every event names the device's connection as `peer` ("address:port", IPv6 in brackets),
/// unique among the connections open at one time. For one device the events arrive in order:
/// `connected`, then `verdict` if Dice-Auth was asked, `progress` while the image goes out, and
/// always `ended` last. Events of different devices interleave.
public enum AgentEvent: Sendable {
    /// A device connected: its session begins.
    case connected(peer: String)
    /// Dice-Auth's verdict on the device's certificate. Not sent for a device refused before
    /// Dice-Auth was asked (bad input, or the device policy).
    case verdict(peer: String, verdict: Verdict, certificate: CertificateIdentity?, provedPossession: Bool)
    /// Image bytes handed to TLS so far, of `totalBytes`: one when the transfer begins (0 bytes),
    /// then at most one every 250 ms per device, and one when the last byte went out.
    case progress(peer: String, bytesSent: UInt64, totalBytes: UInt64)
    /// The session ended; the record says how (the same record the run summary holds).
    case ended(SessionRecord)

    /// The device's connection, "address:port".
    public var peer: String {
        switch self {
        case .connected(let peer), .verdict(let peer, _, _, _), .progress(let peer, _, _): peer
        case .ended(let record): record.peer
        }
    }
}

/// Fans events out to the embedders' streams and into the metrics. Any thread.
///
/// A stream never blocks a session: each has a bounded buffer, and when its consumer falls
/// behind the oldest events waiting in it are dropped (and counted in
/// `ota_agent_events_dropped_total`). The run summary keeps every session record regardless.
final class AgentEventHub: @unchecked Sendable {
    let metrics = AgentMetrics()
    private let lock = NSLock()
    private var subscribers: [Int: AsyncStream<AgentEvent>.Continuation] = [:]
    private var nextSubscriber = 0
    private var finished = false

    /// A new stream of every event from now on; it ends when the run has ended.
    func subscribe(bufferSize: Int) -> AsyncStream<AgentEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: AgentEvent.self,
                                                            bufferingPolicy: .bufferingNewest(max(1, bufferSize)))
        let id: Int? = lock.withLock {
            guard !finished else { return nil }
            nextSubscriber += 1
            subscribers[nextSubscriber] = continuation
            return nextSubscriber
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        // Called when the consumer stops iterating, or by finish(): never under the lock.
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            _ = self.lock.withLock { self.subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    /// Hands `event` to every stream, without waiting for any consumer.
    func publish(_ event: AgentEvent) {
        let continuations = lock.withLock { Array(subscribers.values) }
        for continuation in continuations {
            if case .dropped = continuation.yield(event) { metrics.eventDropped() }
        }
    }

    /// Ends every stream once the events buffered in it are consumed; later subscriptions
    /// end at once.
    func finish() {
        let continuations = lock.withLock {
            finished = true
            defer { subscribers.removeAll() }
            return Array(subscribers.values)
        }
        for continuation in continuations { continuation.finish() }
    }
}

/// One session's reporter: turns what the session does into events and metrics. Used by the
/// session's own thread only.
final class SessionReporter {
    /// The least time between two progress events of one device.
    static let progressInterval: Duration = .milliseconds(250)

    private let hub: AgentEventHub
    let peer: String
    private var transferring = false
    private var lastProgress: ContinuousClock.Instant?
    private var bytesCounted: UInt64 = 0

    init(hub: AgentEventHub, peer: String) {
        self.hub = hub
        self.peer = peer
    }

    func connected() {
        hub.metrics.sessionStarted()
        hub.publish(.connected(peer: peer))
    }

    /// After Dice-Auth answered: `record` holds the verdict and its duration.
    func verdict(_ record: SessionRecord) {
        guard let verdict = record.verdict else { return }
        hub.metrics.observeVerdict(verdict, after: record.diceAuthDuration ?? .zero)
        hub.publish(.verdict(peer: peer, verdict: verdict, certificate: record.certificate,
                             provedPossession: record.provedPossession))
    }

    func transferStarted(totalBytes: UInt64) {
        transferring = true
        hub.metrics.transferStarted()
        lastProgress = .now
        hub.publish(.progress(peer: peer, bytesSent: 0, totalBytes: totalBytes))
    }

    /// After each block; reports at most every `progressInterval`, and the last block.
    func progress(bytesSent: UInt64, totalBytes: UInt64) {
        let now = ContinuousClock.now
        if bytesSent < totalBytes, let lastProgress, now - lastProgress < Self.progressInterval {
            return
        }
        lastProgress = now
        countBytes(upTo: bytesSent)
        hub.publish(.progress(peer: peer, bytesSent: bytesSent, totalBytes: totalBytes))
    }

    func ended(_ record: SessionRecord) {
        countBytes(upTo: record.bytesSent)
        hub.metrics.sessionEnded(record, transferred: transferring)
        hub.publish(.ended(record))
    }

    private func countBytes(upTo bytesSent: UInt64) {
        guard bytesSent > bytesCounted else { return }
        hub.metrics.addBytes(bytesSent - bytesCounted)
        bytesCounted = bytesSent
    }
}
