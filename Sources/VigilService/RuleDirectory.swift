import Foundation
import VigilContract
import VigilRules

/// Reads a rule pack directory into memory for the (pure) rule compiler.
public enum RuleDirectory {
    /// Files the pack may hold: rules and tests (YAML) and calendars (CSV).
    static let extensions: Set<String> = ["yaml", "yml", "csv"]
    static let maxFileBytes = 16 * 1024 * 1024

    public struct LoadError: Error, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "\(path): \(reason)" }
    }

    /// Every rule, test and calendar file under `directory`, sorted by path. A single file may be given
    /// instead of a directory.
    public static func load(_ directory: String) throws(LoadError) -> RuleSources {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: directory, isDirectory: &isDir) else {
            throw LoadError(path: directory, reason: "no such file or directory")
        }
        let base = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        if !isDir.boolValue {
            let name = (directory as NSString).lastPathComponent
            return RuleSources(files: [try read(directory, relative: name)])
        }
        guard let walker = fm.enumerator(atPath: base) else {
            throw LoadError(path: directory, reason: "cannot list the directory")
        }
        var rels: [String] = []
        while let rel = walker.nextObject() as? String {
            let name = (rel as NSString).lastPathComponent
            if name.hasPrefix(".") { continue }
            guard extensions.contains((rel as NSString).pathExtension.lowercased()) else { continue }
            rels.append(rel)
        }
        var files: [RuleSources.File] = []
        for rel in rels.sorted() {
            files.append(try read(base + "/" + rel, relative: rel))
        }
        return RuleSources(files: files)
    }

    static func read(_ path: String, relative: String) throws(LoadError) -> RuleSources.File {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LoadError(path: path, reason: "cannot read the file")
        }
        guard data.count <= maxFileBytes else { throw LoadError(path: path, reason: "larger than \(maxFileBytes) bytes") }
        guard let text = String(data: data, encoding: .utf8) else { throw LoadError(path: path, reason: "not UTF-8 text") }
        return RuleSources.File(path: path, relativePath: relative, text: text)
    }

    /// Loads and compiles a pack; the compilation carries any diagnostics.
    public static func compile(_ directory: String, contract: EventContract = .embedded) throws(LoadError) -> RuleCompilation {
        RuleCompiler.compile(try load(directory), contract: contract)
    }
}
