import ArgumentParser
import VigilContract
import VigilService
import VigilTesting

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Write a synthetic, contract-valid multi-agency event stream (JSON Lines, event-time order) to standard output.",
        discussion: """
        Deterministic for a seed. Routine contacts dominate; a fraction of children (--risk-rate) carry one planted \
        risk pattern, counted on standard error. For benchmarks and demos: the data is invented.
        """
    )

    @Option(help: "Number of children.") var children: Int = 1000
    @Option(help: "Number of days, from --start.") var days: Int = 365
    @Option(help: "Random seed.") var seed: UInt64 = 1
    @Option(help: ArgumentHelp("First day (YYYY-MM-DD).", valueName: "DATE")) var start: String = "2024-01-01"
    @Option(help: "Fraction of children with a planted risk pattern.") var riskRate: Double = 0.05
    @Option(help: "Fraction of children on a child protection plan.") var planRate: Double = 0.15
    @Option(help: "Multiplier of the routine contact rate.") var rate: Double = 1
    @Option(help: ArgumentHelp("Make PCT percent of records arrive (and be recorded) MIN to MAX days after they occurred, e.g. 10:1-20: the output is then in arrival order, not event-time order.", valueName: "PCT:MIN-MAX"))
    var late: String?
    @Flag(help: "An alert-dense stream (every child on a plan with a planted risk pattern, routine contacts at a fifth of the rate: about one event in twelve raises an alert); replaces --risk-rate, --plan-rate and --rate.")
    var alertDense = false

    func validate() throws {
        guard children > 0 else { throw ValidationError("--children must be positive") }
        guard days > 0, days <= 36_500 else { throw ValidationError("--days must be between 1 and 36500") }
        guard RFC3339.parseDate(start) != nil else { throw ValidationError("--start must be a date such as 2024-01-01") }
        guard (0...1).contains(riskRate), (0...1).contains(planRate) else { throw ValidationError("--risk-rate and --plan-rate are fractions between 0 and 1") }
        guard rate > 0, rate <= 100 else { throw ValidationError("--rate must be in (0, 100]") }
        if let late, LateArrivals(spec: late, seed: seed) == nil {
            throw ValidationError("--late must be PCT:MIN-MAX, a percentage and a range of days, such as 10:1-20")
        }
    }

    func run() throws {
        guard let first = RFC3339.parseDate(start) else { throw ValidationError("--start must be a date") }
        var options = StreamGenerator.Options(children: children, days: days, seed: seed, start: first, riskRate: riskRate, planRate: planRate, rate: rate)
        if alertDense {
            options = .alertDense(children: children, days: days, seed: seed)
            options.start = first
        }
        var g = StreamGenerator(options)
        var perturb = late.flatMap { LateArrivals(spec: $0, seed: seed) }
        if perturb != nil {
            g.generate { perturb?.add($0) { Output.shared.line($0) } }
            perturb?.finish { Output.shared.line($0) }
        } else {
            g.generate { Output.shared.line($0) }
        }
        Output.shared.flush()
        let planted = g.planted.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) \($0.value)" }.joined(separator: ", ")
        let lateNote = perturb.map { "; \($0.delayed) records arriving late" } ?? ""
        Output.error("generate: \(g.eventsWritten) events, \(children) children, \(days) days, seed \(seed)\(lateNote); planted: \(planted.isEmpty ? "none" : planted)")
    }
}
