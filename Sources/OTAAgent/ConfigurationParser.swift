import Foundation

/// Reads the command line and the environment into an `AgentConfiguration`. A flag wins over
/// its variable. Every problem is an `AgentError` of kind `.configuration` naming the setting.
public enum ConfigurationParser {
    /// What the command line asked for.
    public enum Request: Sendable {
        case run(AgentConfiguration)
        /// `ota-agent check`: the same settings, checked without serving (see `PreflightCheck`).
        case check(AgentConfiguration)
        case help
        case version
    }

    /// One setting: its flag, its variable, and how to describe it in `--help`.
    struct Setting {
        let flag: String
        let key: EnvironmentKey?
        let value: String
        let help: String
    }

    static let settings: [Setting] = [
        Setting(flag: "--image", key: .firmwarePath, value: "PATH",
                help: "firmware image to send (required)"),
        Setting(flag: "--dice-auth-url", key: .diceAuthURL, value: "URL",
                help: "Dice-Auth endpoint, http:// or https:// (required)"),
        Setting(flag: "--cert", key: .certificatePath, value: "PATH",
                help: "server certificate, PEM (required)"),
        Setting(flag: "--key", key: .keyPath, value: "PATH",
                help: "server private key, PEM (required; never logged)"),
        Setting(flag: "--expected-sha256", key: .expectedSHA256, value: "HEX",
                help: "refuse to start unless the image's SHA-256 is this (64 hex digits)"),
        Setting(flag: "--allow-any-image", key: .allowAnyImage, value: "",
                help: "serve a file of any format: no ESP-IDF app image check (variable: 1 or 0)"),
        Setting(flag: "--image-in-place", key: .imageInPlace, value: "",
                help: "serve the image file itself, no private copy: a change to it stops the agent"),
        Setting(flag: "--port", key: .port, value: "PORT",
                help: "TCP port to listen on (default 4433; 0 = any free port)"),
        Setting(flag: "--bind", key: .bindAddress, value: "ADDRESS",
                help: "numeric address to listen on (default: all, IPv6 and IPv4)"),
        Setting(flag: "--metrics-port", key: .metricsPort, value: "PORT",
                help: "serve Prometheus /metrics, /healthz and /readyz on this port (default: off; 0 = any free port)"),
        Setting(flag: "--metrics-bind", key: .metricsBindAddress, value: "ADDRESS",
                help: "numeric address of the metrics endpoint (default 127.0.0.1)"),
        Setting(flag: "--mode", key: .mode, value: "once|serve",
                help: "once: exit after one device is updated (default); serve: until stopped"),
        Setting(flag: "--timeout", key: .timeout, value: "SECONDS",
                help: "exit 3 when no device was updated by then (default: wait for ever)"),
        Setting(flag: "--max-concurrent", key: .maxConcurrent, value: "N",
                help: "devices served at once; more wait in the listen queue (default 64)"),
        Setting(flag: "--max-handshakes", key: .maxHandshakes, value: "N",
                help: "TLS handshakes computing at once; more wait their turn (default 8 per core)"),
        Setting(flag: "--max-per-address", key: .maxPerAddress, value: "N",
                help: "connections one client address may hold; more are refused (default 8)"),
        Setting(flag: "--max-unattested", key: .maxUnattested, value: "N",
                help: "connections before their certificate; at the bound, accepting waits (default 64)"),
        Setting(flag: "--grace-period", key: .gracePeriod, value: "SECONDS",
                help: "time left to transfers in flight when stopping (default 60)"),
        Setting(flag: "--handshake-timeout", key: .handshakeTimeout, value: "SECONDS",
                help: "TLS handshake deadline (default 10)"),
        Setting(flag: "--certificate-timeout", key: .certificateTimeout, value: "SECONDS",
                help: "deadline for the device's attestation certificate (default 10)"),
        Setting(flag: "--dice-auth-timeout", key: .diceAuthTimeout, value: "SECONDS",
                help: "deadline for Dice-Auth's verdict, retries included (default 60)"),
        Setting(flag: "--stall-timeout", key: .stallTimeout, value: "SECONDS",
                help: "longest a device may stop reading during a transfer (default 30)"),
        Setting(flag: "--transfer-timeout", key: .transferTimeout, value: "SECONDS",
                help: "deadline for a whole transfer (default 900)"),
        Setting(flag: "--close-timeout", key: .closeTimeout, value: "SECONDS",
                help: "wait for the device to close after the image (default 5)"),
        Setting(flag: "--deadline-scale", key: .deadlineScale, value: "FACTOR",
                help: "multiply every deadline, for slow builds (default 1)"),
        Setting(flag: "--dice-auth-ca", key: .diceAuthCAPath, value: "PATH",
                help: "CA certificates (PEM) to trust for an https Dice-Auth"),
        Setting(flag: "--dice-auth-client-cert", key: .diceAuthClientCertificatePath, value: "PATH",
                help: "client certificate (PEM) for mutual TLS to Dice-Auth; with the key"),
        Setting(flag: "--dice-auth-client-key", key: .diceAuthClientKeyPath, value: "PATH",
                help: "its private key (PEM; never logged)"),
        Setting(flag: "--dice-auth-concurrency", key: .diceAuthConcurrency, value: "N",
                help: "Dice-Auth requests in flight at once; the rest queue (default 1)"),
        Setting(flag: "--tls-ciphers", key: .tlsCiphers, value: "LIST",
                help: "TLS suites to offer, ':'-separated, a subset of the default ECDHE+AEAD list"),
        Setting(flag: "--tls-min-version", key: .tlsMinVersion, value: "1.2|1.3",
                help: "lowest TLS version (default 1.2; 1.3 locks out TLS 1.2-only devices)"),
        Setting(flag: "--require-proof", key: .requireProof, value: "",
                help: "refuse legacy devices: serve only those proving their key in the TLS "
                    + "handshake (OpenSSL build; variable: 1 or 0)"),
        Setting(flag: "--expect-device", key: .expectedDevices, value: "SHA256",
                help: "serve only these certificates (SHA-256 of the DER, hex), comma-separated; "
                    + "the flag repeatable"),
        Setting(flag: "--allow-peer", key: .deviceAddress, value: "ADDRESS",
                help: "serve only connections from these numeric addresses, comma-separated; "
                    + "the flag repeatable"),
        Setting(flag: "--log-level", key: .logLevel, value: "LEVEL",
                help: "debug, info, warning or error (default info)"),
        Setting(flag: "--log-format", key: .logFormat, value: "text|json",
                help: "text: key=value lines (default); json: one JSON object per line"),
        Setting(flag: "--progress-interval", key: .progressInterval, value: "SECONDS",
                help: "off a terminal, least time between a transfer's progress lines (default 1; "
                    + "0 = every tenth)"),
        Setting(flag: "--result-file", key: .resultFile, value: "PATH",
                help: "on exit, write a JSON summary of the run and of every device there"),
    ]

