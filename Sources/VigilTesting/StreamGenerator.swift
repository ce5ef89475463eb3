import Foundation
import VigilContract

/// Generates a synthetic, contract-valid multi-agency event stream in event-time order, for benchmarks and
/// demos. Deterministic for a seed: the same options give the same bytes.
///
/// Routine contacts dominate (GP and health-visitor appointments, visits, checks, meetings). Children on a
/// plan are seen by social workers every couple of weeks and have core groups and reviews. A fraction
/// `riskRate` of children carry one planted risk pattern (an unchecked adult, an injury with an implausible
/// explanation, repeated injuries, evidence not shared, ...), counted in `planted`.
public struct StreamGenerator {
    public struct Options: Sendable {
        public var children: Int
        public var days: Int
        public var seed: UInt64
        public var start: Day
        /// Fraction of children with one planted risk pattern.
        public var riskRate: Double
        /// Fraction of children on a child protection plan.
        public var planRate: Double
        /// Multiplies the routine contact rate.
        public var rate: Double

        public init(children: Int, days: Int, seed: UInt64, start: Day = Day(year: 2024, month: 1, day: 1) ?? Day(number: 19723),
                    riskRate: Double = 0.05, planRate: Double = 0.15, rate: Double = 1) {
            self.children = children
            self.days = days
            self.seed = seed
            self.start = start
            self.riskRate = riskRate
            self.planRate = planRate
            self.rate = rate
        }

        /// An alert-dense stream, for the alert path's benchmarks: every child on a plan with a planted risk
        /// pattern, routine contacts at a fifth of the usual rate. About one event in twelve raises an alert with
        /// the shipped pack (5,000 children, 120 days, seed 3: 97,376 events, 8,170 alerts by `vigil replay`).
        public static func alertDense(children: Int, days: Int, seed: UInt64) -> Options {
            Options(children: children, days: days, seed: seed, riskRate: 1, planRate: 1, rate: 0.2)
        }
    }

    public enum Pattern: String, CaseIterable, Sendable {
        case uncheckedAdult = "unchecked-adult"
        case implausibleInjury = "implausible-injury"
        case repeatedInjuries = "repeated-injuries"
        case infantInjury = "infant-injury"
        case evidenceNotShared = "evidence-not-shared"
        case referralUndecided = "referral-undecided"
        case investigationDrift = "investigation-drift"
        case multiAgency = "multi-agency-concerns"
        case missedVisits = "missed-visits"
        case toxicTrio = "toxic-trio"
        case missedAppointments = "missed-appointments"
    }

    /// How a child's mobility is recorded: from their age (not mobile under 8 months), as unknown, or not at all.
    enum MobilityRecord { case byAge, unknown, absent }

    struct Child {
        var id: String
        var dob: Day
        var mobility: MobilityRecord
        var household: String
        var onPlan: Bool
        var previousPlans: Int
        var pattern: Pattern?
        var patternDay: Int
        var nextRef: Int = 0
    }

    /// An event waiting in a day bucket: what to write, for whom, and when in the day.
    struct Planned {
        var child: Int32
        var second: Int32
        var kind: Kind
        var arg: Int32 = 0
    }

    enum Kind: UInt8 {
        case routine, socialWorkerVisit, coreGroup, reviewConference, planStart
        case referralPending, referralDecision, assessmentDone, checkAdult
        case householdAdult, implausibleInjury, injury, evidenceRecorded, evidenceShared
        case investigationOpened, investigationActivity, investigationClosed
        case concernSchool, concernHospital, concernPolice, riskFactor, notBrought, section47Started
    }

    public let options: Options
    var rng: SplitMix64
    var children: [Child] = []
    var buckets: [[Planned]]
    var eventCounter = 0
    public private(set) var planted: [Pattern: Int] = [:]
    public private(set) var eventsWritten = 0

    public init(_ options: Options) {
        self.options = options
        rng = SplitMix64(state: options.seed &* 0x9E37_79B9_7F4A_7C15 &+ 1)
        buckets = Array(repeating: [], count: max(options.days, 0) + 1)
    }

