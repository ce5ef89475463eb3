import VigilContract
import VigilRules

/// The outcome of one rule test.
public struct RuleTestResult: Sendable {
    public let test: RuleTest
    /// Expected alerts that did not fire.
    public let missing: [RuleTest.Expectation]
    /// Alerts in scope that no `expect` entry names.
    public let unexpected: [(rule: String, at: Instant)]
    /// `expect_not` entries that fired.
    public let forbidden: [RuleTest.Expectation]
    /// Problems that stopped the test from running (an invalid event, an unknown rule id).
    public let errors: [String]
    /// Every alert the test raised, in order.
    public let raised: [(rule: String, at: Instant)]
    /// Expected alerts that fired with another summary than the test says: the expectation and what it read.
    public var wrongSummary: [(expected: RuleTest.Expectation, got: String)] = []
    /// Expected alerts that fired with other annotations than the test says: the expectation and what it carried.
    public var wrongAnnotations: [(expected: RuleTest.Expectation, got: [String: String])] = []
    /// For a failed test: the trace of each rule it got wrong, per child (`Explainer`), what `vigil test` prints
    /// under the failure.
    public var trace: [String] = []

    public var passed: Bool {
        missing.isEmpty && unexpected.isEmpty && forbidden.isEmpty && errors.isEmpty && wrongSummary.isEmpty && wrongAnnotations.isEmpty
    }
}

/// Runs rule tests: each test gets a fresh engine, its events replayed in event-time order.
public enum RuleTestRunner {
    public static func run(_ test: RuleTest, rules: CompiledRuleSet) -> RuleTestResult {
        var errors: [String] = []
        let known = Set(rules.rules.map(\.id))
        for id in test.scope.sorted() where !known.contains(id) { errors.append("unknown rule '\(id)'") }
        let decoder = EventDecoder(contract: rules.contract)
        var records: [EventRecord] = []
        for e in test.events {
            var r = decoder.makeRecord()
            if let f = decoder.decode(e.json, into: &r) {
                errors.append("\(e.location): the event is not valid: \(f)")
            } else {
                records.append(r)
            }
        }
        guard errors.isEmpty else {
            return RuleTestResult(test: test, missing: [], unexpected: [], forbidden: [], errors: errors, raised: [])
        }
        // Every rule is tested whatever its mode (shadow and disabled rules too).
        var engine = Engine(rules: rules.allLive)
        let alerts = engine.replay(records, until: test.until)
        let raised = alerts.map { (rules.rules[$0.ruleIndex].id, $0.firedAt) }
        func annotations(_ a: Alert) -> [String: String] {
            let keys = rules.rules[a.ruleIndex].annotations.map(\.key)
            return Dictionary(zip(keys, a.annotations), uniquingKeysWith: { x, _ in x })
        }
        var pool = alerts.filter { test.scope.contains(rules.rules[$0.ruleIndex].id) }
            .map { (rules.rules[$0.ruleIndex].id, $0.firedAt, $0.summary, annotations($0)) }
        var missing: [RuleTest.Expectation] = []
        var wrongSummary: [(expected: RuleTest.Expectation, got: String)] = []
        var wrongAnnotations: [(expected: RuleTest.Expectation, got: [String: String])] = []
        for e in test.expect {
            func rendered(_ p: (String, Instant, String, [String: String])) -> Bool {
                (e.summary == nil || p.2 == e.summary) && e.annotations.allSatisfy { p.3[$0.key] == $0.value }
            }
            // An alert rendered as asked first; else any at that instant (its rendering then is wrong).
            let i = pool.firstIndex { $0.0 == e.rule && $0.1 == e.at && rendered($0) } ?? pool.firstIndex { $0.0 == e.rule && $0.1 == e.at }
            guard let i else { missing.append(e); continue }
            if let s = e.summary, pool[i].2 != s { wrongSummary.append((e, pool[i].2)) }
            if !e.annotations.allSatisfy({ pool[i].3[$0.key] == $0.value }) { wrongAnnotations.append((e, pool[i].3)) }
            pool.remove(at: i)
        }
        let forbidden = test.expectNot.filter { n in raised.contains { $0.0 == n.rule && (n.at == nil || n.at == $0.1) } }
        pool.removeAll { a in forbidden.contains { $0.rule == a.0 && ($0.at == nil || $0.at == a.1) } }
        var result = RuleTestResult(test: test, missing: missing, unexpected: pool.map { (rule: $0.0, at: $0.1) },
                                    forbidden: forbidden, errors: [], raised: raised.map { (rule: $0.0, at: $0.1) })
        result.wrongSummary = wrongSummary
        result.wrongAnnotations = wrongAnnotations
        if !result.passed { result.trace = trace(of: result, records, rules: rules.allLive) }
        return result
    }
}

extension RuleTestRunner {
    /// Why each rule a failed test got wrong did what it did, for each child of the test's events.
    static func trace(of result: RuleTestResult, _ records: [EventRecord], rules: CompiledRuleSet) -> [String] {
        var focus: [String] = []
        for id in result.missing.map(\.rule) + result.unexpected.map(\.rule) + result.forbidden.map(\.rule)
            + result.wrongSummary.map(\.expected.rule) + result.wrongAnnotations.map(\.expected.rule) where !focus.contains(id) && rules.rule(id: id) != nil {
            focus.append(id)
        }
        let slot = rules.contract.childIdSlot
        var children: [String] = []
        for r in records { if case .string(let id) = r[slot], !children.contains(id) { children.append(id) } }
        let until = records.compactMap { $0[rules.contract.occurredAtSlot].instant }.max()
        let explainer = Explainer(rules: rules)
        var lines: [String] = []
        for id in focus {
            for child in children {
                guard let e = try? explainer.explain(rule: id, child: child, records: records, through: result.test.until ?? until) else { continue }
                lines += e.lines
            }
        }
        return lines
    }
}

/// All the tests of a rule pack: reading, running, and how well they cover each rule.
public struct RuleTestSuite: Sendable {
    public let results: [RuleTestResult]
    public let diagnostics: [Diagnostic]

    /// Reads every test file of `sources` and runs the tests whose name contains `filter` (all if nil).
    public static func run(_ sources: RuleSources, rules: CompiledRuleSet, filter: String? = nil) -> RuleTestSuite {
        var results: [RuleTestResult] = []
        var diagnostics: [Diagnostic] = []
        for f in sources.files where RuleCompiler.isTestFile(f.relativePath) {
            let (tests, diags) = RuleTestReader.read(f, contract: rules.contract, zone: rules.calendars.first?.zone)
            diagnostics += diags
            for t in tests where filter.map({ t.name.contains($0) }) ?? true {
                results.append(RuleTestRunner.run(t, rules: rules))
            }
        }
        return RuleTestSuite(results: results, diagnostics: diagnostics)
    }

    public var failed: [RuleTestResult] { results.filter { !$0.passed } }

    /// Per rule: how many tests expect it to fire, and how many say it must not.
    public func coverage(of rules: CompiledRuleSet) -> [(rule: String, fires: Int, mustNot: Int)] {
        rules.rules.map { r in
            (r.id,
             results.filter { $0.test.expect.contains { $0.rule == r.id } }.count,
             results.filter { $0.test.expectNot.contains { $0.rule == r.id } }.count)
        }
    }
}
