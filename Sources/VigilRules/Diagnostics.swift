/// A rule pack's files, held in memory: the compiler itself does no I/O.
public struct RuleSources: Sendable {
    public struct File: Sendable {
        /// Path as shown in diagnostics (the directory as the user typed it, joined with `relativePath`).
        public let path: String
        /// Path inside the pack; decides whether a file is a rule file or a test file.
        public let relativePath: String
        public let text: String
        public init(path: String, relativePath: String? = nil, text: String) {
            self.path = path
            self.relativePath = relativePath ?? path
            self.text = text
        }
    }

    public var files: [File]

    public init(files: [File]) { self.files = files }

    /// The file at `path`, however the directory was named (`./x.csv` and `x.csv` are one file).
    public func file(_ path: String) -> File? {
        let wanted = PackCompiler.normalize(path)
        return files.first { PackCompiler.normalize($0.path) == wanted }
    }
}

/// A position in a rule file: 1-based line and column (columns count Unicode scalars).
public struct SourceLocation: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }

    public static func < (a: SourceLocation, b: SourceLocation) -> Bool {
        (a.file, a.line, a.column) < (b.file, b.line, b.column)
    }
}

/// Every class of problem the rule compiler reports. The raw value is the code printed in `error[CODE]`.
public enum DiagnosticCode: String, Sendable, CaseIterable {
    case yamlSyntax = "yaml-syntax"
    case notAList = "not-a-list"
    case unknownItem = "unknown-item"
    case unknownKey = "unknown-key"
    case missingKey = "missing-key"
    case badValue = "bad-value"
    case duplicate = "duplicate"
    case badName = "bad-name"
    case badSeverity = "bad-severity"
    case syntax = "syntax"
    case unknownField = "unknown-field"
    case fieldNotOnType = "field-not-on-type"
    case unknownEventType = "unknown-event-type"
    case badEnumValue = "bad-enum-value"
    case typeMismatch = "type-mismatch"
    case unknownMacro = "unknown-macro"
    case unknownList = "unknown-list"
    case macroCycle = "macro-cycle"
    case unknownState = "unknown-state"
    case badDuration = "bad-duration"
    case unknownCalendar = "unknown-calendar"
    case badCalendar = "bad-calendar"
    case badTemplate = "bad-template"
    case freeTextInOutput = "free-text-in-output"
    case neverMatches = "never-matches"
    case badContext = "bad-context"
    case badCorrelation = "bad-correlation"
    case duplicateKey = "duplicate-key"
    case badTest = "bad-test"
    /// A lint warning: a macro, list or state that no rule uses.
    case unused = "unused"
    /// A lint warning: a rule whose conditions are another rule's.
    case duplicateRule = "duplicate-rule"
    /// A lint warning: a suppression shorter than a window the rule counts over.
    case shortSuppression = "short-suppression"
    /// A lint warning: a test event whose agency is the built-in default.
    case impliedDefault = "implied-default"
}

/// One problem found while loading rules or rule tests.
public struct Diagnostic: Sendable, CustomStringConvertible, Equatable {
    public enum Severity: String, Sendable { case error, warning, note }
    public var severity: Severity
    public var code: DiagnosticCode
    public var message: String
    public var location: SourceLocation
    public var notes: [String]

    public init(_ severity: Severity = .error, _ code: DiagnosticCode, _ message: String, at location: SourceLocation, notes: [String] = []) {
        self.severity = severity
        self.code = code
        self.message = message
        self.location = location
        self.notes = notes
    }

    /// `file:line:col: error[CODE]: message`
    public var description: String { "\(location): \(severity.rawValue)[\(code.rawValue)]: \(message)" }

    /// The one-line form, then the offending source line with a caret under the column, then any notes.
    public func rendered(sources: RuleSources) -> String {
        var out = description
        if let file = sources.file(location.file) {
            let lines = file.text.split(separator: "\n", omittingEmptySubsequences: false)
            if location.line >= 1, location.line <= lines.count {
                let line = String(lines[location.line - 1]).replacingOccurrences(of: "\t", with: " ")
                let gutter = String(location.line)
                out += "\n \(gutter) | \(line)"
                let caretPad = String(repeating: " ", count: max(0, location.column - 1))
                out += "\n \(String(repeating: " ", count: gutter.count)) | \(caretPad)^"
            }
        }
        for n in notes { out += "\n  = note: \(n)" }
        return out
    }
}

