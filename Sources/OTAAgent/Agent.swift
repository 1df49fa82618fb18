import Foundation
import OTACore

/// How a run of the agent ended. The CLI maps each to an exit code.
public enum RunOutcome: Sendable, Equatable {
    /// At least one device was updated (in `once` mode: the one the run was for).
    case updated
    /// Serve mode stopped on request.
    case stopped
    /// The run's timeout passed with no device updated.
    case timedOut
    /// A signal stopped the run before any device was updated.
    case interrupted(signal: Int32)
    /// The image file changed on disk while being served: nothing more can be sent until the
    /// agent is restarted (it reads the image it opened at start, and checks it per transfer).
    case imageChanged
}

/// What a run did.
public struct RunSummary: Sendable {
    public let outcome: RunOutcome
    /// The device sessions, in the order they ended: every one that delivered a certificate,
    /// the most recent `RunState.listedSessionLimit` of them in a long serve run.
    public let sessions: [SessionRecord]
    /// Sessions counted but not in `sessions`: connections that never delivered a certificate
    /// (scanners, floods, devices failing their handshake), and the oldest beyond the limit.
    public let sessionsNotListed: Int
    /// Devices updated in the whole run, listed or not.
    public let devicesUpdated: Int
}

/// The agent: listens, serves each device in a session of its own, and stops per its mode.
///
/// `start()` validates every setting and binds the port, so a broken configuration fails
/// before anything is served. `run()` then blocks its calling thread until the run ends; each
/// device is served on a thread of its own, kept for a later device when its session ends.
/// `stop(signal:)` may be called from any thread.
public final class Agent: @unchecked Sendable {
    public let configuration: AgentConfiguration
    let logger: Logger
    private let onSession: (@Sendable (SessionRecord) -> Void)?
    private let state = RunState()
    /// The session threads, kept between devices (see `SessionWorkers`).
    private let workers: SessionWorkers

    /// Set once by `start()`, read by `run()`, by sessions and by `stop(signal:)`, which may run
    /// on another thread at any moment (a signal during start): so behind a lock.
    private let handlesLock = NSLock()
    private var startedListener: Listener?
    private var startedContext: SessionContext?
    private var startedMetricsServer: MetricsServer?
    var metricsServer: MetricsServer? { handlesLock.withLock { startedMetricsServer } }

    /// Every session's events, for embedders' streams and for the metrics (see `AgentEvent`).
    let hub = AgentEventHub()
    /// The run's summary once it has ended, for `shutdown()`.
    let completion = RunCompletion()
    private var listener: Listener? { handlesLock.withLock { startedListener } }
    /// The image as opened and hashed by `start()`: written there, read after `run()` on the
    /// same thread (see `ResultFile`).
    public private(set) var startedImage: ImageIdentity?
    private var context: SessionContext? { handlesLock.withLock { startedContext } }

    public init(configuration: AgentConfiguration, logger: Logger,
                onSession: (@Sendable (SessionRecord) -> Void)? = nil)
    {
        self.configuration = configuration
        self.logger = logger
        self.onSession = onSession
        workers = SessionWorkers(keepIdle: min(max(configuration.maxConcurrent, 1), 16),
                                 idleLimit: .seconds(10), threadName: "ota-device")
    }

    /// The port actually bound (useful with port 0), after `start()`.
    public var port: UInt16? { listener?.port }

