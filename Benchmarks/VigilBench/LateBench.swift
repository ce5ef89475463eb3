import ArgumentParser
import Foundation
import VigilContract
import VigilEngine
import VigilRules
import VigilService
import VigilTesting

/// The cost of a record arriving late: the re-derivation of its child from the base over the timeline, by
/// timeline length.
struct LateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "late", abstract: "The cost of a late record (re-deriving its child) by timeline length.")
    @Option(help: "Rule pack.") var rules = "Rules"
    @Option(help: "Children with the same history; one late record each.") var children = 2000
    @Option(parsing: .upToNextOption, help: "Timeline lengths to measure.") var lengths: [Int] = [10, 25, 50, 100, 200]

    func run() throws { try LateCommand.measure(rules: try compilePack(rules), children: children, lengths: lengths) }

    /// Returns µs per late record by timeline length.
    @discardableResult
    static func measure(rules: CompiledRuleSet, children: Int, lengths: [Int]) throws -> [Int: Double] {
        var result: [Int: Double] = [:]
        print("== a late record: re-deriving its child, by timeline length (\(children) children, one late record each, median of 3)")
        // One child's history: the generator's busiest child over 400 days, at 8 times the routine rate.
        var g = StreamGenerator(.init(children: 40, days: 400, seed: 3, riskRate: 0.5, planRate: 1, rate: 8))
        var byChild: [String: [String]] = [:]
        let decoder = EventDecoder(contract: rules.contract, slots: Engine.decodedSlots(rules))
        var r = decoder.makeRecord()
        g.generate { line in
            _ = decoder.decode(line, into: &r)
            byChild[r[decoder.contract.childIdSlot].string ?? "", default: []].append(line)
        }
        guard let history = byChild.values.max(by: { $0.count < $1.count }) else { return result }
        print("| timeline length | µs per late record | in-order events/s of the same histories |")
        print("|---:|---:|---:|")
        for n in lengths where n <= history.count {
            let events = Array(history.prefix(n))
            let late = n / 2  // the record that arrives last, from the middle of the history
            // The same history for every child, under its own id.
            func record(_ line: String, child k: Int) -> EventRecord {
                var rec = decoder.makeRecord()
                _ = decoder.decode(line, into: &rec)
                rec.set(rules.contract.childIdSlot, .string("C-\(k)"))
                return rec
            }
            var lateTimes: [Double] = []
            var inOrder: [Double] = []
            for _ in 0..<3 {
                var engine = Engine(rules: rules)
                var alerts: [Alert] = []
                let early = (0..<children).map { k in events.enumerated().filter { $0.offset != late }.map { record($0.element, child: k) } }
                let lateRecords = (0..<children).map { record(events[late], child: $0) }
                inOrder.append(Double(children * (n - 1)) / seconds {
                    for k in 0..<children { for rec in early[k] { engine.process(rec, into: &alerts) } }
                })
                alerts.removeAll()
                let before = engine.stats.lateEvents
                lateTimes.append(seconds { for rec in lateRecords { engine.process(rec, into: &alerts) } } / Double(children))
                precondition(engine.stats.lateEvents - before == children, "every record was late")
            }
            lateTimes.sort()
            inOrder.sort()
            print("| \(n) | \(fmt(lateTimes[1] * 1e6, 1)) | \(grouped(inOrder[1])) |")
            result[n] = lateTimes[1] * 1e6
        }
        print("")
        return result
    }
}