    /// Flags that need no value: given alone, they set their variable's "on" value; given as
    /// `--flag=VALUE`, the value is read as the variable's would be.
    static let switches: [String: String] = ["--require-proof": "1", "--allow-any-image": "1",
                                             "--image-in-place": "1"]

    /// Flags that may be given more than once: their values add up, as in the variable's list.
    static let repeatable: Set<String> = ["--expect-device", "--allow-peer"]

    /// Parses `arguments` (without the program name) and `environment`.
    public static func parse(arguments: [String], environment: [String: String]) throws(AgentError)
        -> Request
    {
        // Asking for help wins wherever it stands, even beside a mistake.
        if arguments.contains(where: { $0 == "-h" || $0 == "--help" }) { return .help }
        if arguments.contains("--version") { return .version }
        if arguments.first == "check" {
            return .check(try build(try flagValues(Array(arguments.dropFirst())), environment: environment))
        }
        return .run(try build(try flagValues(arguments), environment: environment))
    }

    private static func build(_ flags: [String: [String]], environment: [String: String])
        throws(AgentError) -> AgentConfiguration
    {
        try build(SettingValues(flags: flags, environment: environment))
    }

    /// Each flag's values, in order, as given (`SettingValues` trims them); only a repeatable
    /// flag has more than one: a single-value flag given twice is refused, not silently the last.
    private static func flagValues(_ arguments: [String]) throws(AgentError) -> [String: [String]] {
        var flags: [String: [String]] = [:]
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            let (flag, value, tookNext) = try flagValue(argument,
                                                        next: index < arguments.count ? arguments[index] : nil)
            if tookNext { index += 1 }
            if flags[flag] != nil && !repeatable.contains(flag) {
                let alias = flag == "--mode" ? " (--serve is --mode serve)" : ""
                throw .configuration("option \(flag) is given more than once\(alias): give it once "
                    + "(only \(repeatable.sorted().joined(separator: " and ")) repeat)")
            }
            flags[flag, default: []].append(value)
        }
        return flags
    }

    /// One option and its value, which may be the next argument (`tookNext`).
    private static func flagValue(_ argument: String, next: String?) throws(AgentError)
        -> (flag: String, value: String, tookNext: Bool)
    {
        if argument == "--serve" { return ("--mode", AgentMode.serve.rawValue, false) }
        let (flag, inlineValue) = split(argument)
        if let on = switches[flag] {
            // Alone it turns the setting on; "--flag=0" spells it out, as the variable does. An
            // empty "--flag=" (a template's unset variable, say) is refused as for any option:
            // read as off, it would quietly undo a setting such as --require-proof.
            if let inlineValue, SettingValues.trimmed(inlineValue).isEmpty {
                throw .configuration("option \(flag) needs a value after '=' (or none at all: \(flag) "
                    + "alone turns it on)")
            }
            return (flag, inlineValue ?? on, false)
        }
        guard argument.hasPrefix("-") else {
            if argument == "check" {
                throw .configuration("'check' must come first: ota-agent check [options]")
            }
            throw .configuration("unexpected argument \(quoted(argument)): every setting is an option (see --help)")
        }
        guard settings.contains(where: { $0.flag == flag }) else {
            throw .configuration("unknown option \(quoted(argument)) (see --help)")
        }
        guard let value = inlineValue ?? next else {
            throw .configuration("option \(flag) needs a value (leave the option out for its default)")
        }
        // "--result-file --require-proof" forgot a value; taking the next option as one would
        // also drop that option.
        if inlineValue == nil, value.hasPrefix("--") {
            throw .configuration("option \(flag) needs a value, and the next argument, \(quoted(value)), is an "
                + "option (write \(flag)=VALUE for a value that starts with --)")
        }
        guard !SettingValues.trimmed(value).isEmpty else {
            throw .configuration("option \(flag) needs a value (leave the option out for its default)")
        }
        return (flag, value, inlineValue == nil)
    }

    private static func split(_ argument: String) -> (String, String?) {
        guard argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") else {
            return (argument, nil)
        }
        return (String(argument[..<equals]), String(argument[argument.index(after: equals)...]))
    }

    private static func build(_ values: SettingValues) throws(AgentError) -> AgentConfiguration {
        try values.requireAll(["--image", "--dice-auth-url", "--cert", "--key"])
        var configuration = AgentConfiguration(
            imagePath: try values.required("--image"),
            diceAuthURL: try values.required("--dice-auth-url"),
            certificatePath: try values.required("--cert"),
            keyPath: try values.required("--key"))
        try checkURL(configuration.diceAuthURL, name: values.name(of: "--dice-auth-url"))
        configuration.expectedSHA256 = try values.sha256("--expected-sha256")
        configuration.allowAnyImage = try values.boolean("--allow-any-image") ?? false
        configuration.imageInPlace = try values.boolean("--image-in-place") ?? false

        if let port = try values.integer("--port", in: 0...65535) { configuration.port = UInt16(port) }
        configuration.bindAddress = try values.bindAddress("--bind")
        try metrics(values, into: &configuration)
        if let mode = values.string("--mode") {
            // Any case, as the other word-valued settings (log level and format, switches).
            guard let parsed = AgentMode(rawValue: mode.lowercased()) else {
                throw .configuration("\(values.name(of: "--mode")): \(quoted(mode)) is not once or serve")
            }
            configuration.mode = parsed
        }
        configuration.timeout = try values.duration("--timeout")
        if let limit = try values.integer("--max-concurrent", in: 1...100_000) {
            configuration.maxConcurrent = limit
        }
        if let limit = try values.integer("--max-handshakes", in: 1...100_000) {
            configuration.maxHandshakes = limit
        }
        if let limit = try values.integer("--max-per-address", in: 1...100_000) {
            configuration.maxPerAddress = limit
        }
        if let limit = try values.integer("--max-unattested", in: 1...100_000) {
            configuration.maxUnattested = limit
        }
        configuration.gracePeriod = try values.duration("--grace-period") ?? configuration.gracePeriod
        configuration.deadlines = try deadlines(values)
        configuration.diceAuth.caPath = values.string("--dice-auth-ca")
        configuration.diceAuth.clientCertificatePath = values.string("--dice-auth-client-cert")
        configuration.diceAuth.clientKeyPath = values.string("--dice-auth-client-key")
        try values.requirePair("--dice-auth-client-cert", "--dice-auth-client-key")
        if let limit = try values.integer("--dice-auth-concurrency", in: 1...1000) {
            configuration.diceAuth.concurrency = limit
        }
        configuration.tls.ciphers = values.string("--tls-ciphers")
        if let version = values.string("--tls-min-version") {
            guard let parsed = TLSVersion(rawValue: version) else {
                throw .configuration("\(values.name(of: "--tls-min-version")): \(quoted(version)) is not 1.2 or 1.3")
            }
            configuration.tls.minimumVersion = parsed
        }
        configuration.devicePolicy = try devicePolicy(values)
        if let level = values.string("--log-level") {
            guard let parsed = LogLevel(name: level) else {
                throw .configuration("\(values.name(of: "--log-level")): \(quoted(level)) is not a level")
            }
            configuration.logLevel = parsed
        }
        if let format = values.string("--log-format") {
            guard let parsed = LogFormat(rawValue: format.lowercased()) else {
                throw .configuration("\(values.name(of: "--log-format")): \(quoted(format)) is not text or json")
            }
            configuration.logFormat = parsed
        }
        configuration.progressInterval = try values.duration("--progress-interval", allowingZero: true)
            ?? configuration.progressInterval
        configuration.resultFilePath = values.string("--result-file")
        configuration.settingNames = values.names
        return configuration
    }

    private static func devicePolicy(_ values: SettingValues) throws(AgentError) -> DevicePolicy {
        var policy = DevicePolicy()
        if let text = values.string("--require-proof") {
            switch text.lowercased() {
            case "1", "true", "yes": policy.requireProof = true
            case "0", "false", "no": policy.requireProof = false
            default:
                throw .configuration("\(values.name(of: "--require-proof")): \(quoted(text)) is not 1 or 0")
            }
        }
        for item in try values.list("--expect-device") {
            guard let fingerprint = DevicePolicy.fingerprint(item) else {
                throw .configuration("\(values.name(of: "--expect-device")): \(quoted(item)) is not a certificate "
                    + "fingerprint: 64 hex digits (SHA-256 of the certificate's DER), colons allowed")
            }
            if !policy.expectedDevices.contains(fingerprint) { policy.expectedDevices.append(fingerprint) }
        }
        for item in try values.list("--allow-peer") {
            let address = try values.address(item, of: "--allow-peer").value
            if !policy.allowedPeers.contains(address) { policy.allowedPeers.append(address) }
        }
        return policy
    }

    /// The metrics endpoint: off without a port; its address must be numeric.
    private static func metrics(_ values: SettingValues, into configuration: inout AgentConfiguration)
        throws(AgentError)
    {
        if let port = try values.integer("--metrics-port", in: 0...65535) {
            configuration.metricsPort = UInt16(port)
        }
        if let address = try values.bindAddress("--metrics-bind") { configuration.metricsBindAddress = address }
    }

    private static func deadlines(_ values: SettingValues) throws(AgentError) -> Deadlines {
        var deadlines = Deadlines()
        deadlines.handshake = try values.duration("--handshake-timeout") ?? deadlines.handshake
        deadlines.certificate = try values.duration("--certificate-timeout") ?? deadlines.certificate
        deadlines.diceAuth = try values.duration("--dice-auth-timeout") ?? deadlines.diceAuth
        deadlines.stall = try values.duration("--stall-timeout") ?? deadlines.stall
        deadlines.transfer = try values.duration("--transfer-timeout") ?? deadlines.transfer
        deadlines.close = try values.duration("--close-timeout") ?? deadlines.close
        if let scale = values.string("--deadline-scale") {
            guard let factor = SettingValues.decimal(scale), factor > 0, factor <= 1000 else {
                throw .configuration("\(values.name(of: "--deadline-scale")): \(quoted(scale)) is not a "
                    + "factor greater than 0 and at most 1000")
            }
            deadlines = deadlines.scaled(by: factor)
        }
        return deadlines
    }

    /// Checks the shape of a Dice-Auth URL; reachability is a matter for run time.
    static func checkURL(_ text: String, name: String) throws(AgentError) {
        // Messages show the URL without the credentials it may carry.
        let shown = RedactedURL.text(text)
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased() else {
            throw .configuration("\(name): \(quoted(shown)) is not a URL")
        }
        guard scheme == "http" || scheme == "https" else {
            throw .configuration("\(name): scheme \(quoted(scheme)) is not http or https")
        }
        guard let host = url.host, !host.isEmpty else {
            throw .configuration("\(name): \(quoted(shown)) has no host")
        }
        // The same parser as the requests themselves, so a URL accepted here is one curl takes.
        if let problem = CurlURL.problem(text) {
            throw .configuration("\(name): \(quoted(shown)): \(problem)")
        }
    }

    /// The text of `ota-agent --help`.
    public static var helpText: String {
        var lines = [
            "usage: ota-agent [options]",
            "       ota-agent check [options]",
            "",
            "Serves a firmware image over TLS to ESP32 devices whose DICE attestation",
            "certificate Dice-Auth verifies. Every option can also be set by the environment",
            "variable shown; an option on the command line wins.",
            "",
            "'ota-agent check' takes the same settings and checks them without serving: the",
            "certificate and key, the image, Dice-Auth answering, the port free, the result file",
            "writable. One line per check (ok, warn or FAIL and why); exit 0 when none fails.",
            "",
            "Logs go to standard error. There, on a terminal, transfers in flight show on a live",
            "status line; elsewhere (or with --log-format json) each logs a progress line at every 10%,",
            "at most one a second (--progress-interval).",
            "",
            "options:",
        ]
        for setting in settings {
            let left = "  \(setting.flag) \(setting.value)"
            let variable = setting.key.map { "  [\($0.rawValue)]" } ?? ""
            lines.append(left.padding(toLength: 34, withPad: " ", startingAt: 0)
                + setting.help + variable)
        }
        lines += [
            "  --serve".padding(toLength: 34, withPad: " ", startingAt: 0) + "same as --mode serve",
            "  --help, --version",
            "",
            "exit codes: 0 updated (or stopped cleanly in serve mode), 1 internal error,",
            "2 configuration or usage error, 3 timeout with no device updated,",
            "4 'ota-agent check' found a problem (2 when the settings cannot even be read),",
            "129 / 130 / 143 stopped by SIGHUP / SIGINT / SIGTERM with no device updated (once mode).",
            "An image file that changes on disk while served also stops the agent with exit 2.",
        ]
        return lines.joined(separator: "\n")
    }
}

