import ArgumentParser
import Foundation
import VigilKafka
import VigilService

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "audit", abstract: "Work with audit logs: create a sealing key, verify a log.",
                                                    subcommands: [Verify.self, Keygen.self])

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract: "Check an audit log as evidence: its hash chain across segments, its seals against your key, and the heads anchored elsewhere.",
            discussion: """
            PATH is an audit file (the whole log it belongs to is checked: its closed segments beside it, then it), a closed \
            segment, or a directory (every log in it). Give an archive directory and the live one together to check a log \
            whose older segments were moved away.

            Without --key, seals are checked against the key the log names, which proves nothing about who sealed it. \
            Without --anchors, a log cut at a seal, or replaced by an older copy of itself, still verifies.

            Exit status 0 when every log verifies, 1 when one does not (each problem is printed: file, line, what), 2 when \
            something cannot be read.
            """
        )

        @Argument(help: ArgumentHelp("Audit files, segments or directories.", valueName: "PATH")) var paths: [String]
        @Option(help: ArgumentHelp("The log's public key (64 hex digits, or the .pub file vigil audit keygen wrote); repeatable, for a log whose key was changed without the previous key's signature.", valueName: "KEY"))
        var key: [String] = []
        @Option(help: ArgumentHelp("Anchored heads: a file (--audit-anchor-file), or a topic (--audit-anchor-topic) read with --brokers; repeatable.", valueName: "FILE|TOPIC"))
        var anchors: [String] = []
        @Option(help: "Kafka bootstrap servers, to read anchors from a topic.") var brokers: String?
        @Option(name: .customShort("X"), help: ArgumentHelp("A librdkafka property (repeatable).", valueName: "property=value")) var properties: [String] = []

        func run() throws {
            var keys: [String] = []
            for k in key {
                guard let hex = Self.publicKey(k) else {
                    Output.error("--key \(k): not a public key (64 hex digits) nor a file holding one")
                    throw ExitCode(2)
                }
                keys.append(hex)
            }
            var anchored: [AuditAnchor]?
            var unreadable: [String] = []
            for a in anchors {
                do {
                    let got = try readAnchors(a)
                    anchored = (anchored ?? []) + got.anchors
                    unreadable += got.unreadable
                } catch {
                    Output.error("--anchors \(a): \(error)")
                    throw ExitCode(2)
                }
            }
            let (logs, problems) = AuditVerifier.logs(in: paths)
            for p in problems { Output.error(p) }
            if logs.isEmpty {
                Output.error("no audit log in \(paths.joined(separator: ", "))")
                throw ExitCode(2)
            }
            var failed = !problems.isEmpty
            for log in logs {
                let report = AuditVerifier.verify(name: log.name, files: log.files, keys: keys, anchors: anchored)
                for l in report.lines { Output.shared.line(l) }
                failed = failed || !report.ok
            }
            for u in unreadable { Output.shared.line("warning: anchor \(u)") }
            Output.shared.flush()
            if failed { throw ExitCode(1) }
        }

        /// A key given as hex, or a file holding it (the `.pub` file).
        static func publicKey(_ text: String) -> String? {
            if AuditPublicKey(hex: text) != nil { return text }
            guard let data = FileManager.default.contents(atPath: text) else { return nil }
            let s = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return AuditPublicKey(hex: s) != nil ? s : nil
        }

        func readAnchors(_ source: String) throws -> (anchors: [AuditAnchor], unreadable: [String]) {
            if FileManager.default.fileExists(atPath: source) { return try AuditAnchorFile.read(path: source) }
            guard let brokers else {
                throw ValidationError("no such file; to read anchors from the topic \(source), give --brokers")
            }
            var c = KafkaConfig(bootstrapServers: brokers)
            try c.apply(passThrough: properties)
            return try AuditAnchorTopic.read(topic: source, config: c, logger: LoggingSetup.bootstrap(level: .warning))
        }
    }

    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "keygen",
            abstract: "Create a key to seal an audit log with (mode 0600), and its public key beside it (FILE.pub).",
            discussion: """
            One key per audit log (per instance). Keep the key outside the log's directory, readable only by the user \
            vigil runs as, and never in a backup: it evolves at every seal and erases its past, so that whoever takes \
            the host later cannot re-seal what was sealed. The public key (printed, and in FILE.pub) identifies the \
            log: keep a copy where the log's writers cannot change it, and give it to vigil audit verify --key.
            """
        )

        @Argument(help: ArgumentHelp("The key file to create (refused if it exists).", valueName: "FILE")) var file: String

        func run() throws {
            let root: String
            do { root = try AuditKeyFile.generate(path: file) } catch {
                Output.error("vigil audit keygen: \(error)")
                throw ExitCode(1)
            }
            let pub = file + ".pub"
            do { try (root + "\n").write(toFile: pub, atomically: true, encoding: .utf8) } catch {
                Output.error("vigil audit keygen: \(pub): \(error)")
                throw ExitCode(1)
            }
            Output.shared.line(root)
            Output.shared.flush()
            Output.error("key \(file) created (mode 0600); public key above and in \(pub)")
        }
    }
}
