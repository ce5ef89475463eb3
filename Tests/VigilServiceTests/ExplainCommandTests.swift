import Foundation
import Testing
import VigilChaos
import VigilContract
import VigilKafka
@testable import VigilService
import VigilTesting

/// `vigil explain` and the trace `vigil test` prints under a failing case.
@Suite struct ExplainCommandTests {
    /// The Haringey scenario's alerts as `vigil replay` writes them.
    func haringeyAlerts() throws -> [String] {
        let replay = try Subprocess(vigilBinary, ["replay", scenarioPath, "--rules", rulesDir, "--quiet"])
        #expect(replay.wait(timeout: 120) == 0)
        return replay.stdout
    }

    /// The investigation that drifted over Easter 2007: armed Monday 19 March, 20 working days with Good Friday
    /// and Easter Monday skipped and the clocks going forward on 25 March, due at the end of Wednesday 18 April,
    /// local midnight at 23:00 UTC. Explained from the audit log alone, then traced over the scenario.
    @Test func aHaringeyAlertAcrossABankHolidayAndAClockChange() throws {
        let id = "a-fd2ae58e015e159bca3a75068cc240e8"
        let alerts = try haringeyAlerts()
        let line = try #require(alerts.first { $0.contains(id) })
        let audit = tempPath("audit")
        let w = try AuditLogWriter(path: audit)
        for a in alerts { _ = try w.append(alertId: (try JSONValue.parse(a))["alert_id"]?.stringValue ?? "", alertJSON: a) }
        try w.sync()

        let alone = try Subprocess(vigilBinary, ["explain", id, "--audit", audit, "--rules", rulesDir])
        #expect(alone.wait(timeout: 60) == 0, "\(alone.stderr)")
        let out = alone.stdout
        #expect(out.first == "alert \(id) (fired)")
        #expect(out.contains("  rule      investigation-drift version 92632be81ce5d16f: Police investigation drifting"))
        #expect(out.contains("  deadline  2007-04-19T00:00:00+01:00 (2007-04-18T23:00:00Z)"))
        #expect(out.contains("    hgy-0022  police_investigation by police at 2007-03-19T10:00:00+00:00  (armed it)"))
        #expect(out.contains("    20 working days after Mon 2007-03-19, counted in calendar england-and-wales (Europe/London):"))
        #expect(out.contains("      13       Thu 2007-04-05"))
        #expect(out.contains("      skip     Fri 2007-04-06  holiday: Good Friday"))
        #expect(out.contains("      skip     Mon 2007-04-09  holiday: Easter Monday"))
        #expect(out.contains("      20       Wed 2007-04-18"))
        #expect(out.contains("    due at the end of working day 20 (Wed 2007-04-18): local midnight, 2007-04-19T00:00:00+01:00 (2007-04-18T23:00:00Z)"))
        #expect(out.contains("    clock change in between: Europe/London goes from +00:00 to +01:00 at 2007-03-25T01:00:00Z"))
        #expect(out.last == "(give --events FILE to trace the rule over the child's events)")

        // From a file of alerts (as read off the topic), traced over the events.
        let file = tempPath("alerts") + ".jsonl"
        try (line + "\n").write(toFile: file, atomically: false, encoding: .utf8)
        let traced = try Subprocess(vigilBinary, ["explain", id, "--alerts", file, "--events", scenarioPath, "--rules", rulesDir])
        #expect(traced.wait(timeout: 60) == 0, "\(traced.stderr)")
        let trace = traced.stdout
        #expect(trace.contains("2007-03-19T10:00:00+00:00  hgy-0022  police_investigation by police"))
        #expect(trace.contains("  armed: due 2007-04-19T00:00:00+01:00 (2007-04-18T23:00:00Z)"))
        #expect(trace.contains("2007-04-19T00:00:00+01:00 (2007-04-18T23:00:00Z)  deadline of the expectation armed by hgy-0022 at 2007-03-19T10:00:00+00:00"))
        #expect(trace.contains("  FIRED \(id): Investigation INV-1 for child C-HGY-0001: no activity recorded by 2007-04-19T00:00:00+01:00"))
        #expect(!trace.contains { $0.hasPrefix("note: these events do not raise") })
    }