    /// Opens the image, loads the certificate and key, and binds the listener.
    public func start() throws(AgentError) {
        try ResultFile.checkWritable(configuration.resultFilePath, inputs: configuration.inputFiles,
                                     name: configuration.settingNames[.resultFile])
        try checkDiceAuthFiles()
        try checkProofSupport()
        let image = try FirmwareImage(path: configuration.imagePath,
                                      settingName: configuration.settingNames[.firmwarePath])
        // A file that is no app image at all is refused before it is copied or hashed whole
        // (its first bytes tell); the copy is then checked again, as it is what is served.
        if !configuration.allowAnyImage && !configuration.imageInPlace { _ = try image.checkAppFormat() }
        let served = configuration.imageInPlace ? "in-place" : privateCopy(of: image)
        let format = configuration.allowAnyImage ? nil : try image.checkAppFormat()
        let digest = try image.sha256()
        startedImage = ImageIdentity(path: image.path, size: image.size, sha256: digest)
        try checkExpectedDigest(digest, of: image)
        let credentials = try ServerCredentials(certificatePath: configuration.certificatePath,
                                                keyPath: configuration.keyPath, tls: configuration.tls,
                                                names: configuration.settingNames)
        let cancel = try CancelSource()
        // Devices beyond the session bound wait in the listen queue; the kernel caps the
        // backlog at its somaxconn.
        let listener = try Listener(bindAddress: configuration.bindAddress, port: configuration.port,
                                    backlog: Int32(clamping: max(1024, configuration.maxConcurrent)),
                                    settingName: configuration.listenerSettingName)
        let client = DiceAuthClient(url: configuration.diceAuthURL, settings: configuration.diceAuth)
        var context = SessionContext(credentials: credentials, image: image, diceAuth: client,
                                     handshakes: FairGate(limit: configuration.maxHandshakes),
                                     limits: ConnectionLimits(perAddress: configuration.maxPerAddress,
                                                              unattested: configuration.maxUnattested,
                                                              sessions: configuration.maxConcurrent),
                                     deadlines: configuration.deadlines, cancel: cancel, logger: logger)
        context.policy = configuration.devicePolicy
        context.progress = ProgressBoard(logger: logger, lineInterval: configuration.progressInterval)
        let metricsServer = try makeMetricsServer()
        handlesLock.withLock {
            startedContext = context
            startedListener = listener
            startedMetricsServer = metricsServer
        }
        logStart(image: image, served: served, digest: digest, format: format, credentials: credentials)
        logDevicePolicy()
        if let metricsServer { startMetricsServer(metricsServer) }
        logger.info("listening", [LogField("address", listener.address),
                                  LogField("port", listener.port)])
    }

    /// A CA, client certificate or key file that cannot be read would refuse every device
    /// later; refuse to start instead. Only the files' metadata is looked at here: curl reads
    /// them per connection, and their contents are never logged.
    func checkDiceAuthFiles() throws(AgentError) {
        let settings = configuration.diceAuth
        let names = configuration.settingNames
        let certificateName = names[.diceAuthClientCertificatePath]
        let keyName = names[.diceAuthClientKeyPath]
        // The parser checks this too; a library caller may have filled the settings directly.
        guard (settings.clientCertificatePath == nil) == (settings.clientKeyPath == nil) else {
            throw .configuration("\(certificateName) and \(keyName) go together: give both or neither")
        }
        let files: [(String?, String)] = [
            (settings.caPath, names[.diceAuthCAPath]),
            (settings.clientCertificatePath, certificateName),
            (settings.clientKeyPath, keyName),
        ]
        for case let (path?, name) in files {
            try checkReadableFile(path, name: name)
        }
        // curl reads these only at the first request, where a wrong file would refuse every
        // device; a certificate file without a PEM certificate is caught here instead. (The
        // key's contents are never read here: only the library that uses it sees them.)
        let certificates = [(settings.caPath, files[0].1), (settings.clientCertificatePath, certificateName)]
        for case let (path?, name) in certificates {
            let head = FileHandle(forReadingAtPath: path).map { handle in
                defer { try? handle.close() }
                return (try? handle.read(upToCount: 1 << 20)) ?? nil
            } ?? nil
            guard let head, String(decoding: head, as: UTF8.self).contains("-----BEGIN CERTIFICATE-----") else {
                throw .configuration("\(name): \(path) holds no PEM certificate")
            }
        }
        if let certificate = settings.clientCertificatePath, let key = settings.clientKeyPath {
            try checkDiceAuthClientPair(certificate, key, names: "\(certificateName) and \(keyName)")
        }
    }

