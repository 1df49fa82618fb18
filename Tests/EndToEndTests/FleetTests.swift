import Foundation
import Testing

/// Many devices at once against one agent and a Dice-Auth that, as deployed, answers one
/// request at a time and slowly.
@Suite("Fleet")
struct FleetTests {
    @Test func fiftyDevicesAtOnceAreAllUpdatedThroughASlowSingleThreadedDiceAuth() async throws {
        let image = try await ServedImage.sample()
        // 200 ms per request, one at a time, a listen queue of 4: 50 requests at once would
        // overflow it; the agent must queue them itself.
        let testbed = try await Testbed.start(
            verifierOptions: ["--delay-ms", "200", "--backlog", "4"],
            settings: ["OTA_MODE": "serve", "OTA_TIMEOUT": "120"])
        defer { testbed.stop() }
        let (verifier, agent) = (testbed.verifier, testbed.agent)

        let run = try await DeviceSimulator.run(
            port: agent.port, options: ["--devices", "50", "--read-size", "4096"], within: .seconds(90))

        #expect(run.devices.count == 50, "\(run.transcript)")
        let updated = run.devices.filter { $0.outcome == "updated" && $0.sha256 == image.sha256 }
        #expect(updated.count == 50, "\(run.devices.filter { $0.outcome != "updated" })\n\(agent.transcript)")
        let requests = await verifier.waitForRequests(50)
        #expect(requests.count == 50, "each device asked once: \(requests.count) requests")
        // Queued by the agent, no request waits at Dice-Auth long enough to time out and be
        // retried (with 50 sent at once, about a quarter are).
        let verdicts = agent.log("verdict")
        #expect(verdicts.count == 50 && verdicts.allSatisfy { $0.integer("attempts") == 1 },
                "\(verdicts.filter { $0.integer("attempts") != 1 })")

        agent.child.send(SIGTERM)
        #expect(await agent.child.waitForExit(within: .seconds(15)) == .exited(0), "\(agent.transcript)")
        #expect(agent.log("session-end").filter { $0["outcome"] == "updated" }.count == 50)
    }
}
