import Foundation
import Testing
import VigilChaos
import VigilContract
import VigilKafka
import VigilRules
import VigilTesting
@testable import VigilService

/// A rule change in production, end to end: two `vigil run` processes in one group over the embedded broker,
/// events arriving all along; one reloads (SIGHUP) and is killed (SIGKILL) right after its switch; the other,
/// still on the old pack, takes its partition over, carrying whatever state it finds to the old pack, and is
/// reloaded in turn; the first comes back on the new pack. The change (a new rule, a cosmetic one) is one whose
/// union of alerts does not depend on where in the stream each partition switched (the replay says so for two
/// switch points), so under load the alerts that stand must equal `vigil replay --switch-to` on the same stream;
/// each audit log verifies with no id twice, and shows both packs.
///
/// The alerts that stand, not every record: while Y owns both partitions, records are being produced to both,
/// and when it has read to the end of both its `clock: event` jump moves each partition's clock to the largest
/// event time read (README, "How the clock works"). A partition whose newest records were produced but not
/// yet fetched then has its children's deadlines fired early, and those records, fetched next, arrive late
/// for their children: the alerts they make unjustified are withdrawn. Comparing every record id with the
/// replay's failed on such runs (an earlier version of this test, intermittently).
@Suite(.serialized) struct RuleReloadKafkaTests {
    @Test func aReloadThroughSigkillAndAnInstanceStillOnTheOldPackGivesTheReplaySwitchingThere() throws {
        let broker = try EmbeddedBroker(logger: quietLogger)
        for t in ["agency-events", "vigil-alerts", "vigil-dead-letters", "vigil-changelog"] { try broker.createTopic(t, partitions: 2) }
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The change: a new rule (backfilled over the history each child's timeline keeps) and a cosmetic one.
        let old = try EditedPack(rulesDir)
        let new = try newRuleAndCosmeticChange()
        try new.write(to: dir + "/new")
        for i in 0..<2 { try old.write(to: dir + "/rules-\(i)") }

        // Two phases of one stream, cut at a day with no event.
        let lines = generatedLines(children: 600, days: 240, seed: 31)
        let cut = "2024-06-01T00:00:00Z"
        let decoder = EventDecoder()
        var r = decoder.makeRecord()
        let slot = EventContract.embedded.occurredAtSlot
        let cutAt = try #require(RFC3339.parseDateTime(cut))
        let before = lines.filter { _ = decoder.decode($0, into: &r); return (r[slot].instant ?? .distantPast) < cutAt }
        let after = lines.filter { _ = decoder.decode($0, into: &r); return (r[slot].instant ?? .distantPast) >= cutAt }
        let events = dir + "/events.jsonl"
        try ((before + after).joined(separator: "\n") + "\n").write(toFile: events, atomically: true, encoding: .utf8)
        let oracle = try Child(vigilBinary, ["replay", events, "--rules", dir + "/rules-0", "--switch-to", dir + "/new", "--at", cut, "--quiet"])
        #expect(oracle.wait(timeout: 120) == 0)
        let expected = Set(oracle.stdout.compactMap { try? JSONValue.parse(Array($0.utf8))["alert_id"]?.stringValue })
        let backfill = oracle.stdout.filter { $0.contains(#""backfill":true"#) }.count
        #expect(expected.count > 100 && backfill > 10)
        let earlier = try Child(vigilBinary, ["replay", events, "--rules", dir + "/rules-0", "--switch-to", dir + "/new", "--at", "2024-03-01T00:00:00Z", "--quiet"])
        #expect(earlier.wait(timeout: 120) == 0)
        #expect(Set(earlier.stdout.compactMap { try? JSONValue.parse(Array($0.utf8))["alert_id"]?.stringValue }) == expected,
                "for this change, the switch point does not change the union of alerts")

        func start(_ i: Int, rules: String) throws -> Child {
            try Child(vigilBinary, ["run", "--brokers", broker.bootstrapServers, "--group", "reload", "--rules", rules,
                                    "--audit-file", dir + "/audit-\(i).jsonl", "--clock", "event", "--shards", "2", "--batch-size", "200",
                                    "--checkpoint-interval-ms", "300", "--http", "127.0.0.1:0", "--ready-max-lag", "0",
                                    "-X", "fetch.wait.max.ms=10", "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"])
        }
        func count(_ c: Child, containing s: String) -> Int { c.stderr.filter { $0.contains(s) }.count }
        func waitFor(_ what: String, timeout: TimeInterval = 90, _ condition: () -> Bool) {
            if !Child.until(timeout: timeout, condition) { Issue.record("timed out waiting for \(what)") }
        }

        try produce(before, to: "agency-events", brokers: broker.bootstrapServers)
        var x = try start(0, rules: dir + "/rules-0")
        let y = try start(1, rules: dir + "/rules-1")
        defer {
            for c in [x, y] where c.isRunning { c.signal(SIGKILL); _ = c.wait(timeout: 10) }
        }
        let brokers = broker.bootstrapServers
        let topicIds = { () throws -> Set<String> in standing(try TopicIO.readToEnd("vigil-alerts", brokers: brokers, logger: quietLogger)) }
        waitFor("both instances consuming") { count(x, containing: "restored") > 0 && count(y, containing: "restored") > 0 && !((try? topicIds())?.isEmpty ?? true) }
        // The second phase arrives in slices all through the reloads, the kill and the restart.
        let slices = stride(from: 0, to: after.count, by: max(1, after.count / 40)).map { Array(after[$0..<min(after.count, $0 + max(1, after.count / 40))]) }
        let produced = DispatchSemaphore(value: 0)
        Thread {
            for s in slices {
                try? produce(s, to: "agency-events", brokers: brokers)
                Thread.sleep(forTimeInterval: 0.25)
            }
            produced.signal()
        }.start()

        // X reloads and dies right after its switch.
        try new.write(to: dir + "/rules-0")
        x.signal(SIGHUP)
        waitFor("x's switch") { count(x, containing: "rule pack switched (sighup)") > 0 }
        let restores = count(y, containing: "restored ")
        x.signal(SIGKILL)
        _ = x.wait(timeout: 10)
        // Y, still on the old pack, takes X's partition over (a restore after the kill), then is reloaded.
        waitFor("y taking over x's partition") { count(y, containing: "restored ") > restores }
        try new.write(to: dir + "/rules-1")
        y.signal(SIGHUP)
        waitFor("y's switch") { count(y, containing: "rule pack switched (sighup)") > 0 }
        // X comes back on the new pack.
        x = try start(0, rules: dir + "/rules-0")
        waitFor("x rejoining") { count(x, containing: "restored") > 0 }
        #expect(produced.wait(timeout: .now() + 120) == .success)
        waitFor("every alert of the replay switching at \(cut)", timeout: 180) { expected.isSubset(of: (try? topicIds()) ?? []) }
        for c in [x, y] {
            c.signal(SIGTERM)
            #expect(c.wait(timeout: 60) == 0, "\(c.stderr.suffix(5))")
        }
        let onTopic = try TopicIO.readToEnd("vigil-alerts", brokers: brokers, logger: quietLogger)
        let withdrawn = withdrawals(onTopic)
        print("reload through SIGKILL: \(withdrawn) withdrawals on the topic (records fetched after a caught-up jump)\(withdrawn == 0 ? "" : ": " + describeDifference(onTopic, expected: expected, oracle: oracle.stdout))")
        #expect(standing(onTopic) == expected, "the alerts that stand are the replay's; \(describeDifference(onTopic, expected: expected, oracle: oracle.stdout))")
        let newDigest = PackManifest(try new.compile()).digest
        var audited: [[UInt8]] = []
        for i in 0..<2 {
            var ids: [String] = []
            _ = try AuditLog.verify(path: dir + "/audit-\(i).jsonl") { r in
                guard r.isAlert else { return }
                ids.append(r.alertId)
                audited.append(Array(r.alert.jsonText.utf8))
            }
            #expect(ids.count == Set(ids).count, "no alert twice in audit log \(i)")
            let verify = try Child(vigilBinary, ["audit", "verify", dir + "/audit-\(i).jsonl"])
            #expect(verify.wait(timeout: 60) == 0, "\(verify.stdout) \(verify.stderr)")
            let out = verify.stdout.joined(separator: "\n")
            #expect(out.contains(PackManifest(pack).digest) && out.contains(newDigest), "both packs on the record: \(out)")
            let tail = try Child(vigilBinary, ["tail", "--audit", dir + "/audit-\(i).jsonl", "--no-follow"])
            #expect(tail.wait(timeout: 60) == 0)
            let notes = tail.stdout.filter { $0.contains("NOTE      rule-pack  ") }
            // X's switch may not have been durable when it was killed (its note, like its alerts, went with the
            // epoch); its restart on the new pack is on the record. Y's switch is.
            let switchLine = "NOTE      rule-pack  \(newDigest) accepted (sighup; previous \(PackManifest(pack).digest)): 23 rules, 1 cosmetic, 1 new"
            #expect(i == 0 || notes.contains { $0.contains(switchLine) }, "vigil tail shows the switch: \(notes)")
            #expect(notes.first?.contains("\(PackManifest(pack).digest) accepted (startup)") == true && notes.contains { $0.contains(newDigest) }, "\(notes)")
        }
        #expect(standing(audited) == expected, "the alerts that stand in the two audit logs are the replay's; \(describeDifference(audited, expected: expected, oracle: oracle.stdout))")
    }
}

/// How many withdrawals the records hold.
func withdrawals(_ records: [[UInt8]]) -> Int {
    records.filter { (try? JSONValue.parse($0))?["status"]?.stringValue == "withdrawn" }.count
}

/// What differs between the alerts on a topic and the replay's ids, grouped so that a failure says what kind of
/// alerts they are (rule, status, backfill or late, and the range of their fired times), not only their ids.
func describeDifference(_ records: [[UInt8]], expected: Set<String>, oracle: [String]) -> String {
    func kind(_ v: JSONValue) -> String {
        var k = "\(v["rule_id"]?.stringValue ?? "?") \(v["status"]?.stringValue ?? "?")"
        if v["backfill"] != nil { k += " backfill" }
        if v["late"] != nil { k += " late" }
        return k
    }
    func summary(_ values: [JSONValue]) -> String {
        let groups = Dictionary(grouping: values, by: kind)
        return groups.keys.sorted().map { k in
            let fired = groups[k, default: []].compactMap { $0["fired_at"]?.stringValue }.sorted()
            return "\(k): \(groups[k, default: []].count) (fired \(fired.first ?? "?") to \(fired.last ?? "?"))"
        }.joined(separator: "; ")
    }
    let parsed = records.compactMap { try? JSONValue.parse($0) }
    var seen = Set<String>()
    let extra = parsed.filter { v in v["alert_id"]?.stringValue.map { !expected.contains($0) && seen.insert($0).inserted } ?? false }
    let stand = standing(records)
    let missing = oracle.compactMap { try? JSONValue.parse(Array($0.utf8)) }.filter { v in v["alert_id"]?.stringValue.map { !stand.contains($0) } ?? false }
    let extraStanding = stand.subtracting(expected).count
    return "\(extra.count) records not in the replay [\(summary(extra))] (\(extraStanding) standing), \(missing.count) of the replay's not standing [\(summary(missing))]"
}
