import Testing
import VigilRules

/// A zone's offset is looked up through an index of its transitions by span of time; it must be what a search
/// of every transition gives, at the transitions and between them, inside the table's range and outside it.
@Suite struct ZoneTableTests {
    @Test(arguments: ["Europe/London", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia", "Asia/Kolkata", "UTC"])
    func theIndexedOffsetIsTheSearchedOne(_ name: String) throws {
        let zone = try #require(ZoneTable.named(name))
        var instants: [Int64] = []
        // Every transition, a second either side, and every 7 hours from 1890 to 2210.
        for year in stride(from: 1890, through: 2210, by: 1) {
            let start = Int64(year - 1970) * 31_556_952
            for k in 0..<((365 * 24) / 7 + 1) { instants.append(start + Int64(k) * 7 * 3600) }
        }
        for t in zone.transitionInstants { instants += [t - 1, t, t + 1] }
        var differing = 0
        for s in instants where zone.offset(atUTCSeconds: s) != zone.offsetBySearch(atUTCSeconds: s) { differing += 1 }
        #expect(differing == 0, "\(differing) of \(instants.count) instants")
        #expect(name == "UTC" || !zone.transitionInstants.isEmpty)
    }
}