    mutating func uniform() -> Double { Double(rng.next() >> 11) / Double(1 << 53) }
    mutating func int(_ n: Int) -> Int { n <= 1 ? 0 : Int(rng.next() % UInt64(n)) }
    /// A gap in days, exponential with the given mean, at least 1.
    mutating func gap(_ mean: Double) -> Int {
        let u = max(uniform(), 1e-12)
        return max(1, Int((-mean * log(u)).rounded()))
    }

    mutating func plan(_ day: Int, _ p: Planned) {
        guard day >= 0, day < options.days else { return }
        buckets[day].append(p)
    }

    /// A time of day (seconds), office hours mostly.
    mutating func officeSecond() -> Int32 { Int32(8 * 3600 + int(10 * 3600)) }

    /// Writes every event, one JSON line at a time, through `emit`.
    public mutating func generate(_ emit: (String) -> Void) {
        setUp()
        for day in 0..<options.days {
            var today = buckets[day]
            buckets[day] = []
            today.sort { ($0.second, $0.child, $0.kind.rawValue) < ($1.second, $1.child, $1.kind.rawValue) }
            for p in today {
                if let line = render(p, day: day) {
                    emit(line)
                    eventsWritten += 1
                }
            }
        }
    }

    mutating func setUp() {
        let n = options.children
        children.reserveCapacity(n)
        for i in 0..<n {
            let ageDays = uniform() < 0.12 ? int(330) : 365 + int(15 * 365)
            let dob = options.start.adding(days: -ageDays)
            var mobility = MobilityRecord.byAge
            let m = uniform()
            if m < 0.05 { mobility = .unknown } else if m < 0.12 { mobility = .absent }
            let onPlan = uniform() < options.planRate
            var child = Child(id: "C\(i)", dob: dob, mobility: mobility, household: "H\(i)", onPlan: onPlan,
                              previousPlans: onPlan && uniform() < 0.25 ? 1 : 0, pattern: nil, patternDay: 0)
            if uniform() < options.riskRate {
                var p = Pattern.allCases[int(Pattern.allCases.count)]
                if (p == .missedVisits || p == .missedAppointments) && !onPlan { p = .implausibleInjury }
                if p == .infantInjury || p == .toxicTrio {
                    // Make the child an infant so the pattern means something.
                    child.dob = options.start.adding(days: -int(90))
                    child.mobility = p == .infantInjury ? .absent : .byAge
                }
                child.pattern = p
                child.patternDay = int(max(1, options.days * 3 / 4))
                planted[p, default: 0] += 1
            }
            children.append(child)
            let c = Int32(i)
            // Routine contacts, on average every 30 days (scaled by rate).
            plan(gap(30 / options.rate) - 1, Planned(child: c, second: officeSecond(), kind: .routine))
            if onPlan {
                let startDay = int(min(30, max(1, options.days)))
                plan(startDay, Planned(child: c, second: officeSecond(), kind: .planStart))
            }
            if let p = child.pattern { schedule(p, child: c, day: child.patternDay) }
        }
    }

