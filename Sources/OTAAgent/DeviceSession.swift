import Foundation

/// How one device session ended.
public enum SessionOutcome: String, Sendable {
    /// The device received the whole image and the session ended cleanly.
    case updated
    /// The device was refused (not verified, or bad attestation input); nothing was sent.
    case refused
    /// The session broke (deadline, reset, TLS error, image changed); ended with a reset if
    /// any image byte had been sent.
    case failed
}

/// The phase a session was in when it ended.
public enum SessionPhase: String, Sendable {
    case handshake, certificate, attestation, transfer, close, done
}

/// What happened to one device, as logged and as reported to embedders.
public struct SessionRecord: Sendable {
    public let peer: String
    public var certificate: CertificateIdentity?
    public var verdict: Verdict?
    public var diceAuthDuration: Duration?
    public var bytesSent: UInt64 = 0
    /// How the image went out: "ktls-sendfile" (kernel TLS, no copy) or "pread"; "" if it
    /// never did.
    public var transferPath = ""
    /// Why the transfer took that path (the cipher handed to the kernel, or why not).
    public var transferNote = ""
    /// From the certificate's last byte to the first image block handed to TLS, Dice-Auth's
    /// own time left out: what the agent itself adds before a device starts receiving.
    public var addedLatency: Duration?
    public var duration: Duration = .zero
    public var outcome: SessionOutcome = .failed
    public var phase: SessionPhase = .handshake
    public var reason = ""
    /// The transfer found the image file changed on disk since the agent opened it.
    public var imageChanged = false
    /// The device presented its certificate as its TLS client certificate, and so proved by
    /// the handshake that it holds the private key (see `DevicePolicy`). False for a legacy
    /// device, and for every device on a backend that does not ask.
    public var provedPossession = false
    /// From the transfer's start (after the verdict) to the device's close or the failure;
    /// nil when no transfer began.
    public var transferDuration: Duration?
}

/// Everything a session needs from the agent, shared read-only by all sessions.
struct SessionContext: Sendable {
    let credentials: ServerCredentials
    let image: FirmwareImage
    let diceAuth: DiceAuthClient
    /// Bounds the handshakes computing at once (see `handshake(_:)`).
    let handshakes: FairGate
    /// Bounds connections per address and before attestation (see `ConnectionLimits`).
    let limits: ConnectionLimits
    let deadlines: Deadlines
    let cancel: CancelSource
    let logger: Logger
    /// Proof of possession and pinning, checked before Dice-Auth is asked.
    var policy = DevicePolicy()
    /// Progress of transfers in flight: a terminal's status line or `progress` log lines.
    var progress: ProgressBoard?

    /// Ends every session at once: waits on sockets and on queues return.
    func cancelAll() {
        cancel.fire()
        handshakes.interrupt()
        diceAuth.gate.interrupt()
    }
}

/// One device, from accept to the end of its connection. Runs on a thread of its own: every
/// call here blocks, within the phase's deadline.
struct DeviceSession {
    let context: SessionContext
    let peer: String
    let ticket: ConnectionLimits.Ticket
    let fd: Int32
    /// Events and metrics of this session (see `AgentEvent`).
    var reporter: SessionReporter? = nil

    /// Serves the device on `fd` (owned from now on) to the end of its connection.
    func run() -> SessionRecord {
        defer { context.limits.ended(ticket) }
        let clock = ContinuousClock()
        let start = clock.now
        var record = SessionRecord(peer: peer)
        guard let connection = DeviceConnection(credentials: context.credentials, fd: fd,
                                                cancel: context.cancel) else {
            record.reason = "cannot set up a TLS session (out of memory?)"
            return record
        }

        serve(connection, &record)
        record.duration = clock.now - start
        log(record)
        return record
    }

    private func serve(_ connection: DeviceConnection, _ record: inout SessionRecord) {
        do throws(CoreFailure) {
            try handshake(connection)
            context.logger.debug("handshake", [LogField("device", peer),
                LogField("protocol", connection.protocolName), LogField("cipher", connection.cipher)])

            record.phase = .certificate
            let der = try waitingOnDevice(.prompt, phase: "certificate") { () throws(CoreFailure) in
                try connection.readCertificate(within: context.deadlines.certificate)
            }
            context.limits.certificateReceived(ticket)
            let certificateComplete = ContinuousClock.now
            record.certificate = AttestationCertificate.identity(ofDER: der)

            record.phase = .attestation
            guard try admitByPolicy(der, connection, &record) else {
                record.outcome = .refused
                connection.refuse()
                return
            }
            guard attest(der, &record) else {
                // No verdict because the agent is stopping says nothing about the device.
                var unanswered = false
                if case .unavailable = record.verdict { unanswered = true }
                record.outcome = unanswered && context.cancel.isFired ? .failed : .refused
                connection.refuse()
                return
            }

            // The device may only read from now on; bytes it sent during the verdict are refused.
            try connection.checkIdle()

            record.phase = .transfer
            try transfer(connection, since: certificateComplete, &record)
            record.phase = .done
            record.outcome = .updated
        } catch {
            end(connection, after: error, &record)
        }
    }

