import Foundation
import Testing
import VigilContract
import VigilEngine
import VigilRules
import VigilService
import VigilTesting

/// A rule test can check an alert's rendered summary (`expect: [{rule, at, summary}]`), and says what it read
/// when it differs.
@Suite struct RuleTestSummaryTests {
    func run(_ summary: String) throws -> RuleTestResult {
        let text = """
            - test: the referral summary reads in local time
              child: C-1
              events:
                - referral: {at: 2007-04-05T15:00Z, referral_ref: R-1, referrer_agency: gp, decision: pending}
              until: 2007-04-20T00:00Z
              expect:
                - {rule: referral-decision-overdue, at: 2007-04-10T23:00Z, summary: "\(summary)"}

            """
        let (tests, diags) = RuleTestReader.read(RuleSources.File(path: "tests/t.yaml", relativePath: "tests/t.yaml", text: text), contract: pack.contract)
        #expect(diags.isEmpty, "\(diags)")
        return RuleTestRunner.run(try #require(tests.first), rules: pack)
    }

    @Test func theRenderedSummaryIsCheckedAndAMismatchSaysWhatItRead() throws {
        // {deadline} in the pack's zone: the end of Tuesday 10 April 2007, after Easter, in BST.
        let right = "Referral R-1 for child C-1: no decision by 2007-04-11T00:00:00+01:00"
        #expect(try run(right).passed)
        let wrong = try run("Referral R-1 for child C-1: no decision by 2007-04-10T23:00:00Z")
        #expect(!wrong.passed && wrong.missing.isEmpty && wrong.unexpected.isEmpty)
        #expect(wrong.wrongSummary.map(\.got) == [right])
    }

    @Test func aSummaryInExpectNotOrAnUnknownKeyIsReported() {
        let text = """
            - test: t
              events:
                - referral: {at: 2007-04-05T15:00Z, referral_ref: R-1, referrer_agency: gp, decision: pending}
              expect:
                - {rule: referral-decision-overdue, at: 2007-04-10T23:00Z, sumary: "x"}
              expect_not:
                - {rule: assessment-overdue, summary: "x"}

            """
        let (_, diags) = RuleTestReader.read(RuleSources.File(path: "tests/t.yaml", relativePath: "tests/t.yaml", text: text), contract: pack.contract)
        #expect(diags.contains { $0.message.contains("unknown key 'sumary' in an expectation") })
        #expect(diags.contains { $0.message.contains("summary: and annotations: are for expected alerts") })
    }
}

/// `labels:` and `annotations:` on a rule: carried in every alert (the schema allows them), annotations rendered
/// like the summary and checked by rule tests; a rule without them keeps its version.
@Suite struct LabelsAndAnnotationsTests {
    static let labelled = """
          labels: {team: front_door, statutory: "yes"}
          annotations:
            runbook: "https://wiki.example/runbooks/{rule}"
            referral: "{data.referral_ref} due {deadline}"

        """

    func pack(_ extra: String = LabelsAndAnnotationsTests.labelled) throws -> CompiledRuleSet {
        try EditedPack(rulesDir).replacing("  output: \"Referral {data.referral_ref} for child {child.id}: no decision by {deadline}\"\n",
                                           with: "  output: \"Referral {data.referral_ref} for child {child.id}: no decision by {deadline}\"\n" + extra,
                                           in: "timescales.yaml").compile()
    }

