import Foundation
import Testing
@testable import VigilRules
import VigilContract

/// A calendar every snippet may use.
let holidays = RuleSources.File(path: "h.csv", text: "date,name\n2007-01-01,New Year's Day\n")
let calendar = """
- calendar: ew
  time_zone: Europe/London
  holidays: h.csv

"""

/// Lines the calendar prefix takes.
let calendarLines = calendar.filter { $0 == "\n" }.count

func compile(_ yaml: String, calendarToo: Bool = true) -> RuleCompilation {
    let text = (calendarToo ? calendar : "") + yaml
    return RuleCompiler.compile(RuleSources(files: [RuleSources.File(path: "t.yaml", text: text), holidays]))
}

/// A rule with the given body lines (already indented by two spaces).
func rule(_ body: String, id: String = "r1") -> String {
    """
    - rule: \(id)
      title: T
      severity: high
      description: D
      source: S
    \(body)

    """
}

/// Line and column of the first occurrence of `token` in `text` at or after line `from`.
func position(of token: String, in text: String, from start: Int = 1) -> (Int, Int)? {
    for (k, l) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where k + 1 >= start {
        if let r = l.range(of: token) { return (k + 1, l.distance(from: l.startIndex, to: r.lowerBound) + 1) }
    }
    return nil
}

/// Asserts that compiling `yaml` reports `code` exactly at the position of `token`.
func expectDiagnostic(_ yaml: String, _ code: DiagnosticCode, at token: String, from line: Int = 1, atEnd: Bool = false,
                      calendarToo: Bool = true, sourceLocation: Testing.SourceLocation = #_sourceLocation) {
    let c = compile(yaml, calendarToo: calendarToo)
    let text = (calendarToo ? calendar : "") + yaml
    guard let (l, col0) = position(of: token, in: text, from: line + (calendarToo ? calendarLines : 0)) else {
        Issue.record("token \(token) not in text", sourceLocation: sourceLocation)
        return
    }
    let col = atEnd ? col0 + token.count : col0
    let match = c.diagnostics.first { $0.code == code }
    #expect(match != nil, "expected \(code.rawValue), got:\n\(c.report)", sourceLocation: sourceLocation)
    if let match {
        #expect(match.location.file == "t.yaml", sourceLocation: sourceLocation)
        #expect(match.location.line == l && match.location.column == col,
                "\(code.rawValue) at \(match.location.line):\(match.location.column), expected \(l):\(col)\n\(c.report)",
                sourceLocation: sourceLocation)
    }
    #expect(c.ruleSet == nil, sourceLocation: sourceLocation)
}

@Suite struct DiagnosticTests {
    @Test func yamlSyntax() {
        let c = compile("- rule: [unclosed\n", calendarToo: false)
        #expect(c.diagnostics.first?.code == .yamlSyntax)
        #expect(c.diagnostics.first?.location == VigilRules.SourceLocation(file: "t.yaml", line: 2, column: 1))
    }

    @Test func yamlSyntaxLocation() {
        let c = compile("- rule: x\n  title: [a\n  severity: high\n", calendarToo: false)
        #expect(c.diagnostics.first?.code == .yamlSyntax)
        #expect((c.diagnostics.first?.location.line ?? 0) >= 2)
    }

    @Test func notAList() {
        expectDiagnostic("rule: x\n", .notAList, at: "rule", calendarToo: false)
    }

    @Test func unknownItem() {
        let c = compile("- rul: x\n  title: y\n")
        #expect(c.diagnostics.first?.code == .unknownItem)
        #expect(c.diagnostics.first?.notes.contains("did you mean 'rule'?") == true)
        expectDiagnostic("- rul: x\n", .unknownItem, at: "rul")
    }

    @Test func unknownKey() {
        expectDiagnostic(rule("  when: type = referral\n  output: x\n  severty: high"), .unknownKey, at: "severty")
    }

    @Test func missingKey() {
        expectDiagnostic(rule("  when: type = referral"), .missingKey, at: "r1")
        expectDiagnostic(rule("  output: x"), .missingKey, at: "r1")
    }