    /// The handshake, computed through the handshake gate step by step as the device's
    /// flights arrive.
    ///
    /// A handshake costs the agent milliseconds of CPU (the server's signature and key
    /// exchange); a thousand at once would all share the cores and all finish late, past their
    /// deadline. So only a bounded number compute at once and the others wait their turn in
    /// arrival order. A place is held only while computing on bytes the device has sent: the
    /// waits for the device's hello and for its answer to the server's flight happen outside,
    /// so connections that stay silent or stall halfway hold nothing there. One deadline covers
    /// the handshake from accept, and the time spent queueing for a place is added to it: a
    /// device is never charged for the agent's other handshakes.
    private func handshake(_ connection: DeviceConnection) throws(CoreFailure) {
        var deadline = ContinuousClock.now + context.deadlines.handshake
        // What the device owes now (its hello, or its answer to the server's flight) and since when.
        var owed: (patience: ConnectionLimits.Patience, since: ContinuousClock.Instant) = (.prompt, .now)
        while true {
            let patience: ConnectionLimits.Patience = connection.awaitsHello ? .prompt : .computing
            if patience != owed.patience { owed = (patience, .now) }
            try waitingOnDevice(patience, since: owed.since, phase: "handshake") { () throws(CoreFailure) in
                try connection.waitForInput(within: deadline - .now)
            }

            let queued = ContinuousClock.now
            guard context.handshakes.acquire(until: nil) else {
                throw .cancelled(in: "handshake")
            }
            deadline += ContinuousClock.now - queued
            let complete: Bool
            do {
                defer { context.handshakes.release() }
                complete = try connection.advanceHandshake(within: deadline - .now)
            }
            if complete { return }
        }
    }

    /// Runs `wait`, a wait on the device before attestation, during which this session may be
    /// closed to make room for newer connections (see `ConnectionLimits`).
    private func waitingOnDevice<Value>(_ patience: ConnectionLimits.Patience,
                                        since: ContinuousClock.Instant = .now, phase: String,
                                        _ wait: () throws(CoreFailure) -> Value) throws(CoreFailure) -> Value
    {
        context.limits.waitingOnDevice(ticket, fd: fd, patience: patience, since: since)
        let result: Result<Value, CoreFailure>
        do throws(CoreFailure) {
            result = .success(try wait())
        } catch {
            result = .failure(error)
        }
        switch context.limits.waitOnDeviceEnded(ticket) {
        case .device:
            break
        case .closedForRoom:
            throw .closedByAgent("\(phase): closed to make room: too many connections before attestation, "
                + "this one kept the agent waiting")
        case .closedForStop:
            throw .closedByAgent("\(phase): closed: the agent is stopping, and this device had not sent "
                + "its certificate")
        }
        return try result.get()
    }

    /// The orchestrator's policy (see `DevicePolicy`), before Dice-Auth is asked: the
    /// certificate of the handshake, if any, must be the one sent as data; then proof and the
    /// expected devices. False, logged with the fingerprint, for a device to refuse.
    private func admitByPolicy(_ der: [UInt8], _ connection: DeviceConnection,
                               _ record: inout SessionRecord) throws(CoreFailure) -> Bool
    {
        let presented = try connection.presentedCertificate()
        let fingerprint = record.certificate?.fingerprint ?? ""
        let decision = context.policy.decide(data: der, presented: presented, fingerprint: fingerprint)
        // Possession of the attested certificate's key: proved only when the handshake's
        // certificate is that certificate (another device's key proves nothing about it).
        record.provedPossession = presented != nil && presented == der
        guard case .refuse(let reason) = decision else { return true }
        record.reason = reason
        context.logger.warning("policy-refused", identityFields(record) + [
            LogField("cert_sha256", fingerprint),
            LogField("presented_fp", presented.map { AttestationCertificate.identity(ofDER: $0).shortFingerprint }
                ?? "none"),
            LogField("reason", reason),
        ])
        return false
    }

