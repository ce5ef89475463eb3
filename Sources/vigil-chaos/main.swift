import ArgumentParser
import Foundation
import VigilChaos

/// `vigil-chaos`: kill -9 `vigil run` instances at random while they work through a generated stream, then
/// check that the alerts topic and the audit logs hold exactly what `vigil replay` gives.
struct ChaosCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigil-chaos",
        abstract: "Chaos test: SIGKILL vigil run instances at random, then check nothing was lost or duplicated.",
        discussion: """
            Starts `vigil broker`, produces a generated stream, runs --instances `vigil run` processes in one \
            consumer group, SIGKILLs a random instance --kills times at random moments (restarting each after a \
            random pause), and stops them once every expected alert is out. It then checks that the alert ids on \
            the alerts topic, and in the audit logs together, equal `vigil replay --until now` on the same \
            stream, that no audit log holds an id twice, and that every deadline fired. It prints the counts.
            A temporary work directory is removed when the run passes and kept when it fails; one given with \
            --work-dir is always kept.
            Exit status: 0 pass, 1 fail, 2 the run could not be set up.
            """)

    @Option(help: "The vigil executable (default: next to this one).") var vigil: String?
    @Option(help: "Rule pack directory.") var rules = "Rules"
    @Option(help: "Working directory (stream, audit logs, instance logs); default a new temporary one.") var workDir: String?
    @Option(help: "Events in the generated stream.") var events = 200_000
    @Option(help: "Partitions of every topic (the embedded broker keeps ~5 MiB each).") var partitions = 16
    @Option(help: "vigil run instances.") var instances = 3
    @Option(help: "SIGKILLs.") var kills = 10
    @Option(help: "Random seed (stream and schedule).") var seed: UInt64 = 1
    @Option(help: "Shortest and longest pause between kills, in seconds (MIN...MAX).") var killGap = "0.5...4"
    @Option(help: "Checkpoint interval of the instances, in ms.") var checkpointIntervalMs = 1000
    @Option(help: "Batch size of the instances.") var batchSize = 200
    @Flag(help: "Produce with random keys and run the instances with --repartition.") var randomKeys = false
    @Flag(help: "Static membership: instance i runs with --instance-id chaos-i across its restarts.") var staticMembership = false
    @Option(help: ArgumentHelp("Records arriving late, as vigil generate --late: PCT:MIN-MAX (percent, days), e.g. 10:1-20.", valueName: "PCT:MIN-MAX"))
    var late: String?
    @Option(help: "Give up after this many seconds.") var timeout: Double = 1200

    func run() throws {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let vigilPath = vigil ?? (URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("vigil").path)
        guard FileManager.default.isExecutableFile(atPath: vigilPath) else {
            throw ValidationError("no vigil executable at \(vigilPath) (build it, or pass --vigil)")
        }
        let gap = killGap.components(separatedBy: "...").compactMap { Double($0) }
        guard gap.count == 2, gap[0] >= 0, gap[0] <= gap[1] else { throw ValidationError("--kill-gap must look like 0.5...4") }
        let dir = workDir ?? (NSTemporaryDirectory() + "vigil-chaos-\(UUID().uuidString.prefix(8))")
        var plan = ChaosPlan(vigil: vigilPath, rules: rules, workDir: dir)
        plan.events = events
        plan.partitions = partitions
        plan.instances = instances
        plan.kills = kills
        plan.seed = seed
        plan.killGap = gap[0]...gap[1]
        plan.checkpointIntervalMs = checkpointIntervalMs
        plan.batchSize = batchSize
        plan.randomKeys = randomKeys
        plan.staticMembership = staticMembership
        plan.late = late
        plan.timeout = timeout
        FileHandle.standardOutput.write(Data("work directory: \(dir)\n".utf8))
        let report: ChaosReport
        do {
            report = try Chaos.run(plan) { FileHandle.standardOutput.write(Data(($0 + "\n").utf8)) }
        } catch {
            FileHandle.standardError.write(Data("vigil-chaos: \(error) (work directory kept: \(dir))\n".utf8))
            throw ExitCode(2)
        }
        print(report.text)
        guard report.passed else {
            print("work directory kept for inspection: \(dir)")
            throw ExitCode(1)
        }
        // A temporary directory of a run that passed holds nothing to look at (tens of MiB of stream, logs and
        // audit logs): removed. One given with --work-dir, or of a run that failed or could not be set up, stays.
        if workDir == nil {
            do {
                try FileManager.default.removeItem(atPath: dir)
                print("work directory removed (the run passed; --work-dir keeps one)")
            } catch {
                FileHandle.standardError.write(Data("vigil-chaos: could not remove the work directory \(dir): \(error)\n".utf8))
            }
        }
    }
}

ChaosCommand.main()