    @Test func badValue() {
        expectDiagnostic(rule("  when: type = referral\n  output: [a, b]"), .badValue, at: "[a, b]")
    }

    @Test func duplicateRule() {
        let text = rule("  when: type = referral\n  output: x") + rule("  when: type = referral\n  output: x")
        let c = compile(text)
        let d = c.diagnostics.first { $0.code == .duplicate }
        #expect(d?.location.line == 11)
        #expect(d?.location.column == 9)
        #expect(d?.notes.first == "first defined at t.yaml:4:9")
    }

    @Test func badName() {
        expectDiagnostic(rule("  when: type = referral\n  output: x", id: "Bad_Name"), .badName, at: "Bad_Name")
        expectDiagnostic("- macro: On-Plan\n  condition: type = referral\n", .badName, at: "On-Plan")
    }

    @Test func badSeverity() {
        expectDiagnostic(rule("  when: type = referral\n  output: x").replacingOccurrences(of: "severity: high", with: "severity: urgent"),
                         .badSeverity, at: "urgent")
    }

    @Test func syntax() {
        expectDiagnostic(rule("  when: type = referral and (agency = gp\n  output: x"), .syntax, at: "(agency = gp", atEnd: true)
        expectDiagnostic(rule("  when: type = referral and or agency = gp\n  output: x"), .syntax, at: "or agency")
        expectDiagnostic(rule("  when: count(injury_observed, 90 days)\n  output: x"), .syntax, at: "90 days)", atEnd: true)
    }

    @Test func syntaxErrorInsideAFoldedMultiLineCondition() {
        let text = rule("  when: >-\n    type = referral\n    and data.decision = = pending\n  output: x")
        expectDiagnostic(text, .syntax, at: "= pending")
    }

    @Test func unknownField() {
        expectDiagnostic(rule("  when: type = referral and data.refferal_ref = 'R1'\n  output: x"), .unknownField, at: "data.refferal_ref")
        let c = compile(rule("  when: type = referral and data.refferal_ref = 'R1'\n  output: x"))
        #expect(c.diagnostics.first { $0.code == .unknownField }?.notes.contains("did you mean 'data.referral_ref'?") == true)
    }

    @Test func fieldNotOnType() {
        expectDiagnostic(rule("  when: type = referral and data.outcome = attended\n  output: x"), .fieldNotOnType, at: "data.outcome")
    }

    @Test func unknownEventType() {
        expectDiagnostic(rule("  when: type = injury\n  output: x"), .unknownEventType, at: "injury")
    }

    @Test func badEnumValue() {
        expectDiagnostic(rule("  when: type = appointment and data.outcome = was_not_brougt\n  output: x"), .badEnumValue, at: "was_not_brougt")
        // Narrowed by type: 'opened' is a status of police investigations, not of plans.
        expectDiagnostic(rule("  when: type = plan_status and data.status = opened\n  output: x"), .badEnumValue, at: "opened")
        expectDiagnostic(rule("  when: type = home_visit and data.access in (granted, denied)\n  output: x"), .badEnumValue, at: "denied")
    }

    @Test func typeMismatch() {
        expectDiagnostic(rule("  when: type = injury_observed and data.count = yes\n  output: x"), .typeMismatch, at: "data.count")
        expectDiagnostic(rule("  when: type = home_visit and data.child_seen > true\n  output: x"), .typeMismatch, at: "data.child_seen")
        expectDiagnostic(rule("  when: type = case_conference and data.invited_agencies in (gp)\n  output: x"), .typeMismatch, at: "data.invited_agencies")
    }

    @Test func unknownMacro() {
        expectDiagnostic(rule("  when: type = referral and on_plann\n  output: x"), .unknownMacro, at: "on_plann")
    }

    @Test func unknownList() {
        expectDiagnostic(rule("  when: type in event_typez\n  output: x"), .unknownList, at: "event_typez")
    }