/// Collects diagnostics, keeping the first of any exact repeats (a macro used by ten rules reports once).
public struct DiagnosticBag: Sendable {
    public private(set) var items: [Diagnostic] = []
    private var seen = Set<String>()

    public init() {}

    public mutating func add(_ d: Diagnostic) {
        if seen.insert(d.description).inserted { items.append(d) }
    }

    public mutating func error(_ code: DiagnosticCode, _ message: String, at loc: SourceLocation, notes: [String] = []) {
        add(Diagnostic(.error, code, message, at: loc, notes: notes))
    }

    public var hasErrors: Bool { items.contains { $0.severity == .error } }

    public var sorted: [Diagnostic] { items.sorted { $0.location < $1.location } }
}

/// Maps offsets in a YAML scalar's value back to file positions.
///
/// A scalar may be plain, quoted, literal or folded, and may span lines, so the value's characters are
/// aligned greedily against the file text from the scalar's start: every non-blank character of the value
/// appears in the file, in order.
public struct ScalarSource: Sendable {
    public let file: String
    public let line: Int
    public let column: Int
    public let value: String
    let fileText: String?

    public init(file: String, line: Int, column: Int, value: String, fileText: String?) {
        self.file = file
        self.line = line
        self.column = column
        self.value = value
        self.fileText = fileText
    }

    public var start: SourceLocation { SourceLocation(file: file, line: line, column: column) }

    /// The text of a span of the value (offsets in Unicode scalars), whitespace runs folded to one space.
    func text(_ span: Span) -> String {
        let scalars = value.unicodeScalars
        let from = scalars.index(scalars.startIndex, offsetBy: max(0, min(span.start, scalars.count)))
        let to = scalars.index(scalars.startIndex, offsetBy: max(0, min(span.end, scalars.count)))
        guard from < to else { return "" }
        return String(scalars[from..<to]).split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).joined(separator: " ")
    }

    /// The file position of the value's `offset`-th Unicode scalar (or just past its end).
    public func location(ofOffset offset: Int) -> SourceLocation {
        guard let text = fileText else { return SourceLocation(file: file, line: line, column: column + offset) }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { Array($0.unicodeScalars) }
        let value = Array(self.value.unicodeScalars)
        var l = line - 1
        var c = column - 1
        func here() -> SourceLocation { SourceLocation(file: file, line: l + 1, column: c + 1) }
        guard l >= 0, l < lines.count else { return start }
        for k in 0...min(max(offset, 0), value.count) {
            if k == value.count { return here() }
            let v = value[k]
            if v == " " || v == "\n" || v == "\t" {
                // Blanks may be folded line breaks or indentation: step over one if it is there.
                if k == offset { return here() }
                if c < lines[l].count, lines[l][c] == v { c += 1 }
                continue
            }
            while l < lines.count, !(c < lines[l].count && lines[l][c] == v) {
                if c >= lines[l].count { l += 1; c = 0 } else { c += 1 }
            }
            guard l < lines.count else { return start }
            if k == offset { return here() }
            c += 1
        }
        return start
    }
}

/// Levenshtein distance, for "did you mean" hints.
func editDistance(_ a: String, _ b: String) -> Int {
    let x = Array(a.utf8), y = Array(b.utf8)
    if x.isEmpty { return y.count }
    if y.isEmpty { return x.count }
    var prev = Array(0...y.count)
    var cur = [Int](repeating: 0, count: y.count + 1)
    for i in 1...x.count {
        cur[0] = i
        for j in 1...y.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[y.count]
}

/// The closest candidate within a small edit distance (or the shortest that starts with the word), as a note.
public func suggestion(for word: String, among candidates: some Sequence<String>) -> [String] {
    var best: (word: String, distance: Int)?
    let all = Array(candidates)
    if word.count >= 3, let prefixed = all.filter({ $0.hasPrefix(word) && $0 != word }).min(by: { $0.count < $1.count }) {
        return ["did you mean '\(prefixed)'?"]
    }
    for c in all {
        let d = editDistance(word, c)
        if d <= max(2, word.count / 3), d < (best?.distance ?? Int.max) { best = (c, d) }
    }
    return best.map { ["did you mean '\($0.word)'?"] } ?? []
}
