import Foundation

/// The image a run served, as `Agent.start()` opened and hashed it.
public struct ImageIdentity: Sendable, Equatable {
    public let path: String
    public let size: UInt64
    /// SHA-256 of the file at start, lower-case hex.
    public let sha256: String
}

extension RunOutcome {
    /// The word the `exiting` log line and the result file use.
    public var name: String {
        switch self {
        case .updated: "updated"
        case .stopped: "stopped"
        case .timedOut: "timed-out"
        case .interrupted(let signal): "interrupted-by-signal-\(signal)"
        case .imageChanged: "image-changed"
        }
    }
}

/// The JSON summary of a run that `--result-file` asks for, for the orchestrator that started
/// the agent. Written once, on exit, atomically: a temporary file in the same folder, flushed
/// to disk, then renamed over the path, so a reader sees the whole previous file or the whole
/// new one, never a part. The README documents every member ("Result file").
public enum ResultFile {
    /// The value of the document's `format` member; grows only by new members.
    public static let format = "ota-agent-result/1"

    /// An unwritable result file would be found only at exit, when the run's outcome is lost:
    /// so at start, create (and remove) a file beside it, the way the final write will.
    /// `inputs` are the files the agent reads (image, certificate, key, ...), named by their
    /// setting: the result file must not be one of them, or the run's end would overwrite it.
    /// `name` is the result file's own setting, as messages name it.
    static func checkWritable(_ path: String?, inputs: [(setting: String, path: String)] = [],
                              name: String = SettingNames()[.resultFile]) throws(AgentError)
    {
        guard let path else { return }
        var info = stat()
        let exists = stat(path, &info) == 0
        if exists && (info.st_mode & S_IFMT) == S_IFDIR {
            throw .configuration("\(name): \(path) is a directory")
        }
        for input in inputs where sameFile(path, info, exists: exists, input.path) {
            throw .configuration("\(name): \(path) is \(input.setting): the result would overwrite it")
        }
        let probe = temporaryPath(for: path)
        let descriptor = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        // Read before anything else can set it again.
        let cause = String(cString: strerror(errno))
        guard descriptor >= 0 else {
            throw .configuration("\(name): cannot create a file in \(folder(of: path)): \(cause)")
        }
        close(descriptor)
        unlink(probe)
    }

    /// Whether `path` (stat'ed as `info` when it exists) and `other` name one file: the same
    /// inode, or, for a file not there yet, the same path once made absolute.
    private static func sameFile(_ path: String, _ info: stat, exists: Bool, _ other: String) -> Bool {
        var otherInfo = stat()
        if exists, stat(other, &otherInfo) == 0 {
            return info.st_dev == otherInfo.st_dev && info.st_ino == otherInfo.st_ino
        }
        return URL(fileURLWithPath: path).standardizedFileURL.path
            == URL(fileURLWithPath: other).standardizedFileURL.path
    }

    /// The summary of a run that started: its outcome, the exit code the process ends with,
    /// the image, and the device sessions in the order they ended (see `RunSummary.sessions`);
    /// `notListed` and `devicesUpdated` count the whole run when the summary lists less.
    public static func document(outcome: String, exitCode: Int32, image: ImageIdentity?,
                                sessions: [SessionRecord], notListed: Int = 0, devicesUpdated: Int? = nil,
                                reason: String? = nil, startedAt: Date, endedAt: Date = Date()) -> String
    {
        let imageValue: JSONValue = image.map { image in
            .object([("path", .string(image.path)), ("bytes", .integer(image.size)),
                     ("sha256", .string(image.sha256))])
        } ?? .null
        let document: JSONValue = .object([
            ("format", .string(format)),
            ("agent_version", .string(AgentVersion.number)),
            ("outcome", .string(outcome)),
            ("exit_code", .integer(exitCode)),
            ("reason", .optional(reason)),
            ("started_at", .string(timestamp(startedAt))),
            ("ended_at", .string(timestamp(endedAt))),
            ("image", imageValue),
            ("devices_updated", .integer(devicesUpdated ?? sessions.filter { $0.outcome == .updated }.count)),
            ("sessions", .array(sessions.map { session($0, image: image) })),
            ("sessions_not_listed", .integer(notListed)),
        ])
        return document.pretty
    }

