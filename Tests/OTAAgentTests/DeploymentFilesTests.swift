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

        // The same binary as the image's entry point.
        let product = try Self.agentProductName()
        #expect(job.values("command") == dockerfile.arguments("ENTRYPOINT"))
        #expect(job.values("command").first?.contains("/\(product)\"") == true)

        // The container's variables, ConfigMap references resolved, all read by the agent.
        let environment = try job.containerEnvironment()
        for name in environment.keys {
            #expect(EnvironmentKey(rawValue: name) != nil, "the Job sets \(name), which the agent does not read")
        }
        for key in Self.deploymentKeys {
            #expect(environment[key.rawValue] != nil, "the Job does not set \(key.rawValue)")
        }
        let configuration = try DeploymentText.parse(environment)

        // The port the agent binds is the container's, the Service's and the image's.
        #expect(job.values("containerPort") == ["\(configuration.port)"])
        #expect(job.values("port") == ["\(configuration.port)"])
        #expect(dockerfile.arguments("EXPOSE") == ["\(configuration.port)"])

        // The files it names are on the mounted volumes.
        let mounts = job.values("mountPath")
        for path in [configuration.imagePath, configuration.certificatePath, configuration.keyPath] {
            #expect(mounts.contains { path.hasPrefix($0 + "/") }, "\(path) is on no mounted volume")
        }

        // SIGTERM: the grace period for transfers, then up to 30 s for the cancelled ones.
        let podGrace = try #require(job.values("terminationGracePeriodSeconds").first.flatMap { Int($0) })
        #expect(Duration.seconds(podGrace) > configuration.gracePeriod + .seconds(30))

        // Each attempt ends by OTA_TIMEOUT (exit 3) before the Job's deadline ends them all.
        let retries = try #require(job.values("backoffLimit").first.flatMap { Int($0) })
        let deadline = try #require(job.values("activeDeadlineSeconds").first.flatMap { Int($0) })
        let timeout = try #require(configuration.timeout)
        #expect(timeout * (retries + 1) < .seconds(deadline))
        #expect(job.values("restartPolicy") == ["Never"])
    }
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

/// Just enough of the example manifest's YAML: scalar values by key, the container's env list
/// and the ConfigMap's data.
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

    /// The container's `env:` list: literal values, and ConfigMap keys looked up in `data:`.
    func containerEnvironment() throws -> [String: String] {
        var data: [String: String] = [:]
        for line in try block("data") {
            if let entry = Self.pair(line) { data[entry.key] = entry.value }
        }
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
}
