import VigilContract

/// The alerts that stand once withdrawals are taken into account: what the emitted records of a run mean,
/// to compare with `vigil replay` of the same events in event-time order.
///
/// Independent of the order records are read in (several partitions, several audit logs, re-emissions
/// after a crash): an alert re-raised after a withdrawal carries its replay id in `reinstates` and a higher
/// revision (`<id>.r<n>`), and is raised only after the revision before it was withdrawn. So an alert stands
/// when its highest fired revision has no withdrawal.
public struct NetAlerts: Sendable {
    /// By replay id: the highest fired revision and its record id.
    private var latest: [String: (revision: Int, record: String)] = [:]
    /// Record ids withdrawn.
    private var withdrawn = Set<String>()

    public init() {}

    /// Applies one record: its id, status (`fired` or `withdrawn`), and `withdraws`/`reinstates` fields.
    public mutating func apply(id: String, status: String, withdraws: String?, reinstates: String?) {
        if status == "withdrawn" {
            if let target = withdraws { withdrawn.insert(target) }
            return
        }
        let base = reinstates ?? id
        let revision = Self.revision(of: id)
        if revision >= latest[base]?.revision ?? -1 { latest[base] = (revision, id) }
    }

    /// Applies one alert record read back as JSON (from the alerts topic, an audit log, `vigil replay`): its
    /// `alert_id`, `status`, `withdraws` and `reinstates`. A record without an `alert_id` is not an alert and
    /// is passed over; one without a `status` is taken as fired.
    public mutating func apply(record v: JSONValue) {
        guard let id = v["alert_id"]?.stringValue else { return }
        apply(id: id, status: v["status"]?.stringValue ?? "fired", withdraws: v["withdraws"]?.stringValue, reinstates: v["reinstates"]?.stringValue)
    }

    public mutating func apply(_ a: Alert) {
        apply(id: a.alertId, status: a.status.rawValue, withdraws: a.withdraws, reinstates: a.reinstates)
    }

    /// The replay ids of the alerts that stand.
    public var ids: Set<String> { Set(latest.filter { !withdrawn.contains($0.value.record) }.keys) }

    /// Records of withdrawals seen.
    public var withdrawals: Int { withdrawn.count }

    static func revision(of id: String) -> Int {
        guard let dot = id.lastIndex(of: "."), id[id.index(after: dot)...].first == "r" else { return 0 }
        return Int(id[id.index(dot, offsetBy: 2)...]) ?? 0
    }
}
