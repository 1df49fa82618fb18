import Foundation
import Testing
@testable import OTAAgent

/// The Dockerfile and the Kubernetes Job example, held against the agent itself: no container
/// engine runs here, so these read the files as text and feed the environment they give the
/// agent to the agent's own configuration parser. scripts/embedding-test checks, after a real
/// release build, that the file the Dockerfile copies is there.
@Suite("Deployment files")
struct DeploymentFilesTests {
    /// The four variables today's deployments set; EnvironmentKey keeps their names.
    static let deploymentKeys: [EnvironmentKey] = [.firmwarePath, .diceAuthURL, .certificatePath, .keyPath]

    /// The executable product of Package.swift that is the agent (the release build's file name).
    static func agentProductName() throws -> String {
        let manifest = try DeploymentText.read("Package.swift")
        let products = manifest.matches(of: /\.executable\(name: "([^"]+)", targets: \["ota-agent"\]\)/)
        try #require(products.count == 1, "Package.swift: no single executable product of target ota-agent")
        return String(products[0].output.1)
    }

    @Test("the four deployment variables are still the agent's names")
    func deploymentKeysAreStable() {
        #expect(Self.deploymentKeys.map(\.rawValue)
                == ["NEW_FIRMWARE_PATH", "DICE_AUTH_URL", "SERVER_CRT_PATH", "SERVER_KEY_PATH"])
    }

    @Test("Dockerfile: copies and runs the release build's binary, names the four variables, exposes the agent's port")
    func dockerfile() throws {
        let dockerfile = try Dockerfile(DeploymentText.read("Dockerfile"))
        let product = try Self.agentProductName()

        // scripts/release-build writes dist/<backend>/<product>; the image copies exactly that.
        let copy = try #require(dockerfile.arguments("COPY").last { $0.contains("dist/") })
        let parts = copy.split(separator: " ").filter { !$0.hasPrefix("--") }.map(String.init)
        try #require(parts.count == 2, "COPY \(copy)")
        #expect(parts[0] == "dist/${BACKEND}/\(product)")
        let installed = parts[1]
        #expect(URL(fileURLWithPath: installed).lastPathComponent == product)
        #expect(dockerfile.arguments("ENTRYPOINT") == ["[\"\(installed)\"]"])
        let releaseBuild = try DeploymentText.read("scripts/release-build")
        #expect(releaseBuild.contains("output=\"${output:-dist/$backend}\""))
        #expect(releaseBuild.contains("\"$output/\(product)\""))
        let ignored = try DeploymentText.read(".dockerignore")
        #expect(ignored.contains("!dist/openssl/\(product)") && ignored.contains("!dist/mbedtls/\(product)"))

        // Every variable it sets is one the agent reads; all four deployment variables named.
        let environment = dockerfile.environment
        for name in environment.keys {
            #expect(EnvironmentKey(rawValue: name) != nil, "Dockerfile sets \(name), which the agent does not read")
        }
        for key in Self.deploymentKeys {
            #expect(dockerfile.text.contains(key.rawValue), "Dockerfile does not name \(key.rawValue)")
        }
        #expect(environment[EnvironmentKey.diceAuthURL.rawValue] == nil, "DICE_AUTH_URL needs no default")

        // With the one variable a deployment must add, the agent parses a configuration whose
        // port is the one exposed.
        var runEnvironment = environment
        runEnvironment[EnvironmentKey.diceAuthURL.rawValue] = "https://dice-auth.example/verify"
        let configuration = try DeploymentText.parse(runEnvironment)
        #expect(dockerfile.arguments("EXPOSE") == ["\(configuration.port)"])
        #expect(configuration.port == 4433)

        // Not root; the runtime libraries of both backends are Debian's packages.
        #expect(dockerfile.arguments("USER").last.map { !$0.hasPrefix("0") && !$0.hasPrefix("root") } == true)
        #expect(dockerfile.arguments("FROM").first == "debian:12-slim")
        for package in ["libcurl4", "libssl3", "libmbedtls14", "libmbedx509-1", "libmbedcrypto7"] {
            #expect(dockerfile.text.contains(package), "Dockerfile does not install \(package)")
        }
    }

    @Test("Kubernetes Job: the binary, the four variables, the agent's port, a grace period longer than the agent's")
    func kubernetesJob() throws {
        let job = KubernetesManifest(try DeploymentText.read("deploy/kubernetes/ota-agent-job.yaml"))
        let dockerfile = try Dockerfile(DeploymentText.read("Dockerfile"))
        let agent = try #require(try job.containers("containers").only, "the Job has not one container")

        // The same binary as the image's entry point, with the image's default command (a run).
        let product = try Self.agentProductName()
        #expect(agent.values("command") == dockerfile.arguments("ENTRYPOINT"))
        #expect(agent.values("command").first?.contains("/\(product)\"") == true)
        #expect(agent.values("args").isEmpty)
        #expect(agent.values("name").first == "ota-agent")

        // The container's variables, ConfigMap references resolved, all read by the agent.
        let environment = try agent.environment(configMap: job.configMapData())
        for name in environment.keys {
            #expect(EnvironmentKey(rawValue: name) != nil, "the Job sets \(name), which the agent does not read")
        }
        for key in Self.deploymentKeys {
            #expect(environment[key.rawValue] != nil, "the Job does not set \(key.rawValue)")
        }
        let configuration = try DeploymentText.parse(environment)

        // The port the agent binds is the container's, the Service's and the image's.
        #expect(agent.values("containerPort") == ["\(configuration.port)"])
        #expect(job.values("port") == ["\(configuration.port)"])
        #expect(dockerfile.arguments("EXPOSE") == ["\(configuration.port)"])

        // The files it names are on the mounted volumes.
        let mounts = agent.values("mountPath")
        for path in [configuration.imagePath, configuration.certificatePath, configuration.keyPath] {
            #expect(mounts.contains { path.hasPrefix($0 + "/") }, "\(path) is on no mounted volume")
        }

        // SIGTERM: the grace period for transfers, then up to 30 s for the cancelled ones.
        let podGrace = try #require(job.values("terminationGracePeriodSeconds").first.flatMap { Int($0) })
        #expect(Duration.seconds(podGrace) > configuration.gracePeriod + .seconds(30))
        #expect(job.values("restartPolicy") == ["Never"])
    }

    @Test("Kubernetes Job: the init container runs `ota-agent check` with the agent's environment and mounts")
    func kubernetesJobInitContainer() throws {
        let job = KubernetesManifest(try DeploymentText.read("deploy/kubernetes/ota-agent-job.yaml"))
        let agent = try #require(try job.containers("containers").only, "the Job has not one container")
        let check = try #require(try job.containers("initContainers").only, "the Job has not one init container")

        #expect(check.values("image") == agent.values("image"))
        #expect(check.values("command") == agent.values("command"))
        #expect(check.values("args") == ["[\"check\"]"])
        let data = try job.configMapData()
        #expect(try check.environment(configMap: data) == agent.environment(configMap: data))
        #expect(check.values("mountPath") == agent.values("mountPath"))
        #expect(check.values("readOnlyRootFilesystem") == agent.values("readOnlyRootFilesystem"))

        // The check's 2 (settings unreadable) and 4 (a check failed), and the agent's 2, fail
        // the Job at once: a retry cannot mend them.
        let rules = job.failJobExitCodes()
        let checkName = try #require(check.values("name").first)
        let agentName = try #require(agent.values("name").first)
        #expect(rules[checkName] == [2, 4], "\(rules)")
        #expect(rules[agentName] == [2], "\(rules)")
    }

    /// Every attempt (the check, OTA_TIMEOUT, the grace period and the 30 s for cancelled
    /// transfers) fits, with the controller's back-off between attempts, in activeDeadlineSeconds.
    @Test("Kubernetes Job: all attempts, with their back-off, end before the Job's deadline")
    func kubernetesJobTiming() throws {
        let job = KubernetesManifest(try DeploymentText.read("deploy/kubernetes/ota-agent-job.yaml"))
        let agent = try #require(try job.containers("containers").only)
        let configuration = try DeploymentText.parse(try agent.environment(configMap: job.configMapData()))

        let retries = try #require(job.values("backoffLimit").first.flatMap { Int($0) })
        let deadline = try #require(job.values("activeDeadlineSeconds").first.flatMap { Int($0) })
        let timeout = try #require(configuration.timeout)
        // Scheduling, pulling the image and the check (which ends within about 5 s).
        let startUp = Duration.seconds(60)
        let attempt = startUp + timeout + configuration.gracePeriod + .seconds(30)
        let attempts = retries + 1
        // Kubernetes' Job back-off: 10 s, 20 s, 40 s, ... capped at 6 minutes.
        let backOff = (0..<retries).reduce(Duration.zero) { sum, retry in
            sum + .seconds(min(10 << retry, 360))
        }
        #expect(attempt * attempts + backOff < .seconds(deadline),
                "\(attempts) attempts of \(attempt) and \(backOff) of back-off exceed \(deadline) s")
    }
}