    @Test func macroCycle() {
        let text = "- macro: a\n  condition: b\n- macro: b\n  condition: a\n" + rule("  when: type = referral and a\n  output: x")
        let c = compile(text)
        #expect(c.diagnostics.contains { $0.code == .macroCycle && $0.location.line == 7 && $0.location.column == 14 })
    }

    @Test func unknownState() {
        expectDiagnostic(rule("  when: type = referral and state.plann = started\n  output: x"), .unknownState, at: "state.plann")
    }

    @Test func badDuration() {
        expectDiagnostic(rule("  expect:\n    arm: {when: type = referral, within: 3 fortnights}\n    met_by: type = core_group\n  output: x"),
                         .badDuration, at: "3 fortnights")
        expectDiagnostic(rule("  when: type = referral and count(type = referral, 2 working days) >= 2\n  output: x"), .badDuration, at: "2 working days")
        expectDiagnostic(rule("  when: type = referral\n  suppress: 0 days\n  output: x"), .badDuration, at: "0 days")
    }

    @Test func unknownCalendar() {
        expectDiagnostic(rule("  calendar: scotland\n  when: type = referral\n  output: x"), .unknownCalendar, at: "scotland")
        expectDiagnostic(rule("  expect:\n    arm: {when: type = referral, within: 1 working day}\n    met_by: type = core_group\n  output: x"),
                         .unknownCalendar, at: "1 working day", calendarToo: false)
    }

    @Test func badCalendar() {
        expectDiagnostic("- calendar: x\n  time_zone: Europe/Londn\n  holidays: h.csv\n", .badCalendar, at: "Europe/Londn", calendarToo: false)
        expectDiagnostic("- calendar: x\n  time_zone: Europe/London\n  holidays: missing.csv\n", .badCalendar, at: "missing.csv", calendarToo: false)
        let bad = RuleSources.File(path: "bad.csv", text: "date,name\n2007-01-01,ok\n2007-13-01,bad\n")
        let c = RuleCompiler.compile(RuleSources(files: [
            .init(path: "t.yaml", text: "- calendar: x\n  time_zone: Europe/London\n  holidays: bad.csv\n"), bad]))
        let d = c.diagnostics.first { $0.code == .badCalendar }
        #expect(d?.location == VigilRules.SourceLocation(file: "bad.csv", line: 3, column: 1))
    }

    @Test func badTemplate() {
        expectDiagnostic(rule("  when: type = referral\n  output: \"Referral {data.referal_ref}\""), .badTemplate, at: "data.referal_ref")
        expectDiagnostic(rule("  when: type = referral\n  output: \"Referral {data.referral_ref\""), .badTemplate, at: "{data")
        expectDiagnostic(rule("  when: type = referral\n  output: \"due {deadline}\""), .badTemplate, at: "deadline")
    }

    @Test func freeTextInOutput() {
        expectDiagnostic(rule("  when: type = injury_observed\n  output: \"Explained as {data.explanation}\""), .freeTextInOutput, at: "data.explanation")
        expectDiagnostic(rule("  when: type = medical_examination\n  output: \"{data.reason_incomplete}\""), .freeTextInOutput, at: "data.reason_incomplete")
    }

    @Test func neverMatches() {
        expectDiagnostic(rule("  when: type = referral and type = injury_observed\n  output: x"), .neverMatches, at: "type = referral")
        expectDiagnostic(rule("  when: type = referral and not type in (referral)\n  output: x"), .neverMatches, at: "type = referral")
    }

    @Test func badContext() {
        expectDiagnostic(rule("  when: type = case_conference and it = police\n  output: x"), .badContext, at: "it =")
        expectDiagnostic(rule("  expect:\n    arm: {when: type = referral, within: 2 days}\n    fire_if: agency = gp\n  output: x"), .badContext, at: "agency = gp")
        expectDiagnostic(rule("  when: type = referral and count(type = referral and count(type = referral, 1 day) > 1, 2 days) >= 1\n  output: x"),
                         .badContext, at: "count(type = referral, 1 day)")
    }

