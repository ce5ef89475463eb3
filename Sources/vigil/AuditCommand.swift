import ArgumentParser
import VigilService

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "audit", abstract: "Work with audit logs.", subcommands: [Verify.self])

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract: "Check an audit log's hash chain: OK and the count, or the first bad record (line and reason).",
            discussion: "Exit status 0 when intact, 1 when a record was modified, deleted, inserted, reordered or truncated, 2 when the file cannot be read. Compare the printed head with one recorded elsewhere to detect removal of the last records."
        )

        @Argument(help: "The audit log file.") var file: String

        func run() throws {
            let verdict: AuditLog.Verdict
            do { verdict = try AuditLog.verify(path: file) } catch {
                Output.error("\(file): cannot read: \(error)")
                throw ExitCode(2)
            }
            switch verdict {
            case .ok(let count, let seq, let hash):
                Output.shared.line("OK \(count) records; head seq \(seq) sha256 \(hash)")
                Output.shared.flush()
            case .bad(let line, let reason):
                Output.shared.line("\(file):\(line): \(reason)")
                Output.shared.flush()
                throw ExitCode(1)
            }
        }
    }
}