extension Array {
    /// The one element, or nil when there are none or several.
    var only: Element? { count == 1 ? first : nil }
}

/// Files of the repository, and the agent's parser over an environment.
enum DeploymentText {
    static func read(_ path: String) throws -> String {
        try String(contentsOf: Sample.root.appendingPathComponent(path), encoding: .utf8)
    }

    static func parse(_ environment: [String: String]) throws -> AgentConfiguration {
        let request = try ConfigurationParser.parse(arguments: [], environment: environment)
        guard case .run(let configuration) = request else {
            throw DeploymentFileError("the environment did not give a configuration to run")
        }
        return configuration
    }
}

struct DeploymentFileError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A Dockerfile read as instructions: comments dropped, continuation lines joined.
struct Dockerfile {
    let text: String
    let instructions: [(name: String, arguments: String)]

    init(_ text: String) throws {
        self.text = text
        var joined: [String] = []
        var pending = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("#") { continue }
            if trimmed.hasSuffix("\\") {
                pending += String(trimmed.dropLast()) + " "
                continue
            }
            joined.append(pending + trimmed)
            pending = ""
        }
        instructions = joined.filter { !$0.isEmpty }.map { line in
            let name = line.prefix { !$0.isWhitespace }
            return (String(name).uppercased(), line.dropFirst(name.count).trimmingCharacters(in: .whitespaces))
        }
        guard !instructions.isEmpty else { throw DeploymentFileError("Dockerfile: no instruction") }
    }

    func arguments(_ name: String) -> [String] {
        instructions.filter { $0.name == name }.map(\.arguments)
    }

    /// Every ENV pair (KEY=VALUE form, several per instruction).
    var environment: [String: String] {
        var environment: [String: String] = [:]
        for pairs in arguments("ENV") {
            for pair in pairs.split(separator: " ", omittingEmptySubsequences: true) {
                guard let equals = pair.firstIndex(of: "=") else { continue }
                environment[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
            }
        }
        return environment
    }
}

