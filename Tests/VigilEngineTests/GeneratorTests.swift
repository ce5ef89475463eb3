import Foundation
import Testing
import VigilContract
import VigilEngine
import VigilService
import VigilTesting

@Suite struct GeneratorTests {
    func generate(children: Int = 300, days: Int = 200, seed: UInt64 = 3) -> (lines: [String], generator: StreamGenerator) {
        var g = StreamGenerator(.init(children: children, days: days, seed: seed))
        var lines: [String] = []
        g.generate { lines.append($0) }
        return (lines, g)
    }

    @Test func deterministicForASeedAndDifferentAcrossSeeds() {
        #expect(generate().lines == generate().lines)
        #expect(generate().lines != generate(seed: 4).lines)
    }

    @Test func everyEventIsValidAndInEventTimeOrder() {
        let d = EventDecoder()
        var r = d.makeRecord()
        var last = Instant.distantPast
        var ids = Set<String>()
        let (lines, g) = generate()
        #expect(lines.count == g.eventsWritten)
        #expect(lines.count > 3000)
        for line in lines {
            #expect(d.decode(line, into: &r) == nil, "\(line)")
            let at = r[d.contract.occurredAtSlot].instant ?? .distantPast
            #expect(at >= last)
            last = at
            ids.insert(r[d.contract.eventIdSlot].string ?? "")
        }
        #expect(ids.count == lines.count, "event ids are unique")
    }

    @Test func plantedPatternsAreFoundByTheRules() throws {
        let (lines, g) = generate(children: 2000, days: 365, seed: 11)
        let (alerts, invalid, _) = try replay([tempFile(lines)])
        #expect(invalid.isEmpty)
        let fired = Set(alerts.map { pack.rules[$0.ruleIndex].id })
        #expect((g.planted[.evidenceNotShared] ?? 0) > 0)
        for rule in ["evidence-not-shared", "investigation-drift", "unchecked-adult-with-access", "non-mobile-infant-injury",
                     "referral-decision-overdue", "six-month-change-window", "unsuitable-explanation", "multi-agency-concerns"] {
            #expect(fired.contains(rule), "no \(rule) alert from a planted pattern")
        }
        // Routine contacts dominate: alerts are a small fraction of events.
        #expect(Double(alerts.count) < Double(lines.count) * 0.05)
    }

    /// The alert-dense stream (for the alert path's benchmarks): every child carries a planted pattern, and
    /// alerts are a large fraction of the events, not a small one.
    @Test func theAlertDenseStreamPlantsAPatternInEveryChild() throws {
        var g = StreamGenerator(.alertDense(children: 300, days: 120, seed: 3))
        var lines: [String] = []
        g.generate { lines.append($0) }
        #expect(g.planted.values.reduce(0, +) == 300)
        let path = tempFile(lines)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (alerts, invalid, _) = try replay([path])
        #expect(invalid.isEmpty)
        #expect(Double(alerts.count) > Double(lines.count) * 0.05, "\(alerts.count) alerts of \(lines.count) events")
    }
}
