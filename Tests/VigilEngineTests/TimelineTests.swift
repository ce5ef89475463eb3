import Foundation
import Testing
import VigilContract
@testable import VigilEngine
import VigilRules
import VigilService
import VigilTesting

/// Answers that never depend on arrival order: events of each child delivered out of event-time order give,
/// net of withdrawals, exactly the alerts of the sorted replay (rule, child, fired_at, evidence).
@Suite struct TimelineTests {
    let decoder = EventDecoder(contract: pack.contract, slots: pack.capturedSlots)

    struct Parsed {
        let line: String
        let record: EventRecord
        let at: Instant
        let child: String
    }

    func parse(_ lines: [String]) -> [Parsed] {
        lines.map { line in
            var r = decoder.makeRecord()
            #expect(decoder.decode(line, into: &r) == nil)
            return Parsed(line: line, record: r, at: r[pack.contract.occurredAtSlot].instant ?? .distantPast,
                          child: r[pack.contract.childIdSlot].string ?? "")
        }
    }

    /// The sorted replay (the oracle): alerts by id.
    func sorted(_ events: [Parsed]) -> [String: Alert] {
        var engine = Engine(rules: pack)
        let alerts = engine.replay(events.map(\.record))
        #expect(alerts.allSatisfy { $0.status == .fired && $0.late == nil })
        return Dictionary(alerts.map { ($0.alertId, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Events in the given (arrival) order, the clock at the largest event time read, as a live pipeline.
    func arrival(_ events: [Parsed], engine: inout Engine) -> [Alert] {
        var alerts: [Alert] = []
        for e in events {
            engine.advance(to: max(engine.clock, e.at), into: &alerts)
            engine.process(e.record, into: &alerts)
        }
        return alerts
    }

    func net(_ alerts: [Alert]) -> [String: Alert] {
        var n = NetAlerts()
        var byId: [String: Alert] = [:]
        for a in alerts {
            n.apply(a)
            if a.status == .fired { byId[a.reinstates ?? a.alertId] = a }
        }
        return Dictionary(uniqueKeysWithValues: n.ids.compactMap { id in byId[id].map { (id, $0) } })
    }

    /// Alert for alert: rule, child, fired_at and evidence.
    func expectSame(_ got: [String: Alert], _ want: [String: Alert], _ note: String) {
        #expect(Set(got.keys) == Set(want.keys), "\(note): missing \(Set(want.keys).subtracting(got.keys).count), unexpected \(Set(got.keys).subtracting(want.keys).count)")
        for (id, w) in want {
            guard let g = got[id] else { continue }
            #expect(g.ruleIndex == w.ruleIndex && g.childId == w.childId && g.firedAt == w.firedAt
                    && g.evidence.map(\.eventId) == w.evidence.map(\.eventId), "\(note): \(id)")
        }
    }

    /// A random arrival order: each child's events are shuffled among the places that child's events hold
    /// in the stream, in blocks of events sharing an instant (ties follow input order), and no event moves
    /// further than `within` from its place in event time (so that its child's timeline still covers it).
    func shuffled(_ events: [Parsed], seed: UInt64, within: Int64) -> [Parsed] {
        var rng = SplitMix64(state: seed)
        var places: [String: [Int]] = [:]
        for (i, e) in events.enumerated() { places[e.child, default: []].append(i) }
        var out = events
        for (_, idx) in places.sorted(by: { $0.key < $1.key }) {
            var blocks: [[Parsed]] = []
            for i in idx {
                if let last = blocks.last?.last, last.at == events[i].at { blocks[blocks.count - 1].append(events[i]) } else { blocks.append([events[i]]) }
            }
            // Swap random pairs of blocks that are close enough in time, each block at most once.
            var moved = Set<Int>()
            for _ in 0..<blocks.count {
                let a = Int(rng.next() % UInt64(blocks.count)), b = Int(rng.next() % UInt64(blocks.count))
                guard !moved.contains(a), !moved.contains(b), abs(blocks[a][0].at.micros - blocks[b][0].at.micros) <= within else { continue }
                blocks.swapAt(a, b)
                moved.formUnion([a, b])
            }
            for (place, e) in zip(idx, blocks.flatMap { $0 }) { out[place] = e }
        }
        return out
    }

    @Test(arguments: 1...6) func randomArrivalOrdersGiveTheSortedReplayNetOfWithdrawals(seed: UInt64) throws {
        var g = StreamGenerator(.init(children: 60, days: 520, seed: seed, riskRate: 0.3, planRate: 0.4))
        var lines: [String] = []
        g.generate { lines.append($0) }
        let events = parse(try scenarioLines() + lines)
        let want = sorted(events)
        #expect(want.count > 20)
        var engine = Engine(rules: pack)
        let got = arrival(shuffled(events, seed: seed, within: 200 * Instant.microsPerDay), engine: &engine)
        #expect(engine.stats.lateEvents > 50, "the order was perturbed")
        #expect(engine.stats.lateBeyondHorizon == 0)
        expectSame(net(got), want, "seed \(seed)")
    }

    @Test(arguments: 1...4) func anyOrderOfAStreamShorterThanTheHorizonGivesTheSortedReplay(seed: UInt64) throws {
        var g = StreamGenerator(.init(children: 40, days: 300, seed: seed + 100, riskRate: 0.3, planRate: 0.4))
        var lines: [String] = []
        g.generate { lines.append($0) }
        let events = parse(lines)
        var engine = Engine(rules: pack)
        let got = arrival(shuffled(events, seed: seed, within: Int64.max / 2), engine: &engine)
        expectSame(net(got), sorted(events), "seed \(seed)")
    }

    @Test func theHaringeyInitialConferenceDeliveredAfterTheCoreGroupRaisesNoCoreGroupAlert() throws {
        let events = parse(try scenarioLines())
        let conference = try #require(events.firstIndex { $0.line.contains("\"event_id\":\"hgy-0012\"") })
        let coreGroup = try #require(events.firstIndex { $0.line.contains("\"event_id\":\"hgy-0014\"") })
        for placeAfter in [coreGroup, events.count - 1] {
            // Delivered after the core group meeting, then (second case) after everything else.
            var order = events
            let c = order.remove(at: conference)
            order.insert(c, at: placeAfter)
            var engine = Engine(rules: pack)
            let got = arrival(order, engine: &engine)
            let standing = net(got)
            #expect(!standing.values.contains { pack.rules[$0.ruleIndex].id == "core-group-overdue" })
            #expect(sortedPairs(pairs(Array(standing.values))) == sortedPairs(haringeyExpected))
            // Anything the late conference's deadlines raised in between was withdrawn.
            for a in got where a.status == .withdrawn { #expect(a.late?.eventId == "hgy-0012") }
        }
    }

    @Test func aLateRecordRaisesTheAlertsItJustifiesMarkedLate() throws {
        func e(_ id: String, _ type: String, _ at: String, _ data: String) -> String {
            #"{"schema_version":1,"event_id":"\#(id)","type":"\#(type)","occurred_at":"\#(at)","recorded_at":"2007-03-30T09:00:00Z","agency":"hospital","child":{"id":"C-9","date_of_birth":"2006-01-01","mobility":"mobile"},"data":\#(data)}"#
        }
        let plan = e("p", "plan_status", "2007-03-01T10:00:00Z", #"{"status":"started"}"#)
        let injuries = ["2007-03-02T10:00:00Z", "2007-03-10T10:00:00Z", "2007-03-20T10:00:00Z"].enumerated().map { k, at in
            e("i\(k)", "injury_observed", at, #"{"injury":"bruise","sites":["arm"],"count":1,"explanation_assessment":"consistent"}"#)
        }
        // The plan arrives last: only with it are the injuries repeated injuries on a plan.
        var engine = Engine(rules: pack)
        let got = arrival(parse(injuries + [plan]), engine: &engine)
        let late = got.filter { $0.late != nil && $0.status == .fired }
        #expect(!late.isEmpty)
        #expect(late.allSatisfy { $0.late?.eventId == "p" && $0.late?.recordedAt == RFC3339.parseDateTime("2007-03-30T09:00:00Z") })
        let json = AlertFormatter(rules: pack).json(late[0])
        #expect(json.contains(#""late":{"event_id":"p","occurred_at":"2007-03-01T10:00:00Z","recorded_at":"2007-03-30T09:00:00Z"}"#))
        #expect(alertSchemaFailure(json) == nil, "\(json)")
        expectSame(net(got), sorted(parse([plan] + injuries)), "late plan")
    }

    /// A visit withdraws the child-not-seen alert; then a copy of the same visit arrives with an earlier time,
    /// before the plan: the copy is the one event-time order keeps, the visit that met the deadline becomes
    /// its duplicate, and the alert stands again, re-raised under a revised id.
    @Test func anAlertWithdrawnAndJustifiedAgainIsReRaisedUnderARevision() throws {
        func e(_ id: String, _ type: String, _ at: String, _ data: String) -> String {
            #"{"schema_version":1,"event_id":"\#(id)","type":"\#(type)","occurred_at":"\#(at)","agency":"children_social_care","child":{"id":"C-R"},"data":\#(data)}"#
        }
        let visit = #"{"announced":true,"access":"granted","child_seen":true,"child_seen_alone":false}"#
        let events = parse([
            e("plan", "plan_status", "2007-03-01T10:00:00Z", #"{"status":"started"}"#),
            e("later", "appointment", "2007-04-20T10:00:00Z", #"{"service":"gp","outcome":"attended"}"#),
            e("v", "home_visit", "2007-03-08T10:00:00Z", visit),
            e("v", "home_visit", "2007-02-20T10:00:00Z", visit),
        ])
        var engine = Engine(rules: pack)
        let got = arrival(events, engine: &engine)
        let notSeen = got.filter { pack.rules[$0.ruleIndex].id == "child-not-seen" }
        // A (plan + 10 working days) fires; the visit withdraws it and raises B (visit + 10 working days); the
        // earlier copy makes the visit a duplicate: B is withdrawn and A stands again.
        #expect(notSeen.map(\.status) == [.fired, .withdrawn, .fired, .withdrawn, .fired])
        let reinstated = try #require(notSeen.last)
        #expect(reinstated.reinstates == notSeen[0].alertId && reinstated.alertId == notSeen[0].alertId + ".r1")
        #expect(engine.stats.reinstated == 1 && engine.stats.duplicates == 0)
        var inOrder = events
        inOrder.swapAt(2, 3)
        expectSame(net(got), sorted(inOrder), "reinstatement")
    }

    @Test func aRecordOlderThanItsChildsTimelineIsReconciledApproximatelyAndCounted() throws {
        func e(_ id: String, _ at: String) -> String {
            #"{"schema_version":1,"event_id":"\#(id)","type":"appointment","occurred_at":"\#(at)","agency":"gp","child":{"id":"C-O"},"data":{"service":"gp","outcome":"attended"}}"#
        }
        var engine = Engine(rules: pack)
        // a ages out of the timeline into the base when b arrives; a record from between them is still exact,
        // one from before a is not.
        _ = arrival(parse([e("a", "2005-01-01T10:00:00Z"), e("b", "2007-01-01T10:00:00Z"), e("mid", "2005-06-01T10:00:00Z")]), engine: &engine)
        #expect(engine.stats.lateEvents == 1 && engine.stats.lateBeyondHorizon == 0)
        _ = arrival(parse([e("old", "2004-06-01T10:00:00Z")]), engine: &engine)
        #expect(engine.stats.lateEvents == 2 && engine.stats.lateBeyondHorizon == 1)
        let child = try #require(engine.child("C-O"))
        #expect(child.timeline.map { child.eventId($0) } == ["b"], "both aged out into the base")
    }

    @Test func aChildsStateWithItsTimelineSurvivesEncodingMidStream() throws {
        var g = StreamGenerator(.init(children: 30, days: 300, seed: 77, riskRate: 0.3, planRate: 0.4))
        var lines: [String] = []
        g.generate { lines.append($0) }
        let events = shuffled(parse(lines), seed: 5, within: 100 * Instant.microsPerDay)
        var whole = Engine(rules: pack)
        let uninterrupted = arrival(events, engine: &whole)
        var first = Engine(rules: pack)
        var got = arrival(Array(events.prefix(events.count / 2)), engine: &first)
        let data = try JSONEncoder().encode(first.snapshot())
        var second = try Engine(rules: pack, restoring: JSONDecoder().decode(EngineSnapshot.self, from: data))
        got += arrival(Array(events.suffix(from: events.count / 2)), engine: &second)
        #expect(got.map(\.alertId) == uninterrupted.map(\.alertId))
    }

    @Test func stateWrittenBeforeTimelinesIsReadAsTheBaseOfAnEmptyTimeline() throws {
        let legacy = #"{"id":"C-L","newest":{"micros":1170237600000000},"domain":2,"seen":[],"states":[],"entries":[],"pending":[],"fired":[],"firedExpectations":[],"nextPendingId":7}"#
        let child = try JSONDecoder().decode(ChildState.self, from: Data(legacy.utf8))
        #expect(child.id == "C-L" && child.domain == 2 && child.timeline.isEmpty)
        #expect(child.now.newest == Instant(micros: 1_170_237_600_000_000) && child.base.frontier == child.now.frontier)
        #expect(child.now.nextPendingId == 7)
    }
}