    @Test func badCorrelation() {
        expectDiagnostic(rule("  expect:\n    arm: {when: type = referral, within: 2 days}\n    met_by: type = referral\n    correlate: [data.refrral_ref]\n  output: x"),
                         .badCorrelation, at: "data.refrral_ref")
        expectDiagnostic(rule("  expect:\n    arm: {when: type = referral, within: 2 days}\n    met_by: type = core_group\n    correlate: [data.referral_ref]\n  output: x"),
                         .badCorrelation, at: "data.referral_ref")
    }

    @Test func duplicateKey() {
        expectDiagnostic(rule("  when: type = referral\n  output: x\n  title: again"), .duplicateKey, at: "title: again")
        let c = compile(rule("  when: type = referral\n  output: x\n  title: again"))
        #expect(c.diagnostics.first { $0.code == .duplicateKey }?.notes == ["first at t.yaml:5:3"])
        #expect(!c.report.contains("Context"))
    }

    @Test func badTest() {
        let file = RuleSources.File(path: "tests/t.yaml", text: "- test: t\n  events:\n    - referral: {referral_ref: R, referrer_agency: gp, decision: pending}\n  expect: [r1 at never]\n")
        let (_, diags) = RuleTestReader.read(file)
        #expect(diags.contains { $0.code == .badTest && $0.location.line == 3 && $0.location.column == 7 })
        #expect(diags.contains { $0.code == .badTest && $0.location.line == 4 && $0.location.column == 12 })
    }

    @Test func everyCodeHasATest() {
        // Keep this list in step with the tests above (and KeepGoingTests; the lint's duplicate-rule, short-suppression
        // and implied-default in CheckCommandTests): adding a code means adding its test.
        let tested: Set<DiagnosticCode> = [.yamlSyntax, .notAList, .unknownItem, .unknownKey, .missingKey, .badValue, .duplicate,
                                           .badName, .badSeverity, .syntax, .unknownField, .fieldNotOnType, .unknownEventType,
                                           .badEnumValue, .typeMismatch, .unknownMacro, .unknownList, .macroCycle, .unknownState,
                                           .badDuration, .unknownCalendar, .badCalendar, .badTemplate, .freeTextInOutput,
                                           .neverMatches, .badContext, .badCorrelation, .duplicateKey, .badTest, .unused,
                                           .duplicateRule, .shortSuppression, .impliedDefault]
        #expect(Set(DiagnosticCode.allCases) == tested)
    }

    @Test func allErrorsAreCollectedInOnePass() {
        let text = rule("  when: type = referral and on_plann\n  output: x") + rule("  when: type = injury\n  output: x", id: "r2")
            + rule("  when: type = appointment and data.outcome = nope\n  output: \"{data.explanation}\"", id: "r3")
        let codes = Set(compile(text).diagnostics.map(\.code))
        #expect(codes.isSuperset(of: [.unknownMacro, .unknownEventType, .badEnumValue, .freeTextInOutput]))
    }

    @Test func renderedDiagnosticShowsTheLineAndACaret() {
        let c = compile(rule("  when: type = injury\n  output: x"))
        #expect(c.report.contains("t.yaml:9:16: error[unknown-event-type]: unknown event type 'injury'"))
        #expect(c.report.contains(" 9 |   when: type = injury\n   |                ^"))
        #expect(c.report.contains("did you mean 'injury_observed'?"))
    }

    @Test func deepNestingIsAnErrorNotACrash() {
        let deep = String(repeating: "(", count: 5000) + "type = referral" + String(repeating: ")", count: 5000)
        let c = compile(rule("  when: \(deep)\n  output: x"))
        #expect(c.diagnostics.contains { $0.code == .syntax })
        var chain = ""
        for i in 0..<100 { chain += "- macro: m\(i)\n  condition: m\(i + 1)\n" }
        chain += "- macro: m100\n  condition: type = referral\n"
        #expect(compile(chain + rule("  when: m0\n  output: x")).diagnostics.contains { $0.code == .macroCycle })
    }
}

