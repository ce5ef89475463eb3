import Foundation
import VigilContract
import VigilRules
import VigilService

/// A rule pack with edits, for tests of rule changes: the files of a pack directory, each replacement applied
/// (each must match exactly once), extra files added; compiled, or written out as a directory.
public struct EditedPack: Sendable {
    public var files: [String: String]

    /// The pack in `directory` as it is.
    public init(_ directory: String) throws {
        let sources = try RuleDirectory.load(directory)
        files = Dictionary(sources.files.map { ($0.relativePath, $0.text) }, uniquingKeysWith: { a, _ in a })
    }

    public struct EditError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Replaces `old` by `new` in `file`; `old` must occur exactly once.
    public func replacing(_ old: String, with new: String, in file: String) throws -> EditedPack {
        guard let text = files[file] else { throw EditError(description: "no file \(file) in the pack") }
        let parts = text.components(separatedBy: old)
        guard parts.count == 2 else { throw EditError(description: "'\(old)' occurs \(parts.count - 1) times in \(file), not once") }
        var copy = self
        copy.files[file] = parts.joined(separator: new)
        return copy
    }

    /// Adds `text` at the end of `file` (a new file if there is none).
    public func appending(_ text: String, to file: String) -> EditedPack {
        var copy = self
        copy.files[file, default: ""] += text
        return copy
    }

    /// The files as a compiler reads them.
    public var sources: RuleSources {
        RuleSources(files: files.sorted { $0.key < $1.key }.map { RuleSources.File(path: $0.key, relativePath: $0.key, text: $0.value) })
    }

    /// The pack compiled (its tests are not run); throws with the first diagnostics when it does not compile.
    public func compile() throws -> CompiledRuleSet {
        let c = RuleCompiler.compile(sources, contract: .embedded)
        guard let set = c.ruleSet else { throw EditError(description: c.report) }
        return set
    }

    /// Writes the pack to `directory` (created, with subdirectories).
    public func write(to directory: String) throws {
        for (rel, text) in files {
            let path = directory + "/" + rel
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
    }
}