    /// Asks Dice-Auth; true only for a verified device.
    private func attest(_ der: [UInt8], _ record: inout SessionRecord) -> Bool {
        let report = context.diceAuth.verify(pem: AttestationCertificate.pem(fromDER: der),
                                             deadline: context.deadlines.diceAuth,
                                             cancel: context.cancel)
        record.verdict = report.verdict
        record.diceAuthDuration = report.duration
        var fields = identityFields(record) + [
            LogField("verdict", report.verdict.name),
            LogField("http_status", report.httpStatus),
            LogField("attempts", report.attempts),
            LogField("dice_auth_ms", Int(report.duration.milliseconds)),
        ]
        if case .unavailable(let reason) = report.verdict {
            fields.append(LogField("reason", reason))
        }
        context.logger.log(report.verdict.isVerified ? .info : .warning, "verdict", fields)
        reporter?.verdict(record)
        switch report.verdict {
        case .verified: break
        case .rejected(let status): record.reason = "Dice-Auth answered HTTP \(status): not verified"
        case .unavailable(let reason): record.reason = "no verdict from Dice-Auth: \(reason)"
        }
        return report.verdict.isVerified
    }

    private func transfer(_ connection: DeviceConnection, since certificateComplete: ContinuousClock.Instant,
                          _ record: inout SessionRecord) throws(CoreFailure)
    {
        let transferStart = ContinuousClock.now
        defer { record.transferDuration = .now - transferStart }
        reporter?.transferStarted(totalBytes: context.image.size)
        var firstBlock: ContinuousClock.Instant?
        let tracker = context.progress?.begin(peer: peer, fingerprint: record.certificate?.shortFingerprint,
                                              total: context.image.size)
        defer { tracker.map { context.progress?.end($0) } }
        let (bytes, failure) = connection.send(image: context.image, deadlines: context.deadlines,
                                               progress: { done, total in
                                                   reporter?.progress(bytesSent: done, totalBytes: total)
                                                   if firstBlock == nil { firstBlock = .now }
                                                   tracker?.update(done)
                                               })
        if let firstBlock {
            record.addedLatency = firstBlock - certificateComplete - (record.diceAuthDuration ?? .zero)
        }
        record.bytesSent = bytes
        record.transferPath = connection.transferPath
        record.transferNote = connection.transferNote
        if let failure { throw failure }

        record.phase = .close
        try connection.finish(within: context.deadlines.close)
    }

    /// Ends a broken session: a refusal before any image byte, a reset after.
    private func end(_ connection: DeviceConnection, after failure: CoreFailure,
                     _ record: inout SessionRecord)
    {
        record.reason = failure.detail.isEmpty ? failure.name : failure.detail
        record.imageChanged = failure.status == CoreStatus.changed
        // What the device sent (or failed to send in time) instead of one certificate.
        let badInput = (failure.status == CoreStatus.protocolError && record.phase == .attestation)
            || (record.phase == .certificate
                && (failure.status == CoreStatus.protocolError || failure.status == CoreStatus.timeout))
        record.outcome = badInput ? .refused : .failed
        switch record.phase {
        case .close, .done:
            // finish() has reset the connection already when it could not confirm the image.
            return
        case .handshake, .transfer:
            // No TLS session to close politely, or image bytes already out: a reset.
            connection.abort()
        case .certificate, .attestation:
            if failure.status == CoreStatus.cancelled {
                connection.abort()
            } else {
                connection.refuse()
            }
        }
    }

    private func identityFields(_ record: SessionRecord) -> [LogField] {
        var fields = [LogField("device", peer)]
        if let certificate = record.certificate {
            fields.append(LogField("cert", certificate.subject))
            fields.append(LogField("fp", certificate.shortFingerprint))
            fields.append(LogField("proof", record.provedPossession ? "yes" : "no"))
        }
        return fields
    }

    private func log(_ record: SessionRecord) {
        var fields = identityFields(record) + [
            LogField("outcome", record.outcome.rawValue),
            LogField("phase", record.phase.rawValue),
            LogField("verdict", record.verdict?.name ?? "none"),
            LogField("bytes", record.bytesSent),
            LogField("ms", Int(record.duration.milliseconds)),
        ]
        if !record.transferPath.isEmpty {
            fields.append(LogField("path", record.transferPath))
            fields.append(LogField("path_note", record.transferNote))
        }
        if let latency = record.addedLatency {
            let (seconds, attoseconds) = latency.components
            fields.append(LogField("added_latency_us", seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
        }
        if let diceAuth = record.diceAuthDuration {
            fields.append(LogField("dice_auth_ms", Int(diceAuth.milliseconds)))
        }
        if !record.reason.isEmpty {
            fields.append(LogField("reason", record.reason))
        }
        context.logger.log(record.outcome == .updated ? .info : .warning, "session-end", fields)
    }
}
