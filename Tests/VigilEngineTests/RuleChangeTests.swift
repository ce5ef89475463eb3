import Foundation
import Testing
import VigilContract
@testable import VigilEngine
import VigilRules
import VigilService
import VigilTesting

/// A change of rule pack, each class of change: classified per rule, state carried by stable id, and the
/// alerts of a run switched mid-stream exactly those the old pack raised before the switch together with
/// those the new pack raises over the whole stream (each once; those the new pack would have raised before
/// the switch marked backfill). The stream is shorter than the timeline's horizon, so nothing is folded and
/// the new pack's run over the whole stream is the exact oracle.
@Suite struct RuleChangeTests {
    static let lines = generatedEventLines(children: 400, days: 300, seed: 11)
    static let original = { () -> EditedPack in
        do { return try EditedPack(rulesDir) } catch { fatalError("\(error)") }
    }()

    struct Run {
        var ids: [String] = []
        var alerts: [Alert] = []
        /// Alerts emitted before the switch.
        var before: Set<String> = []
        var change: PackChange?
    }

    /// Replays the stream under `a`, switching to `b` at `at` when given.
    func run(_ a: CompiledRuleSet, switchTo b: CompiledRuleSet? = nil, at: String = "2024-07-15T00:00:00Z") throws -> Run {
        let path = tempFile(Self.lines)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let replay = Replay(rules: a)
        var out = Run()
        if let b, let t = RFC3339.parseDateTime(at) {
            replay.switchTo = (b, t)
        }
        var switched = false
        replay.onSwitch = { change in
            out.change = change
            out.before = Set(out.ids)
            switched = true
        }
        _ = try replay.run(files: [path], until: RFC3339.parseDateTime("2025-06-01T00:00:00Z"), onInvalid: { _ in }, onAlert: { a in
            out.ids.append(a.alertId)
            out.alerts.append(a)
        })
        if b != nil { #expect(switched) }
        return out
    }

    /// Switches from the shipped pack to `b` and checks the exact property; returns the switched run.
    @discardableResult
    func checkSwitch(to b: CompiledRuleSet, _ expected: [String: RuleChange]) throws -> Run {
        let onlyA = try run(pack)
        let onlyB = try run(b)
        let s = try run(pack, switchTo: b)
        let change = try #require(s.change)
        for (id, c) in expected { #expect(change.change(of: id) == c, "\(id)") }
        #expect(change.rules.filter { $0.change != .unchanged }.count == expected.count)
        // Each alert once.
        #expect(Set(s.ids).count == s.ids.count)
        // Before the switch, the old pack's alerts.
        #expect(Array(s.ids.prefix(s.before.count)) == Array(onlyA.ids.prefix(s.before.count)))
        // In all: the old pack's before the switch, and every alert of the new pack over the whole stream.
        #expect(Set(s.ids) == s.before.union(onlyB.ids))
        // Backfill: exactly the new pack's alerts that fired before the switch and were not raised then.
        let backfill = s.alerts.filter(\.backfill)
        let switchedAt = try #require(RFC3339.parseDateTime("2024-07-15T00:00:00Z"))
        #expect(Set(backfill.map(\.alertId)) == Set(onlyB.alerts.filter { $0.firedAt < switchedAt && !s.before.contains($0.alertId) }.map(\.alertId)))
        for a in backfill { #expect(change.change(of: b.rules[a.ruleIndex].id)?.rederives == true) }
        return s
    }

    @Test func aCosmeticChangeRefiresNothingAndLosesNothing() throws {
        let b = try Self.original
            .replacing("output: \"Referral {data.referral_ref} for child {child.id}: no decision by {deadline}\"",
                       with: "output: \"No decision on referral {data.referral_ref} (child {child.id}) by {deadline}\"", in: "timescales.yaml")
            .replacing("  title: Assessment overdue\n  severity: medium", with: "  title: Assessment overdue\n  severity: high", in: "timescales.yaml")
            .compile()
        let s = try checkSwitch(to: b, ["referral-decision-overdue": .cosmetic, "assessment-overdue": .cosmetic])
        #expect(s.alerts.filter(\.backfill).isEmpty)
        // The same alerts, at the same instants, as if nothing had changed.
        let unchanged = try run(pack)
        #expect(s.ids == unchanged.ids)
        // Pending deadlines fire with the new summary (captured again at the switch).
        let after = s.alerts.filter { !s.before.contains($0.alertId) && b.rules[$0.ruleIndex].id == "referral-decision-overdue" }
        #expect(!after.isEmpty)
        for a in after { #expect(a.summary.hasPrefix("No decision on referral ")) }
        let again = try run(pack, switchTo: b)
        #expect(again.change?.needsRederivation == false)
    }

    @Test func aRetimedDeadlineMovesPendingDeadlinesAndLeavesFiredOnesStanding() throws {
        let b = try Self.original.replacing("within: 1 working day", with: "within: 3 working days", in: "timescales.yaml").compile()
        let s = try checkSwitch(to: b, ["referral-decision-overdue": .retimed])
        let id = "referral-decision-overdue"
        let rule = try #require(b.rules.firstIndex { $0.id == id })
        // Referrals undecided for 3 working days before the switch: backfilled; fired after 1 day: still there.
        #expect(s.alerts.contains { $0.backfill && $0.ruleIndex == rule })
        #expect(s.alerts.contains { !$0.backfill && $0.ruleIndex == rule && s.before.contains($0.alertId) })
    }

    @Test func aChangedRuleIsDerivedAgainWithBackfill() throws {
        // Any conference meets it, not only an initial one: a different met_by is a change.
        let b = try Self.original.replacing("    met_by: type = case_conference and data.kind = initial\n", with: "    met_by: type = case_conference\n", in: "timescales.yaml")
        try checkSwitch(to: try b.compile(), ["initial-conference-overdue": .changed])
    }

    @Test func aNewRuleIsDerivedOverTheHistoryAlreadyKept() throws {
        let b = try Self.original.appending("""

            - rule: any-injury-on-a-plan
              title: Injury to a child on a plan
              severity: low
              description: Any injury observed to a child (a rule added after the fact).
              source: a test
              when: type = injury_observed
              output: "Injury to child {child.id}"

            """, to: "injuries.yaml").compile()
        let s = try checkSwitch(to: b, ["any-injury-on-a-plan": .new])
        #expect(s.alerts.filter(\.backfill).count > 10)
    }

    @Test func aRemovedRulesStateIsDroppedAndItsAlertsStayHistory() throws {
        let text = try #require(Self.original.files["timescales.yaml"])
        let start = try #require(text.range(of: "- rule: referral-decision-overdue"))
        let end = try #require(text.range(of: "- rule: assessment-overdue"))
        var b = Self.original
        b.files["timescales.yaml"] = String(text[..<start.lowerBound]) + String(text[end.lowerBound...])
        let s = try checkSwitch(to: try b.compile(), ["referral-decision-overdue": .removed])
        let removed = try #require(pack.rules.firstIndex { $0.id == "referral-decision-overdue" })
        #expect(s.alerts.contains { s.before.contains($0.alertId) && $0.ruleIndex == removed })
    }

    /// State written under one pack reads under another by stable id: what the other lacks is dropped, the
    /// rest keeps its meaning whatever the numbering.
    @Test func stateReadsUnderAnotherPackByStableId() throws {
        let removedFirst = try #require(Self.original.files["household.yaml"])
        let cut = try #require(removedFirst.range(of: "- rule: six-month-change-window"))
        var b = Self.original
        b.files["household.yaml"] = String(removedFirst[..<cut.lowerBound])
        let other = try b.compile()
        let path = tempFile(Self.lines)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let replay = Replay(rules: pack)
        _ = try replay.run(files: [path], onInvalid: { _ in }, onAlert: { _ in })
        let keysA = PackKeys(pack), keysB = PackKeys(other)
        var carried = 0
        for child in replay.engine.allChildren {
            let back = try ChildState(binary: child.binary(keys: keysA), keys: keysB)
            for id in other.rules.map(\.id) where id != "six-month-change-window" {
                #expect(back.footprint(of: id, in: other) == child.footprint(of: id, in: pack), "\(child.id) \(id)")
            }
            carried += back.now.pending.count
        }
        #expect(carried > 0)
    }
}
