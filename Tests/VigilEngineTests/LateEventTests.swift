import Foundation
import Testing
import VigilContract
@testable import VigilEngine
import VigilRules

@Suite struct LateEventTests {
    let decoder = EventDecoder(contract: pack.contract, slots: pack.capturedSlots)

    func event(_ id: String, _ type: String, _ at: String, child: String = "C-1", _ data: String) -> EventRecord {
        var r = decoder.makeRecord()
        let json = #"{"schema_version":1,"event_id":"\#(id)","type":"\#(type)","occurred_at":"\#(at)","agency":"children_social_care","child":{"id":"\#(child)"},"data":\#(data)}"#
        #expect(decoder.decode(json, into: &r) == nil)
        return r
    }

    /// Applies events in arrival order (not event-time order), advancing the clock as a live pipeline does.
    func run(_ engine: inout Engine, _ events: [EventRecord]) -> [Alert] {
        var alerts: [Alert] = []
        for e in events {
            if let t = e[pack.contract.occurredAtSlot].instant { engine.advance(to: max(engine.clock, t), into: &alerts) }
            engine.process(e, into: &alerts)
        }
        return alerts
    }

    @Test func aLateEventThatWouldHaveMetAFiredDeadlineWithdrawsItsAlert() throws {
        var engine = Engine(rules: pack)
        let alerts = run(&engine, [
            event("e1", "plan_status", "2007-03-01T10:00:00Z", #"{"status":"started"}"#),
            event("e2", "household_member", "2007-03-12T11:00:00Z", #"{"person_ref":"P-1","relationship":"friend"}"#),
            event("e3", "appointment", "2007-03-15T10:00:00Z", #"{"service":"gp","outcome":"attended"}"#),
            // Recorded late: the check happened before the deadline of 2007-03-14T00:00Z.
            event("e4", "background_check", "2007-03-13T10:00:00Z", #"{"person_ref":"P-1","check":"police_national","result":"no_trace"}"#),
        ])
        let unchecked = alerts.filter { pack.rules[$0.ruleIndex].id == "unchecked-adult-with-access" }
        #expect(unchecked.count == 2)
        let fired = try #require(unchecked.first)
        let withdrawn = try #require(unchecked.last)
        #expect(fired.status == .fired)
        #expect(withdrawn.status == .withdrawn)
        #expect(withdrawn.withdraws == fired.alertId)
        #expect(withdrawn.evidence.map(\.eventId) == ["e4", "e2"])
        #expect(withdrawn.alertId != fired.alertId)
        #expect(engine.stats.withdrawn == 1)
        let json = AlertFormatter(rules: pack).json(withdrawn)
        #expect(alertSchemaFailure(json) == nil, "\(json)")
        #expect(json.contains(#""status":"withdrawn","withdraws":"\#(fired.alertId)""#))
    }

    @Test func aLateEventAfterTheDeadlineOrForAnotherPersonWithdrawsNothing() {
        var engine = Engine(rules: pack)
        let alerts = run(&engine, [
            event("e1", "plan_status", "2007-03-01T10:00:00Z", #"{"status":"started"}"#),
            event("e2", "household_member", "2007-03-12T11:00:00Z", #"{"person_ref":"P-1","relationship":"friend"}"#),
            event("e3", "appointment", "2007-03-15T10:00:00Z", #"{"service":"gp","outcome":"attended"}"#),
            event("e4", "background_check", "2007-03-14T00:00:00Z", #"{"person_ref":"P-1","check":"police_national","result":"no_trace"}"#),
            event("e5", "background_check", "2007-03-13T00:00:00Z", #"{"person_ref":"P-2","check":"police_national","result":"no_trace"}"#),
        ])
        #expect(alerts.filter { $0.status == .withdrawn }.isEmpty)
    }

    @Test func childrenOfAPartitionCanBeHandedToAnotherEngine() {
        var a = Engine(rules: pack)
        var alerts: [Alert] = []
        let plan = event("e1", "plan_status", "2007-03-01T10:00:00Z", child: "C-7", #"{"status":"started"}"#)
        let adult = event("e2", "household_member", "2007-03-12T11:00:00Z", child: "C-7", #"{"person_ref":"P-1","relationship":"friend"}"#)
        let other = event("e3", "plan_status", "2007-03-01T10:00:00Z", child: "C-8", #"{"status":"started"}"#)
        a.process(plan, domain: 3, into: &alerts)
        a.process(adult, domain: 3, into: &alerts)
        a.process(other, domain: 5, into: &alerts)
        let moving = a.children(inDomains: [3])
        #expect(moving.map(\.id) == ["C-7"])
        a.remove(domains: [3])
        #expect(a.childCount == 1)
        var b = Engine(rules: pack)
        b.adopt(moving)
        // The deadline travelled with the child and fires on the new owner.
        b.advance(domain: 3, to: RFC3339.parseDateTime("2007-03-20T00:00:00Z")!, into: &alerts)
        #expect(alerts.map { pack.rules[$0.ruleIndex].id }.contains("unchecked-adult-with-access"))
        var none: [Alert] = []
        a.advance(to: RFC3339.parseDateTime("2007-03-20T00:00:00Z")!, into: &none)
        #expect(!none.contains { pack.rules[$0.ruleIndex].id == "unchecked-adult-with-access" })
    }
}
