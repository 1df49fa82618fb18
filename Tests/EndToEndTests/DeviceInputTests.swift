import Foundation
import Testing

/// What a device sends in place of its attestation certificate is checked before Dice-Auth is
/// asked: anything that is not one DER certificate of sane size is refused at once.
@Suite("Device input")
struct DeviceInputTests {
    /// Inputs a confused or hostile client may send instead of the DER certificate.
    enum Garbage: String, CaseIterable, Sendable {
        case httpRequest
        case pemInsteadOfDER

        func bytes() throws -> [UInt8] {
            switch self {
            case .httpRequest:
                Array("POST /firmware HTTP/1.1\r\nHost: ota-agent\r\nContent-Length: 0\r\n\r\n".utf8)
            case .pemInsteadOfDER:
                Array(try Data(contentsOf: Fixtures.certificate("device.crt")))
            }
        }
    }

    @Test(arguments: Garbage.allCases)
    func garbageInsteadOfCertificateIsRefusedAndAgentServesNext(_ garbage: Garbage) async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let payload = try scratch.write("garbage.bin", garbage.bytes())
        let image = try await ServedImage.sample()
        let testbed = try await Testbed.start()
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        let bad = try await DeviceSimulator.run(port: agent.port, payload: payload)

        expectRefused(bad.onlyDevice(), "\(bad.transcript)\n\(agent.transcript)")
        let refusal = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)")
        #expect(refusal["outcome"] == "refused" && refusal["phase"] == "certificate", "\(refusal)")
        #expect(refusal.integer("bytes") == 0, "\(refusal)")
        #expect(verifier.requests.isEmpty, "garbage reached Dice-Auth\n\(verifier.child.transcript)")

        let genuine = try await DeviceSimulator.run(port: agent.port)
        expectUpdated(genuine.onlyDevice(), with: image, "\(genuine.transcript)\n\(agent.transcript)")
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
    }

    @Test func oversizedCertificateIsRefusedWithoutWaitingForIt() async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        // A SEQUENCE that claims 0x5000 = 20 KiB of content, followed by some of it.
        let claim: [UInt8] = [0x30, 0x82, 0x50, 0x00]
        let payload = try scratch.write("oversized.bin", claim + [UInt8](repeating: 0x04, count: 4096))
        let verifier = try await Verifier.start()
        defer { verifier.child.kill() }
        var environment = Agent.environment(diceAuthURL: verifier.url)
        // Were the claim believed, the agent would wait for the rest and fail at this deadline.
        environment["OTA_CERTIFICATE_TIMEOUT"] = "5"
        let agent = try await Agent.start(environment: environment)
        defer { agent.child.kill() }

        let run = try await DeviceSimulator.run(port: agent.port, payload: payload)

        expectRefused(run.onlyDevice(), "\(run.transcript)\n\(agent.transcript)")
        #expect((run.onlyDevice()?.milliseconds ?? .max) < 3000, "the agent waited\n\(run.transcript)")
        let refusal = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)")
        #expect(refusal["outcome"] == "refused" && refusal["phase"] == "certificate", "\(refusal)")
        #expect(refusal.integer("bytes") == 0, "\(refusal)")
        #expect(verifier.requests.isEmpty, "\(verifier.child.transcript)")
        #expect(agent.child.isRunning, "\(agent.transcript)")
    }

    /// The protocol has the device only read after its certificate. A byte sent later, while
    /// Dice-Auth deliberates, is caught before the first image byte goes out.
    @Test func bytesSentAfterTheCertificateInALaterRecordAreRefused() async throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let certificate = [UInt8](try Data(contentsOf: Fixtures.certificate("device.der")))
        let payload = try scratch.write("trailing.bin", certificate + [0x00])
        let testbed = try await Testbed.start(verifierOptions: ["--delay-ms", "600"])
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        // The certificate in one record, the extra byte in a second one 200 ms later.
        let run = try await DeviceSimulator.run(
            port: agent.port, payload: payload,
            options: ["--chunk", String(certificate.count), "--pause-ms", "200"])

        #expect((run.onlyDevice()?.bytes ?? 1) == 0, "\(run.transcript)")
        let refusal = try #require(await agent.waitForLog("session-end"), "\(agent.transcript)")
        #expect(refusal["outcome"] == "refused" && refusal.integer("bytes") == 0, "\(refusal)")
        #expect(refusal["reason"]?.contains("after its certificate") == true, "\(refusal)")
        #expect(agent.child.isRunning, "\(agent.transcript)")
    }
}