    mutating func schedule(_ p: Pattern, child c: Int32, day: Int) {
        let s = officeSecond()
        switch p {
        case .uncheckedAdult:
            // The rule concerns children on a plan: make sure this one is.
            if !children[Int(c)].onPlan { plan(max(0, day - 3), Planned(child: c, second: s, kind: .planStart, arg: 1)) }
            plan(day, Planned(child: c, second: s, kind: .householdAdult))
        case .implausibleInjury: plan(day, Planned(child: c, second: s, kind: .implausibleInjury))
        case .repeatedInjuries:
            plan(day, Planned(child: c, second: s, kind: .injury))
            plan(day + 20 + int(20), Planned(child: c, second: s, kind: .injury))
            plan(day + 50 + int(20), Planned(child: c, second: s, kind: .injury))
        case .infantInjury: plan(day % 60, Planned(child: c, second: s, kind: .injury))
        case .evidenceNotShared:
            if !children[Int(c)].onPlan { plan(max(0, day - 1), Planned(child: c, second: s, kind: .section47Started)) }
            plan(day, Planned(child: c, second: s, kind: .evidenceRecorded, arg: 1))
        case .referralUndecided: plan(day, Planned(child: c, second: s, kind: .referralPending, arg: 1))
        case .investigationDrift: plan(day, Planned(child: c, second: s, kind: .investigationOpened, arg: 1))
        case .multiAgency:
            plan(day, Planned(child: c, second: s, kind: .concernSchool))
            plan(day + 2, Planned(child: c, second: s, kind: .concernHospital))
            plan(day + 5, Planned(child: c, second: s, kind: .concernPolice))
        case .missedVisits: break  // visits simply stop (see socialWorkerVisit)
        case .toxicTrio: plan(day % 60, Planned(child: c, second: s, kind: .riskFactor))
        case .missedAppointments:
            plan(day, Planned(child: c, second: s, kind: .notBrought))
            plan(day + 10 + int(30), Planned(child: c, second: s, kind: .notBrought))
        }
    }

