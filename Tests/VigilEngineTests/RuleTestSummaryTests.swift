import Testing
import VigilContract
import VigilEngine
import VigilRules
import VigilService

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
        #expect(diags.contains { $0.message.contains("summary: is for expected alerts") })
    }
}
