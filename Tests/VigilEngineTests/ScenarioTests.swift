import Foundation
import Testing
import VigilContract
@testable import VigilEngine
import VigilRules
import VigilService

@Suite struct HaringeyScenarioTests {
    @Test func replayRaisesExactlyTheAlertsOfRulesMd() throws {
        let (alerts, invalid, summary) = try replay([scenarioPath])
        #expect(invalid.isEmpty)
        #expect(summary.valid == 36)
        #expect(sortedPairs(pairs(alerts)) == sortedPairs(haringeyExpected))
        #expect(alerts.count == 28)
    }

    @Test func everyAlertIsValidAgainstTheAlertContract() throws {
        let formatter = AlertFormatter(rules: pack)
        for a in try replay([scenarioPath]).alerts {
            let json = formatter.json(a)
            #expect(alertSchemaFailure(json) == nil, "\(json)")
            #expect(alertSchemaFailure(formatter.json(a, emittedAt: Instant(micros: 0))) == nil)
        }
        // The validator does reject a broken alert.
        #expect(alertSchemaFailure(#"{"schema_version":1,"alert_id":"short","status":"fired"}"#) != nil)
    }

    @Test func evidenceNamesTheEventsThatCausedEachAlert() throws {
        let alerts = try replay([scenarioPath]).alerts
        func evidence(_ rule: String, _ at: String) -> [String] {
            alerts.first { pack.rules[$0.ruleIndex].id == rule && $0.firedAt.description == at }?.evidence.map(\.eventId) ?? []
        }
        // Absence rules cite the event that armed the deadline.
        #expect(evidence("unchecked-adult-with-access", "2007-03-14T00:00:00Z").first == "hgy-0021")
        #expect(evidence("unchecked-adult-with-access", "2007-06-19T23:00:00Z").first == "hgy-0031")
        #expect(evidence("evidence-not-shared", "2007-03-14T00:00:00Z") == ["hgy-0020"])
        #expect(evidence("investigation-drift", "2007-04-18T23:00:00Z") == ["hgy-0022"])
        #expect(evidence("child-not-seen", "2007-02-06T00:00:00Z") == ["hgy-0017"])
        #expect(evidence("review-conference-overdue", "2007-03-23T00:00:00Z") == ["hgy-0013"])
        // Window rules cite the events counted.
        #expect(Set(evidence("repeated-injury-critical", "2007-04-09T11:00:00Z")).isSuperset(of: ["hgy-0025", "hgy-0002", "hgy-0005"]))
        #expect(evidence("repeated-injury-critical", "2007-04-09T11:00:00Z").first == "hgy-0025")
        #expect(Set(evidence("multi-agency-concerns", "2007-06-01T14:00:00Z")).isSuperset(of: ["hgy-0029", "hgy-0027", "hgy-0028"]))
        // State the rule relied on: the plan start.
        #expect(evidence("unscheduled-care-on-plan", "2007-04-09T10:00:00Z") == ["hgy-0024", "hgy-0013"])
        for a in alerts { #expect(!a.evidence.isEmpty) }
    }

    @Test func alertIdsAreDeterministicAndUnique() throws {
        let first = try replay([scenarioPath]).alerts.map(\.alertId)
        let second = try replay([scenarioPath]).alerts.map(\.alertId)
        #expect(first == second)
        #expect(Set(first).count == first.count)
    }

    @Test func alertsCarryNoFreeText() throws {
        let formatter = AlertFormatter(rules: pack)
        let text = try replay([scenarioPath]).alerts.map { formatter.json($0) }.joined(separator: "\n")
        for phrase in ["fell down stairs", "rough play", "miserable", "cranky", "bruises and scratches", "childminder", "not examined adequately"] {
            #expect(!text.contains(phrase), "alert output contains free text '\(phrase)'")
        }
    }

    @Test func theRuleTestsPassAndCoverEveryRule() throws {
        let suite = RuleTestSuite.run(try RuleDirectory.load(rulesDir), rules: pack)
        #expect(suite.diagnostics.isEmpty, "\(suite.diagnostics)")
        #expect(suite.results.count >= 88)
        for r in suite.failed { Issue.record("rule test failed: \(r.test.location) \(r.test.name)") }
        for c in suite.coverage(of: pack) {
            #expect(c.fires >= 2 && c.mustNot >= 2, "\(c.rule): \(c.fires) tests fire, \(c.mustNot) must not")
        }
    }
}