    /// An alert found on the alerts topic (three partitions, read to its end), as the duty manager's feed has it.
    @Test func anAlertFromTheTopic() throws {
        let broker = try EmbeddedBroker(logger: quietLogger)
        try broker.createTopic("vigil-alerts", partitions: 3)
        let alerts = try haringeyAlerts()
        try produce(alerts, to: "vigil-alerts", brokers: broker.bootstrapServers, key: { Array($0.utf8) })
        let id = "a-fd2ae58e015e159bca3a75068cc240e8"
        let run = try Subprocess(vigilBinary, ["explain", id, "--brokers", broker.bootstrapServers, "--topic", "vigil-alerts", "--rules", rulesDir])
        #expect(run.wait(timeout: 120) == 0, "\(run.stderr)")
        #expect(run.stdout.first == "alert \(id) (fired)")
        #expect(run.stdout.contains("    due at the end of working day 20 (Wed 2007-04-18): local midnight, 2007-04-19T00:00:00+01:00 (2007-04-18T23:00:00Z)"))
        let missing = try Subprocess(vigilBinary, ["explain", "a-nope", "--brokers", broker.bootstrapServers, "--topic", "vigil-alerts", "--rules", rulesDir])
        #expect(missing.wait(timeout: 120) == 1)
        #expect(missing.stderr.contains("vigil explain: no alert 'a-nope' in topic vigil-alerts"))
    }

    /// A near miss in a rule test: the health visitor saw the child, which is not a social worker's visit, so
    /// `child-not-seen` fires although the test says it must not. The failure shows why.
    @Test func aFailingRuleTestPrintsTheWhyNotTrace() throws {
        let dir = try tempDir() + "/pack"
        try EditedPack(rulesDir).appending("""

            - test: a health visitor seeing the child is not a social worker's visit
              events:
                - plan_status: {at: 2007-03-19T10:00Z, status: started, category: physical_abuse}
                - home_visit: {at: 2007-03-26T10:00Z, agency: health_visiting, child_seen: true, access: granted}
              until: 2007-04-20T00:00Z
              expect_not: [child-not-seen]

            """, to: "tests/timescales.yaml").write(to: dir)
        let run = try Subprocess(vigilBinary, ["test", dir, "--filter", "health visitor seeing"])
        #expect(run.wait(timeout: 120) == 1)
        let out = run.stdout
        #expect(out.contains("        must not    child-not-seen fired"))
        #expect(out.contains("        why (vigil explain over the test's events):"))
        #expect(out.contains("          2007-03-19T10:00:00+00:00  t1  plan_status by children_social_care"))
        #expect(out.contains("            armed: due 2007-04-03T00:00:00+01:00 (2007-04-02T23:00:00Z)"))
        #expect(out.contains("            does not meet the pending expectation: met_by `seen_by_social_worker: agency = children_social_care` is false (agency is 'health_visiting')"),
                "\(out.joined(separator: "\n"))")
        #expect(out.contains { $0.hasPrefix("            FIRED a-") && $0.hasSuffix(": Child C-1 on a plan not seen by a social worker by 2007-04-03T00:00:00+01:00") })
    }

    @Test func anUnknownAlertOrRuleIsAClearError() throws {
        let file = tempPath("alerts") + ".jsonl"
        try (try haringeyAlerts().joined(separator: "\n") + "\n").write(toFile: file, atomically: false, encoding: .utf8)
        let missing = try Subprocess(vigilBinary, ["explain", "a-nope", "--alerts", file, "--rules", rulesDir])
        #expect(missing.wait(timeout: 60) == 1)
        #expect(missing.stderr.contains("vigil explain: no alert 'a-nope' in \(file)"))
        let rule = try Subprocess(vigilBinary, ["explain", "--events", scenarioPath, "--child", "C-HGY-0001", "--rule", "child-not-sen", "--rules", rulesDir])
        #expect(rule.wait(timeout: 60) == 1)
        #expect(rule.stderr.contains("vigil explain: no rule 'child-not-sen' in the pack (did you mean 'child-not-seen'?)"))
        let neither = try Subprocess(vigilBinary, ["explain", "--rules", rulesDir])
        #expect(neither.wait(timeout: 60) == 64)
    }
}