    /// Renders one planned event and schedules what follows from it.
    mutating func render(_ p: Planned, day: Int) -> String? {
        let ci = Int(p.child)
        let date = options.start.adding(days: day)
        let at = Instant(micros: (Int64(date.number) * 86_400 + Int64(p.second)) * Instant.microsPerSecond)
        let c = children[ci]
        let pattern = c.pattern
        var type = ""
        var agency = ""
        var data: [(String, JSONValue)] = []
        func s(_ v: String) -> JSONValue { .string(v) }
        func ref(_ prefix: String) -> String {
            children[ci].nextRef += 1
            return "\(prefix)\(ci)-\(children[ci].nextRef)"
        }
        switch p.kind {
        case .routine:
            let r = uniform()
            if r < 0.45 {
                type = "appointment"
                agency = uniform() < 0.5 ? "gp" : "health_visiting"
                let nb = uniform() < 0.04
                data = [("service", s(agency == "gp" ? "gp" : "health_visitor")), ("outcome", s(nb ? "was_not_brought" : "attended"))]
            } else if r < 0.70 {
                type = "home_visit"
                agency = "health_visiting"
                data = [("announced", .bool(true)), ("access", s("granted")), ("child_seen", .bool(true))]
            } else if r < 0.80 {
                type = "medical_examination"
                agency = "gp"
                data = [("examiner", s("gp")), ("complete", .bool(true)), ("records_available", .bool(true)), ("opinion", s("accidental"))]
            } else if r < 0.88 {
                type = "injury_observed"
                agency = uniform() < 0.5 ? "gp" : "hospital"
                data = [("injury", s(uniform() < 0.8 ? "bruise" : "laceration")), ("count", .number(1, integer: 1)),
                        ("explanation", s("playground")), ("explanation_assessment", s("consistent"))]
            } else if r < 0.94 {
                type = "referral"
                agency = "children_social_care"
                let rr = ref("R")
                data = [("referral_ref", s(rr)), ("referrer_agency", s("school")), ("concerns", .array([s("neglect")])), ("decision", s("pending"))]
                // Decided on the next working day (Friday's on Monday).
                let next = date.isoWeekday == 5 ? 3 : date.isoWeekday == 6 ? 2 : 1
                plan(day + next, Planned(child: p.child, second: p.second, kind: .referralDecision, arg: Int32(children[ci].nextRef)))
            } else {
                type = "assessment"
                agency = "children_social_care"
                let ar = ref("A")
                data = [("assessment_ref", s(ar)), ("status", s("started"))]
                plan(day + 20 + int(30), Planned(child: p.child, second: p.second, kind: .assessmentDone, arg: Int32(children[ci].nextRef)))
            }
            // Routine injuries happen to children who move about; a baby's bruise is never routine.
            if type == "injury_observed", date.number - c.dob.number < 240 { type = "appointment"; agency = "gp"; data = [("service", s("gp")), ("outcome", s("attended"))] }
            plan(day + gap(30 / options.rate), Planned(child: p.child, second: officeSecond(), kind: .routine))
        case .section47Started:
            type = "section_47_enquiry"
            agency = "children_social_care"
            data = [("enquiry_ref", s(ref("S"))), ("status", s("started"))]
        case .planStart:
            if p.arg == 1 { children[ci].onPlan = true }
            type = "plan_status"
            agency = "children_social_care"
            data = [("status", s("started")), ("category", s("neglect")), ("previous_plans", .number(Double(c.previousPlans), integer: Int64(c.previousPlans)))]
            plan(day + 5 + int(4), Planned(child: p.child, second: officeSecond(), kind: .socialWorkerVisit))
            plan(day + 12, Planned(child: p.child, second: officeSecond(), kind: .coreGroup))
            plan(day + 80 + int(8), Planned(child: p.child, second: officeSecond(), kind: .reviewConference))
        case .socialWorkerVisit:
            type = "home_visit"
            agency = "children_social_care"
            data = [("announced", .bool(uniform() < 0.7)), ("access", s("granted")), ("child_seen", .bool(true)), ("child_seen_alone", .bool(uniform() < 0.5))]
            let stop = pattern == .missedVisits && day >= c.patternDay
            plan(day + (stop ? 30 : 7 + int(4)), Planned(child: p.child, second: officeSecond(), kind: .socialWorkerVisit))
            let r = uniform()
            if r < 0.08 {
                plan(day, Planned(child: p.child, second: p.second + 600, kind: .checkAdult))
            } else if r < 0.12 {
                plan(day, Planned(child: p.child, second: p.second + 900, kind: .evidenceRecorded))
            } else if r < 0.15 {
                plan(day + 1, Planned(child: p.child, second: officeSecond(), kind: .investigationOpened))
            }
        case .coreGroup:
            type = "core_group"
            agency = "children_social_care"
            data = [("attending_agencies", .array([s("children_social_care"), s("health_visiting"), s("school")]))]
            plan(day + 42, Planned(child: p.child, second: officeSecond(), kind: .coreGroup))
        case .reviewConference:
            type = "case_conference"
            agency = "children_social_care"
            data = [("kind", s("review")), ("invited_agencies", .array([s("children_social_care"), s("health_visiting")])),
                    ("attending_agencies", .array([s("children_social_care"), s("health_visiting")])), ("decision", s("continue_plan"))]
            plan(day + 170 + int(10), Planned(child: p.child, second: officeSecond(), kind: .reviewConference))
        case .referralPending:
            type = "referral"
            agency = "children_social_care"
            data = [("referral_ref", s(ref("R"))), ("referrer_agency", s("police")), ("concerns", .array([s("physical_abuse")])), ("decision", s("pending"))]
        case .referralDecision:
            type = "referral"
            agency = "children_social_care"
            data = [("referral_ref", s("R\(ci)-\(p.arg)")), ("referrer_agency", s("school")), ("concerns", .array([s("neglect")])),
                    ("decision", s(uniform() < 0.7 ? "no_further_action" : "early_help"))]
        case .assessmentDone:
            type = "assessment"
            agency = "children_social_care"
            data = [("assessment_ref", s("A\(ci)-\(p.arg)")), ("status", s("completed"))]
        case .checkAdult:
            type = "background_check"
            agency = "police"
            data = [("person_ref", s("P\(ci)-1")), ("check", s("police_national")), ("result", s("no_trace"))]
        case .householdAdult:
            type = "household_member"
            agency = "children_social_care"
            data = [("person_ref", s("P\(ci)-9")), ("relationship", s("lodger")), ("sex", s("male")), ("reported_in", s("home_visit"))]
        case .implausibleInjury:
            type = "injury_observed"
            agency = "hospital"
            data = [("injury", s("bruise")), ("sites", .array([s("face")])), ("count", .number(3, integer: 3)),
                    ("explanation", s("fell")), ("explanation_assessment", s("implausible")), ("photographed", .bool(true))]
        case .injury:
            type = "injury_observed"
            agency = "gp"
            data = [("injury", s("bruise")), ("count", .number(2, integer: 2)), ("explanation_assessment", s("inadequate"))]
        case .evidenceRecorded:
            type = "evidence_recorded"
            agency = "children_social_care"
            data = [("evidence_ref", s(ref("EV"))), ("kind", s("interview_recording")), ("holder_agency", s("children_social_care"))]
            if p.arg == 0 {  // routine: shared with the police within hours
                plan(day, Planned(child: p.child, second: min(p.second + 3600, 86_000), kind: .evidenceShared, arg: Int32(children[ci].nextRef)))
            }
        case .evidenceShared:
            type = "evidence_shared"
            agency = "children_social_care"
            data = [("evidence_ref", s("EV\(ci)-\(p.arg)")), ("shared_with", .array([s("police")]))]
        case .investigationOpened:
            type = "police_investigation"
            agency = "police"
            data = [("investigation_ref", s(ref("INV"))), ("status", s("opened")), ("offence_date", s(date.description))]
            if p.arg == 0 {  // routine: worked on, then closed
                let n = Int32(children[ci].nextRef)
                plan(day + 7 + int(10), Planned(child: p.child, second: officeSecond(), kind: .investigationActivity, arg: n))
                plan(day + 20 + int(5), Planned(child: p.child, second: officeSecond(), kind: .investigationClosed, arg: n))
            }
        case .investigationActivity, .investigationClosed:
            type = "police_investigation"
            agency = "police"
            data = [("investigation_ref", s("INV\(ci)-\(p.arg)")), ("status", s(p.kind == .investigationClosed ? "closed" : "activity"))]
        case .concernSchool:
            type = "referral"
            agency = "children_social_care"
            data = [("referral_ref", s(ref("R"))), ("referrer_agency", s("school")), ("decision", s("assessment"))]
        case .concernHospital:
            type = "unscheduled_care"
            agency = "hospital"
            data = [("setting", s("emergency_department")), ("reason", s("injury")), ("plan_flag_seen", .bool(false))]
        case .concernPolice:
            type = "household_member"
            agency = "police"
            data = [("person_ref", s("P\(ci)-7")), ("relationship", s("friend")), ("reported_in", s("police_intelligence"))]
        case .riskFactor:
            type = "parental_risk_factor"
            agency = "probation"
            data = [("person_ref", s("P\(ci)-2")), ("factor", s("substance_misuse")), ("status", s("active"))]
        case .notBrought:
            type = "appointment"
            agency = "community_health"
            data = [("service", s("paediatric_clinic")), ("outcome", s("was_not_brought"))]
        }
        eventCounter += 1
        var child: [(String, JSONValue)] = [("id", s(c.id)), ("date_of_birth", s(c.dob.description))]
        switch c.mobility {
        case .byAge: child.append(("mobility", s(date.number - c.dob.number < 240 ? "not_independently_mobile" : "mobile")))
        case .unknown: child.append(("mobility", s("unknown")))
        case .absent: break
        }
        var doc: [(String, JSONValue)] = [
            ("schema_version", .number(1, integer: 1)),
            ("event_id", s("E\(eventCounter)")),
            ("type", s(type)),
            ("occurred_at", s(at.description)),
            ("agency", s(agency)),
            ("source_system", s("generator")),
            ("child", .object(child)),
            ("household_id", s(c.household)),
            ("data", .object(data)),
        ]
        if uniform() < 0.2 {
            doc.insert(("recorded_at", s((at + Int64(1 + int(72)) * Instant.microsPerHour).description)), at: 4)
        }
        return JSONValue.object(doc).jsonText
    }
}

/// SplitMix64: small, fast and deterministic.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(state: UInt64) { self.state = state }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