    /// A client certificate and key that do not belong together would fail every Dice-Auth
    /// request; refuse to start instead. The agent's TLS library reads them for the check, while
    /// curl's is the one that uses them: a pair it cannot read is only warned about.
    private func checkDiceAuthClientPair(_ certificate: String, _ key: String,
                                         names: String) throws(AgentError)
    {
        var matches: Int32 = 0
        var detail = [CChar](repeating: 0, count: 512)
        let status = ota_key_pair_check(certificate, key, &matches, &detail, detail.count)
        let reason = detail.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        if status == OTA_OK.rawValue && matches == 0 {
            throw .configuration("\(names): \(reason)")
        }
        if status != OTA_OK.rawValue {
            logger.warning("dice-auth-client-pair", [LogField("reason",
                "cannot check that the client certificate and key match (\(reason)); curl will try them")])
        }
    }

    /// Proof of possession needs a backend that asks for client certificates: demanding it
    /// from one that never asks would refuse every device.
    func checkProofSupport() throws(AgentError) {
        guard configuration.devicePolicy.requireProof, !DeviceConnection.backendSupportsProof else { return }
        throw .configuration("\(configuration.settingNames[.requireProof]): the "
            + "\(String(cString: ota_backend_name())) build cannot check proof of possession: "
            + "Debian's mbedTLS 2.28 cannot accept a DICE certificate as a TLS client certificate "
            + "(it fails the handshake on the certificate's unknown critical extension), so this "
            + "build never asks devices for one; use the OpenSSL build")
    }

    /// The policy in force, once at start, so the log says which devices may be served.
    private func logDevicePolicy() {
        let policy = configuration.devicePolicy
        logger.info("device-policy", [
            LogField("proof_supported", DeviceConnection.backendSupportsProof ? "yes" : "no"),
            LogField("require_proof", policy.requireProof ? "yes" : "no"),
            LogField("expected_devices", policy.expectedDevices.isEmpty ? "any"
                : policy.expectedDevices.joined(separator: ",")),
            LogField("allowed_peers", policy.allowedPeers.isEmpty ? "any"
                : policy.allowedPeers.map(\.description).joined(separator: ",")),
        ])
    }

    /// Serves a private copy of the image, so that nothing done to the file after start changes
    /// what devices get, and what is hashed and checked below is exactly what is sent. Tried
    /// beside the image (where the filesystem may share the blocks), then in the temporary
    /// folder; when neither takes one the file is served in place, as `--image-in-place` asks,
    /// and the operator is told why.
    private func privateCopy(of image: FirmwareImage) -> String {
        let beside = URL(fileURLWithPath: image.path).deletingLastPathComponent().path
        let temporary = FileManager.default.temporaryDirectory.path
        var reasons: [String] = []
        for directory in beside == temporary ? [beside] : [beside, temporary] {
            guard let reason = image.makePrivate(in: directory) else { return "private-copy" }
            reasons.append(reason)
        }
        logger.warning("image-copy", [LogField("reason", "no private copy (" + reasons.joined(separator: "; ")
            + "): serving the file in place, where a change to it stops the agent")])
        return "in-place"
    }

    /// Over plain http anyone on the path to Dice-Auth can answer 200 and so approve any device.
    func warnAboutPlainDiceAuth() {
        guard let url = URLComponents(string: configuration.diceAuthURL), url.scheme?.lowercased() == "http",
              let host = url.host?.lowercased() else { return }
        let loopback = host == "localhost" || host.hasPrefix("127.") || host == "::1" || host == "[::1]"
        guard !loopback else { return }
        logger.warning("dice-auth-plain-http", [
            LogField("url", RedactedURL.text(configuration.diceAuthURL)),
            LogField("reason", "verdicts travel unauthenticated: anyone on the path can approve any device; use https"),
        ])
    }

