import VigilContract
import VigilRules

extension Engine {
    /// A record that arrived late for child `ci`: insert it into the timeline, re-derive the child from its
    /// base, and emit the difference from what was emitted: a withdrawal for each alert no longer justified,
    /// each newly justified alert marked as raised late (re-raised under a revised id if it had been
    /// withdrawn). Pending deadlines are whatever the derivation leaves.
    mutating func reconcile(_ ci: Int, late event: TimelineEvent, ref: EventRef, recordedAt: Instant?, into alerts: inout [Alert]) {
        stats.lateEvents += 1
        let id = children[ci].id
        let target = children[ci].now.frontier
        if event.at < children[ci].base.frontier {
            // Older than everything the timeline holds: taken as its first event (stated in README, counted).
            stats.lateBeyondHorizon += 1
            children[ci].insert(event, at: 0)
        } else {
            let i = children[ci].timeline.firstIndex { $0.at > event.at } ?? children[ci].timeline.count
            children[ci].insert(event, at: i)
        }
        let (d, derived) = rederive(ci, through: target)
        let late = LateRecord(eventId: ref.eventId, occurredAt: event.at, recordedAt: recordedAt)
        var out: [Alert] = []
        let justified = Set(derived.lazy.filter { $0.status == .fired }.map(\.alertId))
        for k in children[ci].emitted.indices where !children[ci].emitted[k].withdrawn && children[ci].emitted[k].rule >= 0
            && !justified.contains(children[ci].emitted[k].alertId) {
            children[ci].emitted[k].withdrawn = true
            out.append(withdrawal(of: children[ci].emitted[k], child: id, late: ref, record: late))
            stats.withdrawn += 1
        }
        for var a in derived where a.status == .fired && remember(&a, ci) {
            a.late = late
            stats.raisedLate += 1
            out.append(a)
        }
        stats.alerts += out.count
        children[ci].now = d
        children[ci].dirty = true
        let domain = Int(max(children[ci].domain, 0))
        for p in d.pending { queues[domain].push(Timer(deadline: p.deadline, seq: p.seq, child: Int32(ci), pending: p.id)) }
        alerts += out
    }

    /// Child `ci` derived again from its base over its whole timeline, brought to `target`: the derivation
    /// and the alerts it raises (the child's own `now` and `emitted` are left to the caller).
    mutating func rederive(_ ci: Int, through target: Instant) -> (Derivation, [Alert]) {
        let id = children[ci].id
        var d = children[ci].base
        var x = Deriver.Context(child: id, seq: seq)
        // The timeline read from a copy taken once (through the engine's array, each read of an event copied
        // part of the child), the events' `ignored` marks kept aside and written back after.
        let timeline = children[ci].timeline
        var ignored = [Bool](repeating: false, count: timeline.count)
        // The low 12 bits of the events' id hashes seen so far: an event whose bit is clear has no earlier event of
        // its id, and the scan of them is skipped (it was a tenth of a late record's instructions at 50 events).
        var seen = [UInt64](repeating: 0, count: 64)
        for k in timeline.indices {
            let e = timeline[k]
            let bit = Int(e.idHash & 4095)
            let earlier = seen[bit >> 6] & (1 << UInt64(bit & 63)) != 0
            seen[bit >> 6] |= 1 << UInt64(bit & 63)
            ignored[k] = appliedBefore(k, e, in: timeline, ignored: ignored, folded: children[ci].folded, scan: earlier)
            if ignored[k] { continue }
            let bytes = timeline.buffer
            let p = e.parts(in: bytes)
            let ref = e.ref(p, in: bytes)
            scratch.index(bytes, p.fields, ref: ref, child: id)
            deriver.popDue(&d, through: e.at, &x)
            deriver.apply(scratch, ref: ref, type: c.eventTypeIndex(e.type), to: &d, &x)
        }
        // The child's buffer let go of before the child is written (held, writing it would copy it).
        scratch.release()
        for k in ignored.indices where ignored[k] != timeline[k].ignored { children[ci].setIgnored(k, ignored[k]) }
        deriver.popDue(&d, through: target, &x)
        seq = x.seq
        return (d, x.alerts)
    }

