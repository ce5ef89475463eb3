import ArgumentParser
import Foundation
import VigilContract
import VigilEngine
import VigilRules
import VigilService
import VigilTesting

/// What bounds memory and changelog records: one child with a very long history, and a million children
/// over three years with idle ones evicted.
struct BoundsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bounds", abstract: "State bounds: one child with 100,000 events; 1M children over 3 years.")
    @Option(help: "Rule pack.") var rules = "Rules"
    @Option(help: "Events for the one busy child.") var busyEvents = 100_000
    @Option(help: "Children of the long stream.") var children = 1_000_000
    @Option(help: "Days of the long stream.") var days = 1095
    @Option(help: "Routine contact rate of the long stream (the generator's default is 1).") var rate = 0.05
    @Option(help: "State budget per child record, bytes (vigil run --state-max-bytes).") var stateMaxBytes = 512 * 1024

    func run() throws {
        let set = try compilePack(rules)
        try BoundsCommand.busyChild(set, events: busyEvents, budget: stateMaxBytes)
        try BoundsCommand.manyChildren(set, children: children, days: days, rate: rate)
    }

    /// The record a checkpoint would write for the child, shrunk to the budget as the shard does.
    static func record(_ engine: inout Engine, _ id: String, budget: Int) throws -> (bytes: Int, steps: Int) {
        let pack = StatePack(engine.rules)
        guard var child = engine.child(id) else { return (0, 0) }
        var r = Checkpoint.childRecord(child, checkpoint: 0, next: 0, pack: pack)
        var steps = 0
        while r.value.count > budget, engine.shrink(child: id), let smaller = engine.child(id) {
            child = smaller
            steps += 1
            r = Checkpoint.childRecord(child, checkpoint: 0, next: 0, pack: pack)
        }
        return (r.value.count, steps)
    }

    static func busyChild(_ rules: CompiledRuleSet, events: Int, budget: Int) throws {
        print("== one child with \(grouped(Double(events))) events (injuries, missed appointments, household members, investigations, visits), a checkpoint every 10,000")
        let decoder = EventDecoder(contract: rules.contract, slots: Engine.decodedSlots(rules))
        var r = decoder.makeRecord()
        var engine = Engine(rules: rules)
        var alerts: [Alert] = []
        let start = RFC3339.parseDateTime("2007-01-01T00:00:00Z")!.micros
        let kinds: [(String, (Int) -> String)] = [
            ("injury_observed", { _ in #"{"injury":"bruise","sites":["arm"],"count":1,"explanation_assessment":"implausible"}"# }),
            ("appointment", { _ in #"{"service":"gp","outcome":"was_not_brought"}"# }),
            ("household_member", { i in #"{"person_ref":"P-\#(i)","relationship":"lodger"}"# }),
            ("police_investigation", { i in #"{"investigation_ref":"INV-\#(i)","status":"opened"}"# }),
            ("home_visit", { _ in #"{"announced":true,"access":"refused","child_seen":false}"# }),
        ]
        let rss0 = currentRSS()
        var largest = 0, steps = 0
        let t = seconds {
            for i in 0..<events {
                let at = Instant(micros: start + Int64(i) * 900 * Instant.microsPerSecond)
                let (type, data) = kinds[i % kinds.count]
                let line = #"{"schema_version":1,"event_id":"b-\#(i)","type":"\#(type)","occurred_at":"\#(at)","agency":"police","child":{"id":"C-BUSY","mobility":"mobile"},"data":\#(data(i))}"#
                guard decoder.decode(line, into: &r) == nil else { fatalError("invalid: \(line)") }
                engine.advance(to: at, into: &alerts)
                engine.process(r, into: &alerts)
                alerts.removeAll(keepingCapacity: true)
                if (i + 1) % 10_000 == 0 {
                    let rec = try? record(&engine, "C-BUSY", budget: budget)
                    largest = max(largest, rec?.bytes ?? 0)
                    steps += rec?.steps ?? 0
                }
            }
        }
        let c = engine.child("C-BUSY")
        print("| measure | value |")
        print("|---|---:|")
        print("| time | \(fmt(t, 1)) s (\(grouped(Double(events) / t)) events/s) |")
        print("| largest changelog record (budget \(grouped(Double(budget))) B) | \(grouped(Double(largest))) B |")
        print("| shrinking steps | \(steps) |")
        print("| state, engine's estimate | \(grouped(Double(c?.approximateBytes ?? 0))) B |")
        print("| timeline / pending / window entries | \(c?.timeline.count ?? 0) / \(c?.pending.count ?? 0) / (capped at \(engine.limits.maxWindowEntriesPerChild)) |")
        print("| RSS growth | \(grouped(Double(currentRSS() - rss0) / 1024)) KiB |")
        print("| counted: overflow drops / pending refused / timeline overflow / state degraded | \(engine.stats.overflowDrops) / \(engine.stats.pendingRefused) / \(engine.stats.timelineOverflow) / \(engine.stats.stateDegraded) |")
        print("")
    }

    static func manyChildren(_ rules: CompiledRuleSet, children: Int, days: Int, rate: Double) throws {
        print("== \(grouped(Double(children))) children over \(days) days (rate \(rate)), idle children evicted at a monthly checkpoint")
        let decoder = EventDecoder(contract: rules.contract, slots: Engine.decodedSlots(rules))
        var r = decoder.makeRecord()
        var engine = Engine(rules: rules)
        var alerts: [Alert] = []
        var g = StreamGenerator(.init(children: children, days: days, seed: 5, rate: rate))
        let rss0 = currentRSS()
        var events = 0, peakChildren = 0, evicted = 0
        var nextEviction = Instant.distantPast
        var rows: [String] = []
        let t = seconds {
            g.generate { line in
                guard decoder.decode(line, into: &r) == nil, let at = r[rules.contract.occurredAtSlot].instant else { return }
                engine.advance(to: at, into: &alerts)
                engine.process(r, into: &alerts)
                alerts.removeAll(keepingCapacity: true)
                events += 1
                if at >= nextEviction {
                    if nextEviction > .distantPast {
                        peakChildren = max(peakChildren, engine.childCount)
                        evicted += engine.evictIdle(inDomains: [0], at: at).count
                        rows.append("| \(at.description.prefix(10)) | \(grouped(Double(events))) | \(grouped(Double(engine.childCount))) | \(grouped(Double(evicted))) | \(grouped(Double(currentRSS() - rss0) / 1_048_576)) MiB |")
                    }
                    nextEviction = at + 30 * Instant.microsPerDay
                }
            }
        }
        print("| month | events so far | children held | evicted so far | RSS growth |")
        print("|---|---:|---:|---:|---:|")
        for (k, row) in rows.enumerated() where k % 6 == 5 || k == rows.count - 1 { print(row) }
        print("\(grouped(Double(events))) events in \(fmt(t, 1)) s; at most \(grouped(Double(peakChildren))) children held; state (engine's estimate) \(grouped(Double(engine.approximateStateBytes) / 1_048_576)) MiB for \(grouped(Double(engine.childCount))) children")
        print("")
    }
}
