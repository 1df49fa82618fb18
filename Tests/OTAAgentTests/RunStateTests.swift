import Testing
@testable import OTAAgent

@Suite("RunState: what a run keeps of its sessions")
struct RunStateTests {
    private func session(_ peer: String, certificate: Bool, outcome: SessionOutcome) -> SessionRecord {
        var record = SessionRecord(peer: peer)
        if certificate { record.certificate = AttestationCertificate.identity(ofDER: [0x30, 0x00]) }
        record.outcome = outcome
        return record
    }

    @Test("sessions without a certificate are counted, not listed; updates are counted whole")
    func withoutCertificateCounted() {
        let state = RunState()
        var first: [Bool] = []
        for number in 0..<5 {
            state.sessionStarted()
            first.append(state.record(session("scanner-\(number)", certificate: false, outcome: .failed)))
        }
        state.sessionStarted()
        first.append(state.record(session("rogue", certificate: true, outcome: .refused)))
        state.sessionStarted()
        first.append(state.record(session("device", certificate: true, outcome: .updated)))

        let summary = state.summary(outcome: .updated)
        #expect(summary.sessions.map(\.peer) == ["rogue", "device"])
        #expect(summary.sessionsNotListed == 5 && summary.devicesUpdated == 1)
        #expect(first == [false, false, false, false, false, false, true], "only the first update is the first")
    }

    @Test("a long run lists its most recent sessions and counts the older ones")
    func boundedList() {
        let state = RunState()
        let total = 2 * RunState.listedSessionLimit + 5
        for number in 0..<total {
            state.sessionStarted()
            _ = state.record(session("device-\(number)", certificate: true, outcome: .updated))
        }
        let summary = state.summary(outcome: .stopped)
        #expect(summary.sessions.count == RunState.listedSessionLimit)
        #expect(summary.sessions.last?.peer == "device-\(total - 1)")
        #expect(summary.sessionsNotListed == total - RunState.listedSessionLimit)
        #expect(summary.devicesUpdated == total)
    }
}