/// Flag values over environment values, with typed readers whose errors name the source.
///
/// Every value is trimmed of surrounding white space (spaces, tabs, line breaks), from a flag
/// or a variable alike: a variable written in a Kubernetes manifest or filled from a file often
/// ends in a newline, and no setting's value begins or ends with white space on purpose. A value
/// that is only white space counts as empty (unset, for a variable).
struct SettingValues {
    /// Each flag's values as given; only a repeatable flag has more than one.
    let flags: [String: [String]]
    let environment: [String: String]

    static func trimmed(_ text: String) -> String { text.trimmingCharacters(in: .whitespacesAndNewlines) }

    /// A plain decimal number as people write seconds or a factor ("2", "0.5", ".25", "3."):
    /// digits and at most one point, nothing else. Swift's Double(_:) would also take "0x10"
    /// (16), "1e-300" and "inf", which nobody means here.
    static func decimal(_ text: String) -> Double? {
        var digits = 0
        var points = 0
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digits += 1
            case UInt8(ascii: "."): points += 1
            default: return nil
            }
        }
        guard digits > 0, points <= 1 else { return nil }
        return Double(text)
    }

    private func setting(_ flag: String) -> ConfigurationParser.Setting {
        ConfigurationParser.settings.first { $0.flag == flag }!
    }

    /// How to name a setting in a message: the flag if it was given, else the variable.
    func name(of flag: String) -> String {
        if flags[flag] != nil { return flag }
        return setting(flag).key.map { "\($0.rawValue)" } ?? flag
    }

    /// Each setting that was given, named as it was given (see `SettingNames`).
    var names: SettingNames {
        var names = SettingNames()
        for setting in ConfigurationParser.settings {
            guard let key = setting.key, string(setting.flag) != nil else { continue }
            names.record(key, givenAs: name(of: setting.flag))
        }
        return names
    }

    /// The value of a single-value setting, trimmed; nil when not given or empty.
    func string(_ flag: String) -> String? {
        let given = flags[flag].map { $0.joined(separator: ",") } ?? setting(flag).key.flatMap { environment[$0] }
        guard let value = given.map(Self.trimmed), !value.isEmpty else { return nil }
        return value
    }

    /// Fails naming every one of `flags` that has no value, not just the first.
    func requireAll(_ flags: [String]) throws(AgentError) {
        let missing = flags.filter { string($0) == nil }
        guard !missing.isEmpty else { return }
        let names = missing.map { flag in setting(flag).key.map { "\($0.rawValue) (\(flag))" } ?? flag }
        let verb = missing.count == 1 ? "is" : "are"
        throw .configuration("\(names.joined(separator: ", ")) \(verb) not set (see --help)")
    }

    /// Two settings that only work together: both or neither, naming both when one is missing.
    func requirePair(_ first: String, _ second: String) throws(AgentError) {
        guard (string(first) == nil) != (string(second) == nil) else { return }
        let (given, missing) = string(first) != nil ? (first, second) : (second, first)
        let missingName = setting(missing).key.map { "\($0.rawValue) (\(missing))" } ?? missing
        throw .configuration("\(name(of: given)) needs \(missingName) as well: give both or neither")
    }

    func required(_ flag: String) throws(AgentError) -> String {
        guard let value = string(flag) else {
            let variable = setting(flag).key.map { "\($0.rawValue) is not set" } ?? "missing"
            throw .configuration("\(variable) (or \(flag)): \(setting(flag).help)")
        }
        return value
    }

    /// A list setting's items: each value (of the variable, or of each time the flag is given)
    /// is a comma-separated list; an empty item (",," or a trailing comma) is an error.
    func list(_ flag: String) throws(AgentError) -> [String] {
        let given = flags[flag] ?? setting(flag).key.flatMap { environment[$0] }.map { [$0] } ?? []
        var items: [String] = []
        for text in given.map(Self.trimmed) where !text.isEmpty {
            let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Self.trimmed(String($0)) }
            guard !parts.contains(where: \.isEmpty) else {
                throw .configuration("\(name(of: flag)): \(quoted(text)) has an empty item in its comma-separated list")
            }
            items += parts
        }
        return items
    }

    /// A numeric address setting as the listener takes it (see `address(_:of:)`).
    func address(_ flag: String) throws(AgentError) -> String? {
        guard let text = string(flag) else { return nil }
        return try address(text, of: flag).text
    }

    /// An address to listen on (--bind, --metrics-bind): as `address(_:)`, and an IPv6 address
    /// may also name its zone, "fe80::1%eth0" (an interface name or index), since a link-local
    /// address means nothing without one. The listener reads the zone (getaddrinfo).
    func bindAddress(_ flag: String) throws(AgentError) -> String? {
        guard let text = string(flag) else { return nil }
        let bracketed = text.hasPrefix("[") && text.hasSuffix("]")
        let inner = bracketed ? String(text.dropFirst().dropLast()) : text
        guard let percent = inner.firstIndex(of: "%") else { return try address(text, of: flag).text }

        let host = String(inner[..<percent])
        let zone = String(inner[inner.index(after: percent)...])
        let zoneKnown = !zone.isEmpty
            && (zone.allSatisfy(\.isASCII) && zone.allSatisfy(\.isNumber) || if_nametoindex(zone) != 0)
        guard host.contains(":"), PeerAddress(numeric: host) != nil, zoneKnown else {
            throw .configuration("\(name(of: flag)): \(quoted(text)) is not a numeric IPv6 address with "
                + "the zone of an interface here (as fe80::1%eth0)")
        }
        return host + "%" + zone
    }

    /// `text` as a numeric address: IPv4 in full dotted-quad form ("127.0.0.1"; not "127.1"
    /// or "0x7f.1", which inet_aton and getaddrinfo would take) or IPv6 in its standard text
    /// forms, as inet_pton reads them, optionally in brackets ("[::1]"); returned without the
    /// brackets, and as a value. One rule for every address setting, so one accepted for --bind
    /// is accepted for --allow-peer. No host names, ports or prefixes; no IPv6 zone ("%eth0")
    /// here: only the listen settings take one (`bindAddress(_:)`).
    func address(_ text: String, of flag: String) throws(AgentError) -> (text: String, value: PeerAddress) {
        let bracketed = text.hasPrefix("[") && text.hasSuffix("]")
        let address = bracketed ? String(text.dropFirst().dropLast()) : text
        guard let value = PeerAddress(numeric: address), !bracketed || address.contains(":") else {
            throw .configuration("\(name(of: flag)): \(quoted(text)) is not a numeric IPv4 address "
                + "(dotted quad, as 192.0.2.7) or IPv6 address (as 2001:db8::7 or [2001:db8::7])")
        }
        return (address, value)
    }

    func integer(_ flag: String, in range: ClosedRange<Int>) throws(AgentError) -> Int? {
        guard let text = string(flag) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw .configuration("\(name(of: flag)): \(quoted(text)) is not a whole number in "
                + "\(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    /// A switch: 1, true, yes or on; 0, false, no or off (any case).
    func boolean(_ flag: String) throws(AgentError) -> Bool? {
        guard let text = string(flag) else { return nil }
        switch text.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default:
            throw .configuration("\(name(of: flag)): \(quoted(text)) is not 1 or 0 "
                + "(true or false, yes or no, on or off)")
        }
    }

    /// A SHA-256 digest: 64 hex digits in either case, returned in lower case.
    func sha256(_ flag: String) throws(AgentError) -> String? {
        guard let text = string(flag) else { return nil }
        let isHex = text.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x46).contains(byte) || (0x61...0x66).contains(byte)
        }
        guard text.utf8.count == 64, isHex else {
            throw .configuration("\(name(of: flag)): \(quoted(text)) is not a SHA-256 digest (64 hex digits)")
        }
        return text.lowercased()
    }

    func duration(_ flag: String, allowingZero: Bool = false) throws(AgentError) -> Duration? {
        guard let text = string(flag) else { return nil }
        guard let seconds = Self.decimal(text), seconds > 0 || (allowingZero && seconds == 0),
              seconds <= 31_536_000 else {
            throw .configuration("\(name(of: flag)): \(quoted(text)) is not a number of seconds "
                + "\(allowingZero ? "from 0" : "greater than 0") and at most 31536000 (a year)")
        }
        return .milliseconds(Int64((seconds * 1000).rounded(.up)))
    }
}

/// A value as a message shows it: in single quotes, control characters escaped (a terminal
/// must not obey them), and cut short past 256 characters with the length said.
func quoted(_ text: String) -> String {
    let limit = 256
    var shown = ""
    for scalar in text.unicodeScalars.prefix(limit) {
        shown += Logger.isControl(scalar) ? "\\u{" + String(scalar.value, radix: 16) + "}" : String(scalar)
    }
    let count = text.unicodeScalars.count
    return "'" + shown + (count > limit ? "...' (\(count) characters)" : "'")
}