/// Just enough of the example manifest's YAML: scalar values by key, the containers and their
/// env lists, the ConfigMap's data and the pod failure policy.
struct KubernetesManifest {
    let lines: [Substring]

    init(_ text: String) {
        lines = text.split(separator: "\n").filter {
            !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#")
        }
    }

    private static func indentation(_ line: Substring) -> Int {
        line.prefix { $0 == " " }.count
    }

    /// `key: value` on one line, optionally as a list item, value unquoted; trailing comments
    /// are not used in the manifest.
    private static func pair(_ line: Substring) -> (key: String, value: String)? {
        var body = line.trimmingCharacters(in: .whitespaces)
        if body.hasPrefix("- ") { body.removeFirst(2) }
        guard let colon = body.firstIndex(of: ":") else { return nil }
        let key = String(body[..<colon])
        let value = body[body.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        return (key, value.trimmingCharacters(in: CharacterSet(charactersIn: "\"'")))
    }

    /// Every value of `key` in the manifest, in order.
    func values(_ key: String) -> [String] {
        lines.compactMap { Self.pair($0) }.filter { $0.key == key && !$0.value.isEmpty }.map(\.value)
    }

    /// The lines nested under the first line that is `key:` alone.
    private func block(_ key: String) throws -> ArraySlice<Substring> {
        guard let start = lines.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces) == "\(key):" }) else {
            throw DeploymentFileError("manifest: no \(key): block")
        }
        let depth = Self.indentation(lines[start])
        let end = lines[(start + 1)...].firstIndex { Self.indentation($0) <= depth } ?? lines.endIndex
        return lines[(start + 1)..<end]
    }

    /// The items of the list under `key:` (`containers`, `initContainers`), each as a manifest
    /// of its own lines.
    func containers(_ key: String) throws -> [KubernetesManifest] {
        let nested = try block(key)
        guard let first = nested.first else { return [] }
        let depth = Self.indentation(first)
        var items: [[Substring]] = []
        for line in nested {
            if Self.indentation(line) == depth && line.trimmingCharacters(in: .whitespaces).hasPrefix("- ") {
                items.append([])
            }
            items[items.count - 1].append(line)
        }
        return items.map { KubernetesManifest(lines: $0) }
    }

    private init(lines: [Substring]) {
        self.lines = lines
    }

    /// The ConfigMap's `data:`.
    func configMapData() throws -> [String: String] {
        var data: [String: String] = [:]
        for line in try block("data") {
            if let entry = Self.pair(line) { data[entry.key] = entry.value }
        }
        return data
    }

    /// A container's `env:` list: literal values, and ConfigMap keys looked up in `configMap`.
    func environment(configMap data: [String: String]) throws -> [String: String] {
        var environment: [String: String] = [:]
        var name: String?
        for line in try block("env") {
            guard let entry = Self.pair(line) else { continue }
            if line.trimmingCharacters(in: .whitespaces).hasPrefix("- name:") {
                name = entry.value
            } else if let current = name, entry.key == "value" {
                environment[current] = entry.value
            } else if let current = name, entry.key == "key" {
                guard let looked = data[entry.value] else {
                    throw DeploymentFileError("manifest: \(current) refers to \(entry.value), not in the ConfigMap")
                }
                environment[current] = looked
            }
        }
        return environment
    }

    /// The pod failure policy's FailJob rules on exit codes (operator In), by container name.
    func failJobExitCodes() -> [String: [Int]] {
        var rules: [String: [Int]] = [:]
        var action: String?
        var container: String?
        var inOperator = false
        for line in lines {
            guard let entry = Self.pair(line) else { continue }
            switch entry.key {
            case "action":
                (action, container, inOperator) = (entry.value, nil, false)
            case "containerName":
                container = entry.value
            case "operator":
                inOperator = entry.value == "In"
            case "values" where action == "FailJob" && inOperator:
                guard let container else { continue }
                let codes = entry.value.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
                    .split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
                rules[container, default: []] += codes
            default:
                continue
            }
        }
        return rules
    }
}