/// Diagnostics keep going: a YAML error in one item of a file hides nothing of the others (issue 14).
@Suite struct KeepGoingTests {
    @Test func fiveDifferentErrorsInOneFileOneOfThemYAMLAreAllReported() {
        let text = rule("  when: type = injury_observed\n  output: \"x\"", id: "first").replacingOccurrences(of: "severity: high", with: "severity: mediocre")
            + "- rule: second\n  title: [unclosed\n  severity: high\n"
            + rule("  when: type = injury_observd\n  output: \"x\"", id: "third")
            + rule("  when: type = injury_observed\n  colour: red\n  output: \"x\"", id: "fourth")
            + "- macro: Bad-Name\n  condition: type = injury_observed\n"
        let c = compile(text)
        let codes = c.errors.map(\.code)
        #expect(codes.contains(.badSeverity), "\(c.report)")
        #expect(codes.contains(.yamlSyntax))
        #expect(codes.contains(.unknownEventType))
        #expect(codes.contains(.unknownKey))
        #expect(codes.contains(.badName))
        #expect(c.errors.count == 5, "\(c.report)")
        // Each where it is, on the file's own lines.
        let yaml = c.errors.first { $0.code == .yamlSyntax }
        #expect((yaml?.location.line ?? 0) > calendarLines + 7)
        let unknownType = c.errors.first { $0.code == .unknownEventType }
        #expect(unknownType.map { text.split(separator: "\n", omittingEmptySubsequences: false)[$0.location.line - calendarLines - 1].contains("injury_observd") } == true)
    }

    @Test func lintWarnsOfWhatNoRuleUsesAndNeverFailsTheBuild() {
        let text = """
            - macro: unused_macro
              condition: type = injury_observed
            - macro: used_macro
              condition: type = injury_observed
            - list: unused_list
              items: [bruise]
            - state: unused_state
              when: type = plan_status
              value: data.status

            """ + rule("  when: used_macro\n  output: \"x\"")
        let sources = RuleSources(files: [RuleSources.File(path: "t.yaml", text: calendar + text), holidays])
        let c = RuleCompiler.compile(sources, lint: true)
        #expect(c.ruleSet != nil, "warnings do not fail")
        let warnings = c.diagnostics.filter { $0.severity == .warning }.map(\.message)
        #expect(warnings.sorted() == ["list 'unused_list' is used by no rule", "macro 'unused_macro' is used by no rule",
                                      "state 'unused_state' is read by no rule (it is still kept per child)"])
        #expect(RuleCompiler.compile(sources).diagnostics.isEmpty, "no warnings without lint")
    }
}

/// The working-day index answers exactly what walking the days answers, inside its span, at its edges and
/// outside it, for the shipped calendar.
@Suite struct WorkingDayIndexTests {
    @Test func theIndexAgreesWithWalkingTheDays() throws {
        let dir = repoRoot.appendingPathComponent("Rules/calendars")
        let file = try #require(try FileManager.default.contentsOfDirectory(atPath: dir.path).first { $0.hasSuffix(".csv") })
        let csv = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
        let listed = try WorkingCalendar.parseHolidays(csv: csv).get()
        let calendar = WorkingCalendar(name: "ew", zone: try #require(ZoneTable.named("Europe/London")), weekend: [6, 7], holidays: listed)
        let span = try #require(calendar.coverage)
        #expect(calendar.index != nil)
        let from = span.lowerBound.number - 2500, to = span.upperBound.number + 2500
        var rng = SplitMix64(state: 5)
        var days = Array(stride(from: from, through: to, by: 3))
        days += (0..<2000).map { _ in Int32.random(in: from...to, using: &rng) }
        for number in days {
            let d = Day(number: number)
            for n in [1, 2, 3, 5, 10, 15, 20, 45, 60] {
                #expect(calendar.workingDay(n, after: d) == calendar.walkToWorkingDay(n, after: d), "\(n) working days after \(d)")
            }
        }
    }
}
