import Foundation
import Testing
import VigilContract
@testable import VigilEngine
import VigilRules
import VigilTesting

/// `Explainer` (what `vigil explain` and a failing `vigil test` print): it derives with the engine's own code,
/// so it must raise exactly the engine's alerts, and say of a near miss which part of a condition failed.
@Suite struct ExplainerTests {
    func records(_ lines: [String]) -> [EventRecord] {
        let d = EventDecoder(contract: pack.contract, slots: Engine.decodedSlots(pack))
        return lines.compactMap { line in
            var r = d.makeRecord()
            let failure = d.decode(line, into: &r)
            if let failure { Issue.record("\(failure): \(line)") }
            return failure == nil ? r : nil
        }
    }

    func event(_ id: String, _ type: String, _ at: String, agency: String = "hospital", _ data: String) -> String {
        #"{"schema_version":1,"event_id":"\#(id)","type":"\#(type)","occurred_at":"\#(at)","agency":"\#(agency)","source_system":"test","child":{"id":"C-1","date_of_birth":"2006-03-01","mobility":"mobile"},"data":{\#(data)}}"#
    }

    /// Every (child, rule) of the Haringey scenario and of a generated stream: the explanation's alerts are the
    /// replay's, id for id.
    @Test(arguments: ["haringey", "generated"])
    func theExplanationRaisesExactlyTheEnginesAlerts(_ stream: String) throws {
        let lines = stream == "haringey" ? try scenarioLines() : generatedEventLines(children: 40, days: 240, seed: 7)
        let path = tempFile(lines)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let replayed = try replay([path]).alerts
        let all = records(lines)
        let clock = all.compactMap { $0[pack.contract.occurredAtSlot].instant }.max()
        let children = Set(replayed.map(\.childId))
        #expect(!children.isEmpty)
        let explainer = Explainer(rules: pack)
        var compared = 0
        for child in children.sorted() {
            let mine = all.filter { $0[pack.contract.childIdSlot] == .string(child) }
            for (ri, rule) in pack.rules.enumerated() {
                let explained = try explainer.explain(rule: rule.id, child: child, records: mine, through: clock)
                let expected = replayed.filter { $0.childId == child && $0.ruleIndex == ri }.map(\.alertId)
                #expect(explained.alerts.map(\.alertId) == expected, "\(child) \(rule.id)")
                compared += expected.count
            }
        }
        #expect(compared == replayed.count)
    }

    /// A second injury 91 days after the first, on a plan: `repeated-injury` (two in 90 days) does not fire, and
    /// the trace names the window count that failed and what it counted.
    @Test func aNearMissNamesTheConditionThatFailedAndWhatItSaw() throws {
        let lines = [
            event("p1", "plan_status", "2007-01-02T10:00:00Z", agency: "children_social_care", #""status":"started","category":"physical_abuse","previous_plans":0"#),
            event("i1", "injury_observed", "2007-01-03T10:00:00Z", #""injury":"bruise","sites":["face"],"count":1,"explanation":"fell","explanation_assessment":"consistent","photographed":false"#),
            event("i2", "injury_observed", "2007-04-04T10:00:00Z", #""injury":"bruise","sites":["face"],"count":1,"explanation":"fell","explanation_assessment":"consistent","photographed":false"#),
        ]
        let decoded = records(lines)
        #expect(decoded.count == 3)
        let e = try Explainer(rules: pack).explain(rule: "repeated-injury", child: "C-1", records: decoded, through: nil)
        #expect(e.alerts.isEmpty)
        let text = e.lines.joined(separator: "\n")
        #expect(text.contains("2007-04-04T11:00:00+01:00 (2007-04-04T10:00:00Z)  i2  injury_observed by hospital"), "\(text)")
        #expect(text.contains("does not fire: `count(injury, 90 days) >= 2` is false (1 in the window: i2)"), "\(text)")
        #expect(text.contains("0 alerts raised"))
    }

    /// `pending: one`: a visit that meets the pending expectation and arms the next says "meets", not
    /// "replaces"; a second arming with nothing met in between says "replaces".
    @Test func metAndReplacedAreToldApart() throws {
        let lines = [
            event("p1", "plan_status", "2007-01-02T10:00:00Z", agency: "children_social_care", #""status":"started","category":"physical_abuse","previous_plans":0"#),
            event("v1", "home_visit", "2007-01-05T10:00:00Z", agency: "children_social_care", #""child_seen":true,"access":"granted""#),
            event("p2", "plan_status", "2007-01-08T10:00:00Z", agency: "children_social_care", #""status":"started","category":"physical_abuse","previous_plans":1"#),
        ]
        let decoded = records(lines)
        #expect(decoded.count == 3)
        let text = try Explainer(rules: pack).explain(rule: "child-not-seen", child: "C-1", records: decoded, through: nil).lines.joined(separator: "\n")
        #expect(text.contains("  meets the expectation armed by p1 at 2007-01-02T10:00:00+00:00 (due 2007-01-17T00:00:00+00:00)"), "\(text)")
        #expect(!text.contains("replaces the expectation armed by p1"), "\(text)")
        #expect(text.contains("  replaces the expectation armed by v1 (due 2007-01-20T00:00:00+00:00): one pending at a time"), "\(text)")
    }

    @Test func anUnknownRuleIsAnErrorThatSuggests() {
        do {
            _ = try Explainer(rules: pack).explain(rule: "child-not-sen", child: "C-1", records: [], through: nil)
            Issue.record("an unknown rule was explained")
        } catch {
            #expect("\(error)".contains("no rule 'child-not-sen' in the pack (did you mean 'child-not-seen'"), "\(error)")
        }
    }
}