    func test(_ annotations: String, rules: CompiledRuleSet) throws -> RuleTestResult {
        let text = """
            - test: annotations
              child: C-1
              events:
                - referral: {at: 2007-04-05T15:00Z, referral_ref: R-1, referrer_agency: gp, decision: pending}
              until: 2007-04-20T00:00Z
              expect:
                - {rule: referral-decision-overdue, at: 2007-04-10T23:00Z, annotations: \(annotations)}

            """
        let (tests, diags) = RuleTestReader.read(RuleSources.File(path: "tests/t.yaml", relativePath: "tests/t.yaml", text: text), contract: rules.contract)
        #expect(diags.isEmpty, "\(diags)")
        return RuleTestRunner.run(try #require(tests.first), rules: rules)
    }

    @Test func theAlertCarriesTitleLabelsAndRenderedAnnotations() throws {
        let rules = try pack()
        let rule = try #require(rules.rule(id: "referral-decision-overdue"))
        #expect(rule.labels.map { "\($0.key)=\($0.value)" } == ["team=front_door", "statutory=yes"])
        var engine = Engine(rules: rules)
        let d = EventDecoder(contract: rules.contract, slots: Engine.decodedSlots(rules))
        var r = d.makeRecord()
        #expect(d.decode(#"{"schema_version":1,"event_id":"e1","type":"referral","occurred_at":"2007-04-05T15:00:00Z","agency":"children_social_care","source_system":"t","child":{"id":"C-1"},"data":{"referral_ref":"R-1","referrer_agency":"gp","decision":"pending"}}"#, into: &r) == nil)
        let alerts = engine.replay([r], until: RFC3339.parseDateTime("2007-04-20T00:00:00Z"))
        let json = AlertFormatter(rules: rules).json(try #require(alerts.first))
        #expect(json.contains(#""severity":"medium","title":"Referral decision overdue","#), "\(json)")
        #expect(json.contains(#""labels":{"team":"front_door","statutory":"yes"},"annotations":{"runbook":"https://wiki.example/runbooks/referral-decision-overdue","referral":"R-1 due 2007-04-11T00:00:00+01:00"}"#), "\(json)")
        #expect(AlertSchema.failure(Array(json.utf8)) == nil)
        // The contract checks each label's value (a map of strings), whatever its name.
        let numeric = json.replacingOccurrences(of: #""statutory":"yes""#, with: #""statutory":1"#)
        #expect(AlertSchema.failure(Array(numeric.utf8))?.path == "$.labels.<additional>")
        // The same rule without them keeps the version it has in the shipped pack.
        #expect(rule.version != VigilEngineTests.pack.rule(id: "referral-decision-overdue")?.version)
        #expect(try pack("").rule(id: "referral-decision-overdue")?.version == VigilEngineTests.pack.rule(id: "referral-decision-overdue")?.version)
    }

    @Test func ruleTestsCheckAnnotationsAndSayWhatTheyRead() throws {
        let rules = try pack()
        #expect(try test(#"{referral: "R-1 due 2007-04-11T00:00:00+01:00"}"#, rules: rules).passed)
        let wrong = try test(#"{referral: "R-1 due 2007-04-10T23:00:00Z"}"#, rules: rules)
        #expect(!wrong.passed && wrong.missing.isEmpty)
        #expect(wrong.wrongAnnotations.first?.got["referral"] == "R-1 due 2007-04-11T00:00:00+01:00")
        #expect(!(try test(#"{owner: "x"}"#, rules: rules).passed))
    }

    @Test func badLabelsAndAnnotationsAreDiagnosed() throws {
        func errors(_ extra: String) throws -> [String] {
            let c = RuleCompiler.compile(try EditedPack(rulesDir).replacing("  severity: medium\n  description: A referral is still pending",
                                                                            with: extra + "  severity: medium\n  description: A referral is still pending",
                                                                            in: "timescales.yaml").sources, contract: .embedded)
            return c.errors.map(\.message)
        }
        #expect(try errors("  labels: {Team: x}\n") == ["label name 'Team' must use lower-case letters, digits and '_'"])
        #expect(try errors("  labels: [a, b]\n") == ["'labels:' must be a mapping of names to values ({team: safeguarding})"])
        #expect(try errors("  annotations: {note: \"{data.explanation}\"}\n").first?.contains("free text") == true)
        #expect(try errors("  annotations: {summary: x}\n") == ["the summary is 'output:', not an annotation"])
    }
}

/// Times in a test file without `Z` or an offset are local in the pack's calendar zone, as a person reads them.
@Suite struct LocalTimesInTestsTests {
    /// The hour the clocks go back reads twice: the first reading is taken. The hour they skip does not exist:
    /// it is read at the offset in force before.
    @Test func localReadingsAroundTheClockChanges() throws {
        let zone = try #require(ZoneTable.named("Europe/London"))
        func utc(_ local: String) -> String { zone.instant(localDateTime: local)?.description ?? "nil" }
        #expect(utc("2007-10-28T00:30") == "2007-10-27T23:30:00Z")
        #expect(utc("2007-10-28T01:30") == "2007-10-28T00:30:00Z")
        #expect(utc("2007-10-28T02:30") == "2007-10-28T02:30:00Z")
        #expect(utc("2007-03-25T00:30") == "2007-03-25T00:30:00Z")
        #expect(utc("2007-03-25T01:30") == "2007-03-25T01:30:00Z")
        #expect(utc("2007-03-25T02:30:15") == "2007-03-25T01:30:15Z")
    }

    @Test func aTimeWithoutAnOffsetIsLocalInThePacksZone() throws {
        let text = """
            - test: local times
              child: C-1
              events:
                - referral: {at: 2007-04-05T16:00, referral_ref: R-1, referrer_agency: gp, decision: pending}
              until: 2007-04-20T01:00:00
              expect: [referral-decision-overdue at 2007-04-11T00:00]

            """
        let file = RuleSources.File(path: "tests/t.yaml", relativePath: "tests/t.yaml", text: text)
        let zone = try #require(pack.calendars.first?.zone)
        let (tests, diags) = RuleTestReader.read(file, contract: pack.contract, zone: zone)
        #expect(diags.isEmpty, "\(diags)")
        let test = try #require(tests.first)
        // 16:00 in London on 5 April 2007 (BST) is 15:00 UTC; local midnight starting 11 April is 23:00 UTC on the 10th.
        #expect(test.events.first?.json.contains(#""occurred_at":"2007-04-05T15:00:00Z""#) == true)
        #expect(test.until == RFC3339.parseDateTime("2007-04-20T00:00:00Z"))
        #expect(test.expect.first?.at == RFC3339.parseDateTime("2007-04-10T23:00:00Z"))
        #expect(RuleTestRunner.run(test, rules: pack).passed)
        // Without a zone (a pack with no calendar), such a time is an error that says how to write it.
        let (_, noZone) = RuleTestReader.read(file, contract: pack.contract)
        #expect(noZone.contains { $0.message.contains("with Z or an offset: the pack has no calendar to give local time") }, "\(noZone)")
    }
}