    /// Records fired alert `a` of a re-derivation as emitted for child `ci`; false when it was emitted
    /// already and stands. An alert withdrawn earlier and justified again goes out under a revised id.
    mutating func remember(_ a: inout Alert, _ ci: Int) -> Bool {
        if let k = children[ci].emitted.firstIndex(where: { $0.alertId == a.alertId }) {
            guard children[ci].emitted[k].withdrawn else { return false }
            // Withdrawn earlier, justified again: its id is taken, so it goes out under a revision.
            children[ci].emitted[k].withdrawn = false
            children[ci].emitted[k].revision += 1
            children[ci].emitted[k].rule = Int32(a.ruleIndex)
            let revised = a.alertId + ".r\(children[ci].emitted[k].revision)"
            children[ci].emitted[k].recordId = revised
            a.reinstates = a.alertId
            a.alertId = revised
            stats.reinstated += 1
        } else {
            children[ci].emitted.append(EmittedAlert(alertId: a.alertId, recordId: a.alertId, rule: Int32(a.ruleIndex), firedAt: a.firedAt,
                                                     deadline: a.deadline, trigger: a.evidence[0]))
        }
        return true
    }

    /// Whether event `k` of `timeline` is a duplicate of an event applied before it (earlier in the timeline and
    /// not `ignored`, or folded into the base: `folded`) within the duplicate horizon. The events before it are
    /// looked at only with `scan` (false when none of them can have its id).
    func appliedBefore(_ k: Int, _ e: TimelineEvent, in timeline: Timeline, ignored: [Bool], folded: [SeenEvent], scan: Bool) -> Bool {
        let horizon = limits.duplicateHorizon
        let bytes = timeline.buffer
        // The ids' hashes first (in the events), the ids themselves only where a hash matches.
        let h = e.idHash
        for j in 0..<(scan ? k : 0) where timeline[j].idHash == h {
            let t = timeline[j]
            if !ignored[j] && e.at.micros - t.at.micros <= horizon && t.sameId(as: e, in: bytes) { return true }
        }
        guard !folded.isEmpty else { return false }
        let full = stableHash(e.eventId(in: bytes))
        return folded.contains { $0.idHash == full && abs($0.at.micros - e.at.micros) <= horizon }
    }

    func withdrawal(of a: EmittedAlert, child: String, late: EventRef, record: LateRecord) -> Alert {
        let rule = rules.rules[Int(a.rule)]
        let id = Alert.identity(ruleId: rule.id, childId: child, firedAt: a.firedAt, eventIds: ["withdraws:" + a.recordId, late.eventId])
        return Alert(alertId: id, status: .withdrawn, withdraws: a.recordId, ruleIndex: Int(a.rule), childId: child, firedAt: a.firedAt,
                     deadline: a.deadline, summary: "Withdrawn: event \(late.eventId) was recorded late, and with it in its place this alert is not justified",
                     evidence: [late, a.trigger], late: record)
    }

    /// Folds the events that aged past the horizon (or past the timeline's cap, or beyond the `keeping` newest)
    /// into the base: the base is then the derivation of everything before the timeline, and alerts fired
    /// before it are history.
    mutating func fold(_ ci: Int, keeping: Int? = nil) {
        let oldest = children[ci].now.newest.micros - horizon
        let cap = min(limits.maxTimelinePerChild, keeping ?? Int.max)
        // Most events fold nothing: one read of the child to tell. Past it, the loop removes one event at least.
        guard let head = children[ci].timeline.first, head.at.micros < oldest || children[ci].timeline.count > cap else { return }
        while !children[ci].timeline.isEmpty, children[ci].timeline[0].at.micros < oldest || children[ci].timeline.count > cap {
            if children[ci].timeline[0].at.micros >= oldest && keeping == nil { stats.timelineOverflow += 1 }
            let first = children[ci].removeOldest()
            guard !first.ignored else { continue }
            let id = children[ci].id
            var x = Deriver.Context(child: id, seq: seq)
            let bytes = children[ci].fieldBytes
            let p = first.parts(in: bytes)
            let ref = first.ref(p, in: bytes)
            scratch.index(bytes, p.fields, ref: ref, child: id)
            deriver.popDue(&children[ci].base, through: first.at, &x)
            deriver.apply(scratch, ref: ref, type: c.eventTypeIndex(first.type), to: &children[ci].base, &x)
            scratch.release()
            seq = x.seq
            children[ci].folded.append(SeenEvent(idHash: stableHash(ref.eventId), at: first.at))
            let through = children[ci].base.frontier
            let keep = through.micros - limits.duplicateHorizon
            if let s = children[ci].folded.first, s.at.micros < keep { children[ci].folded.removeAll { $0.at.micros < keep } }
            children[ci].emitted.removeAll { $0.firedAt <= through }
        }
        children[ci].reclaimFields()
    }
}