    private func checkReadableFile(_ path: String, name: String) throws(AgentError) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw .configuration("\(name): cannot read \(path): \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG, info.st_size > 0 else {
            throw .configuration("\(name): \(path) is not a non-empty regular file")
        }
        guard access(path, R_OK) == 0 else {
            throw .configuration("\(name): cannot read \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// The file an orchestrator meant to serve, or none: a digest given at start must match.
    func checkExpectedDigest(_ digest: String, of image: FirmwareImage) throws(AgentError) {
        guard let expected = configuration.expectedSHA256, expected != digest else { return }
        throw .configuration("\(configuration.settingNames[.expectedSHA256]): \(image.path) has "
            + "SHA-256 \(digest), expected \(expected)")
    }

    /// What the image is: its app description's fields, or that its format was not checked.
    private func imageFields(_ format: AppImageInfo?) -> [LogField] {
        guard let format else { return [LogField("image_format", "unchecked")] }
        var fields = [LogField("image_format", "esp-idf-app"), LogField("chip", format.chip),
                      LogField("project", format.project), LogField("app_version", format.version),
                      LogField("idf_version", format.idfVersion)]
        if format.trailingBytes > 0 { fields.append(LogField("trailing_bytes", format.trailingBytes)) }
        return fields
    }

    private func logStart(image: FirmwareImage, served: String, digest: String, format: AppImageInfo?,
                          credentials: ServerCredentials)
    {
        let server = credentials.certificate
        logger.info("starting", [
            LogField("backend", String(cString: ota_backend_name())),
            LogField("mode", configuration.mode.rawValue),
            LogField("image", image.path),
            LogField("served_from", served),
            LogField("bytes", image.size),
            LogField("sha256", digest),
        ] + imageFields(format) + [
            LogField("server_cert", server.subject),
            LogField("server_fp", server.shortFingerprint),
            LogField("tls_min", configuration.tls.minimumVersion.rawValue),
            LogField("tls_ciphers", credentials.ciphers),
        ])
        if configuration.tls.minimumVersion == .tls13 {
            // Only the OpenSSL build gets here: the mbedTLS core refuses 1.3 as a configuration error.
            logger.warning("tls-policy", [LogField("reason",
                "minimum TLS 1.3: TLS 1.2-only field devices are locked out")])
        }
        if !credentials.certificateNamesOTAAgent {
            logger.warning("server-certificate", [LogField("reason",
                "certificate names neither CN nor DNS ota-agent; field devices will refuse it")])
        }
        warnAboutValidity(of: server)
        warnAboutKeyPermissions()
        warnAboutPlainDiceAuth()
    }

    /// Devices that check dates refuse a certificate outside its validity; say so at start.
    private func warnAboutValidity(of certificate: CertificateIdentity) {
        let now = Int64(Date().timeIntervalSince1970)
        let dates = [LogField("not_before", Logger.utc(seconds: certificate.notBefore)),
                     LogField("not_after", Logger.utc(seconds: certificate.notAfter))]
        if now < certificate.notBefore {
            logger.warning("server-certificate", dates + [LogField("reason",
                "certificate is not valid yet; devices that check dates will refuse it")])
        } else if now > certificate.notAfter {
            logger.warning("server-certificate", dates + [LogField("reason",
                "certificate has expired; devices that check dates will refuse it")])
        }
    }

    /// A private key others can read is a key others may have copied.
    func warnAboutKeyPermissions() {
        var info = stat()
        guard stat(configuration.keyPath, &info) == 0, info.st_mode & 0o077 != 0 else { return }
        logger.warning("private-key-permissions", [
            LogField("key", configuration.keyPath),
            LogField("mode", String(info.st_mode & 0o777, radix: 8)),
            LogField("reason", "the private key file is open to group or others; chmod 600 it"),
        ])
    }

    /// Serves until the mode's end, the timeout, or `stop`. Call `start()` first.
    public func run() -> RunSummary {
        guard let listener, let context else {
            preconditionFailure("Agent.run() called before a successful start()")
        }

        let deadline = configuration.timeout.map { ContinuousClock.now + $0 }
        completion.begin()
        hub.metrics.setAccepting(true)
        acceptLoop(listener, context, until: deadline)
        hub.metrics.setAccepting(false)
        // Devices arriving from now on are refused at once instead of waiting unserved.
        listener.close()
        logger.info("not-accepting", [LogField("in_flight", state.running)])

        // No more accepts; transfers in flight get the grace period, then are cancelled.
        if !state.waitForSessions(upTo: configuration.gracePeriod) {
            logger.warning("grace-period-over", [LogField("sessions", state.running)])
            context.cancelAll()
            _ = state.waitForSessions(upTo: .seconds(30))
        }
        // Every session has ended; its thread is gone too before the run ends (and the process
        // perhaps exits), so none is left inside the TLS library.
        workers.close(waitingUpTo: .seconds(5))
        let summary = state.summary(outcome: state.outcome(timedOut: deadline.map { .now >= $0 } ?? false,
                                                           mode: configuration.mode))
        logger.info("exiting", [LogField("outcome", describe(summary.outcome)),
                                LogField("updated", summary.devicesUpdated),
                                LogField("sessions", summary.sessions.count + summary.sessionsNotListed)])
        endRun(summary)
        return summary
    }

    /// Runs `run()` on a thread of its own, so async callers never block the cooperative pool.
    public func runDetached() async -> RunSummary {
        await withCheckedContinuation { continuation in
            let thread = Thread { continuation.resume(returning: self.run()) }
            thread.name = "ota-agent-accept"
            thread.start()
        }
    }

    /// Stops accepting; transfers in flight may finish within the grace period. A second
    /// call cuts the grace period short: transfers still running are reset. Any thread.
    public func stop(signal: Int32? = nil) {
        let again = state.requestStop(signal: signal)
        var fields = [LogField("in_flight", state.running)]
        if let signal { fields.insert(LogField("signal", signal), at: 0) }
        if again {
            logger.warning("stopping-now", fields)
            context?.cancelAll()
        } else {
            logger.info("stopping", fields + [LogField("grace_s", seconds: configuration.gracePeriod)])
        }
        listener?.interrupt()
        context?.limits.interrupt()
    }

    private func acceptLoop(_ listener: Listener, _ context: SessionContext,
                            until deadline: ContinuousClock.Instant?)
    {
        while !state.stopping {
            // A connection that keeps the agent waiting is closed to make room only for one
            // that is really there: first wait for it, then for room (see ConnectionLimits).
            let waited = listener.waitForConnection(timeout: remaining(until: deadline), cancel: context.cancel)
            guard case .connection = waited else {
                if next(after: waited, context) == .stop { return } else { continue }
            }
            guard context.limits.waitForRoom(until: deadline) else {
                if !state.stopping { logTimeout() }
                return
            }
            // Beyond the bound, devices wait in the listen queue rather than being refused; a
            // session closed to make room frees its slot as soon as its thread sees it.
            guard state.acquireSlot(limit: configuration.maxConcurrent) else { break }
            let accepted = listener.accept(timeout: remaining(until: deadline), cancel: context.cancel)
            guard case .connection(let fd, let address, let port) = accepted else {
                state.releaseSlot()
                if next(after: accepted, context) == .stop { return } else { continue }
            }
            admit(fd: fd, address: address, port: port, context: context)
        }
    }

    private func remaining(until deadline: ContinuousClock.Instant?) -> Duration? {
        deadline.map { max(.zero, $0 - .now) }
    }

    private enum LoopStep { case retry, stop }

    /// A wait on the listener that brought no connection: the loop stops or, after a failure,
    /// tries again.
    private func next(after waited: Listener.Accepted, _ context: SessionContext) -> LoopStep {
        switch waited {
        case .timedOut:
            logTimeout()
            return .stop
        case .connection, .stopped:
            return .stop
        case .failed(let reason):
            logger.error("accept", [LogField("reason", reason)])
            // Out of descriptors, typically: wait a little instead of spinning.
            return context.cancel.wait(.milliseconds(100)) ? .stop : .retry
        }
    }

    /// The run's timeout passed: no more devices; those in flight get the grace period.
    private func logTimeout() {
        logger.warning("timeout", [
            LogField("timeout_s", seconds: configuration.timeout ?? .zero),
            LogField("in_flight", state.running),
            LogField("grace_s", seconds: configuration.gracePeriod),
        ])
    }

    private func formatPeer(_ address: String, _ port: UInt16) -> String {
        // A Character, not a String: Foundation's substring search would cost a lookup through
        // NSString for every device.
        address.contains(":" as Character) ? "[\(address)]:\(port)" : "\(address):\(port)"
    }

    /// Serves a new connection, or turns it away at once when its address already holds too many.
    private func admit(fd: Int32, address: String, port: UInt16, context: SessionContext) {
        let peer = formatPeer(address, port)
        // Not the device the job is for: turned away before its handshake costs anything.
        guard context.policy.allows(peer: address) else {
            ota_listener_refuse(fd)
            state.releaseSlot()
            logger.warning("refused-connection", [LogField("device", peer), LogField("reason",
                "address not allowed (\(configuration.settingNames[.deviceAddress]))")])
            return
        }
        guard let ticket = context.limits.admit(address: address) else {
            ota_listener_refuse(fd)
            state.releaseSlot()
            logger.warning("refused-connection", [LogField("device", peer), LogField("reason",
                "this address already has \(context.limits.addressLimit) connections (OTA_MAX_PER_ADDRESS)")])
            return
        }
        startSession(fd: fd, peer: peer, ticket: ticket, context: context)
    }

    private func startSession(fd: Int32, peer: String, ticket: ConnectionLimits.Ticket,
                              context: SessionContext)
    {
        logger.debug("connected", [LogField("device", peer)])
        state.sessionStarted()
        workers.run { [self] in
            let reporter = SessionReporter(hub: hub, peer: peer)
            reporter.connected()
            let record = DeviceSession(context: context, peer: peer, ticket: ticket, fd: fd,
                                       reporter: reporter).run()
            reporter.ended(record)
            finishSession(record, listener: listener)
        }
    }

    private func finishSession(_ record: SessionRecord, listener: Listener?) {
        onSession?(record)
        let changeAlreadySeen = state.imageChanged
        let firstUpdate = state.record(record)
        if record.imageChanged && !changeAlreadySeen {
            logger.error("image-changed", [
                LogField("image", configuration.imagePath),
                LogField("reason", "the image file changed on disk since start; restart the agent to serve it"),
            ])
        }
        warnIfImagePathMoved()
        if (firstUpdate && configuration.mode == .once) || record.imageChanged {
            state.requestStop(signal: nil, external: false)
            listener?.interrupt()
            context?.limits.interrupt()
        }
        state.releaseSlot()
    }

    /// The file at the image path was replaced or deleted. The open image still holds the bytes
    /// hashed at start, so devices keep getting exactly those; the operator learns, once, that
    /// serving the new file takes a restart.
    private func warnIfImagePathMoved() {
        guard let image = context?.image, !image.pathStillNamesIt, state.firstImagePathWarning() else {
            return
        }
        logger.warning("image-replaced", [
            LogField("image", image.path),
            LogField("reason", "the path no longer names the file opened at start; devices still get that "
                + "file, unchanged; restart the agent to serve the new one"),
        ])
    }

    private func describe(_ outcome: RunOutcome) -> String {
        switch outcome {
        case .updated: "updated"
        case .stopped: "stopped"
        case .timedOut: "timed-out"
        case .interrupted(let signal): "interrupted-by-signal-\(signal)"
        case .imageChanged: "image-changed"
        }
    }
}

/// The shared state of one run, guarded by one condition variable.
final class RunState: @unchecked Sendable {
    private let condition = NSCondition()
    private var active = 0
    private var stopRequested = false
    private var stopSignal: Int32?
    private var externalStops = 0
    private var sessions = 0
    /// Finished sessions that delivered a certificate, the oldest dropped in batches beyond
    /// twice the limit: a serve run that lasts weeks, or a flood, must not grow without bound.
    private var finished: [SessionRecord] = []
    private var notListed = 0
    private var updated = 0
    private var imageChangeSeen = false
    private var imagePathWarned = false

    /// The most sessions a run's summary (and result file) lists.
    static let listedSessionLimit = 10_000

    var stopping: Bool { condition.withLock { stopRequested } }

    /// The run's summary with `outcome`: the most recent listed sessions, the others counted.
    func summary(outcome: RunOutcome) -> RunSummary {
        condition.withLock {
            let listed = Array(finished.suffix(Self.listedSessionLimit))
            return RunSummary(outcome: outcome, sessions: listed,
                              sessionsNotListed: notListed + finished.count - listed.count, devicesUpdated: updated)
        }
    }

    /// Records a stop; true when one had been asked for before (by a caller, not by the run's
    /// own end in once mode).
    @discardableResult
    func requestStop(signal: Int32?, external: Bool = true) -> Bool {
        condition.withLock {
            let again = externalStops > 0 && external
            if external { externalStops += 1 }
            if !stopRequested { stopSignal = signal }
            stopRequested = true
            condition.broadcast()
            return again
        }
    }

    /// Waits for a free session slot; false when the run is stopping instead.
    func acquireSlot(limit: Int) -> Bool {
        condition.withLock {
            while active >= limit && !stopRequested { condition.wait() }
            guard !stopRequested else { return false }
            active += 1
            return true
        }
    }

    func releaseSlot() {
        condition.withLock {
            active -= 1
            condition.broadcast()
        }
    }

    /// Keeps a finished session (or counts it: see `finished`); true when it is the run's first
    /// update.
    func record(_ record: SessionRecord) -> Bool {
        condition.withLock {
            sessions -= 1
            imageChangeSeen = imageChangeSeen || record.imageChanged
            if record.outcome == .updated { updated += 1 }
            if record.certificate == nil && record.outcome != .updated {
                notListed += 1
            } else {
                finished.append(record)
                if finished.count >= 2 * Self.listedSessionLimit {
                    finished.removeFirst(Self.listedSessionLimit)
                    notListed += Self.listedSessionLimit
                }
            }
            return record.outcome == .updated && updated == 1
        }
    }

    /// Waits until no session is in flight; false if `limit` passed first.
    func waitForSessions(upTo limit: Duration) -> Bool {
        let until = Date().addingTimeInterval(limit.seconds)
        return condition.withLock {
            while active > 0 {
                if !condition.wait(until: until) { return active == 0 }
            }
            return true
        }
    }

    /// A session found the image changed on disk.
    var imageChanged: Bool { condition.withLock { imageChangeSeen } }

    /// Sessions running now (the accept loop's own reserved slot left out).
    var running: Int { condition.withLock { sessions } }

    func sessionStarted() { condition.withLock { sessions += 1 } }

    /// True the first time only: the image path was found replaced or deleted.
    func firstImagePathWarning() -> Bool {
        condition.withLock {
            defer { imagePathWarned = true }
            return !imagePathWarned
        }
    }

    func outcome(timedOut: Bool, mode: AgentMode) -> RunOutcome {
        condition.withLock {
            // A once run that reached its update is done; otherwise a changed image must be
            // reported, so the operator restarts the agent with the new one.
            if updated > 0 && mode == .once { return .updated }
            if imageChangeSeen { return .imageChanged }
            if updated > 0 { return .updated }
            // Serve mode only ever ends on request: that is its clean stop.
            if mode == .serve && stopRequested { return .stopped }
            if let stopSignal { return .interrupted(signal: stopSignal) }
            return stopRequested && !timedOut ? .stopped : .timedOut
        }
    }
}
