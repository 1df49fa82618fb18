import Foundation

/// The agent for Swift embedders: events per device, an async run and shutdown, and the
/// metrics.
///
///     let agent = Agent(configuration: configuration)
///     let events = agent.events()              // before start: no event is missed
///     try agent.start()                        // validates and binds; throws AgentError
///     let run = Task { await agent.runDetached() }
///     for await event in events {              // ends once the run has ended
///         if case .ended(let record) = event { print(record.peer, record.outcome) }
///     }
///     let summary = await run.value
///
/// `shutdown()` stops the run from anywhere and returns its summary once it has ended.
extension Agent {
    /// An agent logging to standard error at the configuration's log level.
    public convenience init(configuration: AgentConfiguration) {
        self.init(configuration: configuration, logger: Logger(level: configuration.logLevel))
    }

    /// A stream of every device's events from now on (see `AgentEvent`); it ends when the run
    /// has ended and every session with it. Any number of streams may be open.
    ///
    /// Sessions never wait for a consumer: the stream holds up to `bufferSize` events, and
    /// when a consumer falls that far behind the oldest waiting events are dropped (counted in
    /// `ota_agent_events_dropped_total`). The run summary holds every session regardless.
    /// A stream asked for after the run ended ends at once.
    public func events(bufferSize: Int = 4096) -> AsyncStream<AgentEvent> {
        hub.subscribe(bufferSize: bufferSize)
    }

    /// Stops the run (as `stop(signal:)`, so a second call cuts the grace period short) and
    /// waits, without blocking a thread, until it has ended. Returns the run's summary, or nil
    /// when `run()` was never called (the listeners are then closed here).
    public func shutdown() async -> RunSummary? {
        stop()
        guard completion.hasBegun else {
            metricsServer?.stop()
            hub.finish()
            return nil
        }
        return await completion.summary()
    }

    /// The port the metrics endpoint bound (useful with port 0), after `start()`; nil when
    /// there is none.
    public var metricsPort: UInt16? { metricsServer?.port }

    /// The metrics as the endpoint serves them (Prometheus text format 0.0.4), for an embedder
    /// with an HTTP server of its own. Any thread.
    public func metricsText() -> String { hub.metrics.render() }

    // MARK: - Inside the agent

    /// The endpoint, bound but not yet serving; nil when no metrics port is set.
    func makeMetricsServer() throws(AgentError) -> MetricsServer? {
        guard let port = configuration.metricsPort else { return nil }
        let metrics = hub.metrics
        return try MetricsServer(bindAddress: configuration.metricsBindAddress, port: port,
                                 settingName: configuration.metricsListenerSettingName) { path in
            switch path {
            case "/metrics":
                return MetricsServer.Reply(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                                           body: metrics.render())
            case "/healthz":
                // Liveness: the endpoint serves from start() to the run's end, accepting or
                // draining (grace period included), so a process that answers is doing its job.
                return .text(200, "ok\n")
            case "/readyz":
                // Readiness: only while devices are accepted.
                return metrics.isAccepting ? .text(200, "ok\n") : .text(503, "not accepting devices\n")
            default:
                return nil
            }
        }
    }

    func startMetricsServer(_ server: MetricsServer) {
        server.start()
        logger.info("metrics-listening", [LogField("address", server.address), LogField("port", server.port),
                                          LogField("paths", "/metrics,/healthz,/readyz")])
        guard !(PeerAddress(server.address)?.isLoopback ?? false) else { return }
        logger.warning("metrics-not-loopback", [LogField("address", server.address), LogField("reason",
            "the metrics endpoint has no authentication: anyone who can reach this address reads them")])
    }

    /// After the run: the endpoint closes, the streams end, `shutdown()` returns.
    func endRun(_ summary: RunSummary) {
        metricsServer?.stop()
        hub.finish()
        completion.resolve(summary)
    }
}

extension PeerAddress {
    /// 127.0.0.0/8, ::1, or an IPv4-mapped loopback address.
    var isLoopback: Bool {
        bytes.count == 4 ? bytes[0] == 127 : bytes == Array(repeating: 0, count: 15) + [1]
    }
}

/// A run's end, awaited by `Agent.shutdown()`. Any thread.
final class RunCompletion: @unchecked Sendable {
    private let lock = NSLock()
    private var begun = false
    private var result: RunSummary?
    private var waiters: [CheckedContinuation<RunSummary, Never>] = []

    var hasBegun: Bool { lock.withLock { begun } }

    func begin() { lock.withLock { begun = true } }

    func resolve(_ summary: RunSummary) {
        let waiting = lock.withLock {
            result = summary
            defer { waiters.removeAll() }
            return waiters
        }
        waiting.forEach { $0.resume(returning: summary) }
    }

    func summary() async -> RunSummary {
        await withCheckedContinuation { continuation in
            let ready: RunSummary? = lock.withLock {
                if let result { return result }
                waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