    /// One device session. `sha256_sent` is the image's SHA-256 when every byte of the image
    /// went to the device (handed to TLS, from the file verified unchanged), and null for a
    /// partial transfer or none: a partial transfer is the image's first `bytes_sent` bytes,
    /// which the device discards, since it ends with a TCP reset.
    static func session(_ record: SessionRecord, image: ImageIdentity?) -> JSONValue {
        let certificate: JSONValue = record.certificate.map { identity in
            .object([("subject", .string(identity.subject)), ("sha256", .string(identity.fingerprint))])
        } ?? .null
        let whole = image.map { record.bytesSent == $0.size && !record.imageChanged } ?? false
        return .object([
            ("device", .string(record.peer)),
            ("certificate", certificate),
            ("proved_possession", .bool(record.provedPossession)),
            ("verdict", .string(record.verdict?.name ?? "none")),
            ("outcome", .string(record.outcome.rawValue)),
            ("phase", .string(record.phase.rawValue)),
            ("bytes_sent", .integer(record.bytesSent)),
            ("sha256_sent", whole ? .optional(image?.sha256) : .null),
            ("duration_ms", .integer(Int64(record.duration.milliseconds))),
            ("dice_auth_ms", record.diceAuthDuration.map { .integer(Int64($0.milliseconds)) } ?? .null),
            ("path", record.transferPath.isEmpty ? .null : .string(record.transferPath)),
            ("reason", record.reason.isEmpty ? .null : .string(record.reason)),
        ])
    }

    /// Writes `text` as the result file `configuration` asks for, if any: never over one of the
    /// files the agent reads, checked here again since a start may fail (or be stopped) before
    /// its own check ran, and a failed start writes a result file too.
    public static func write(_ text: String, for configuration: AgentConfiguration) throws(AgentError) {
        guard let path = configuration.resultFilePath else { return }
        let name = configuration.settingNames[.resultFile]
        try checkWritable(path, inputs: configuration.inputFiles, name: name)
        try write(text, to: path, name: name)
    }

    /// Writes `text` to `path` atomically (see the type's comment); a failure names the
    /// setting as `name` has it.
    public static func write(_ text: String, to path: String,
                             name: String = SettingNames()[.resultFile]) throws(AgentError)
    {
        let temporary = temporaryPath(for: path)
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw AgentError(.internal, "\(name): cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        let bytes = Array(text.utf8)
        var offset = 0
        var failure: Int32 = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes {
                Glibc.write(descriptor, $0.baseAddress! + offset, bytes.count - offset)
            }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                failure = errno
                break
            }
            offset += written
        }
        if failure == 0 && fsync(descriptor) != 0 { failure = errno }
        close(descriptor)
        if failure == 0 && rename(temporary, path) != 0 { failure = errno }
        guard failure == 0 else {
            unlink(temporary)
            throw AgentError(.internal, "\(name): cannot write \(path): \(String(cString: strerror(failure)))")
        }
    }

    /// A name in the same folder (rename(2) is atomic only within one file system), hidden,
    /// and this process's own.
    private static func temporaryPath(for path: String) -> String {
        let url = URL(fileURLWithPath: path)
        return url.deletingLastPathComponent().appendingPathComponent(
            ".\(url.lastPathComponent).\(getpid()).tmp").path
    }

    private static func folder(of path: String) -> String {
        URL(fileURLWithPath: path).deletingLastPathComponent().path
    }

    private static func timestamp(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        return Logger.utc(seconds: milliseconds / 1000, milliseconds: Int(milliseconds % 1000))
    }
}
