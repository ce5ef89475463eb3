/// Validates one JSON message against a compiled schema in a single forward pass over its bytes, and
/// captures the values of the requested slots into an `EventRecord`.
///
/// The first problem found is reported; nothing of the message's content appears in the reason.
/// A validator is immutable and may be shared between threads; each call uses its own state.
public struct SchemaValidator: Sendable {
    public let root: SchemaNode
    /// capture[slot]: whether to store that slot's value.
    public let capture: [Bool]

    public init(root: SchemaNode, capture: [Bool]) {
        self.root = root
        self.capture = capture
    }

    /// Validates `bytes`; on success the record holds the captured values (it is reset first).
    public func validate(_ bytes: UnsafeRawBufferPointer, into record: inout EventRecord) -> ValidationFailure? {
        record.reset()
        guard let raw = bytes.baseAddress, bytes.count > 0 else {
            return ValidationFailure(kind: .invalidJSON, path: "$", reason: "not JSON: the message is empty")
        }
        // The fast pass keeps no JSON path; only when it fails is the message validated again, keeping one,
        // to say exactly where.
        var run = Run(scanner: JSONScanner(base: raw.assumingMemoryBound(to: UInt8.self), count: bytes.count),
                      capture: capture, tracking: false)
        if run.document(root, record: &record) { return nil }
        record.reset()
        run = Run(scanner: JSONScanner(base: raw.assumingMemoryBound(to: UInt8.self), count: bytes.count),
                  capture: capture, tracking: true)
        _ = run.document(root, record: &record)
        record.reset()
        if let f = run.failure { return f }
        let syntax = run.scanner.failure ?? JSONSyntaxError(offset: run.scanner.pos, reason: "invalid JSON")
        if syntax.reason == "not valid UTF-8" {
            return ValidationFailure(kind: .invalidUTF8, path: "$", reason: "not valid UTF-8 at byte \(syntax.offset)")
        }
        return ValidationFailure(kind: .invalidJSON, path: "$", reason: "not JSON: \(syntax.reason) at byte \(syntax.offset)")
    }

    public func validate(_ bytes: [UInt8], into record: inout EventRecord) -> ValidationFailure? {
        bytes.withUnsafeBytes { validate($0, into: &record) }
    }

    enum PathComponent {
        case key(String)
        case index(Int)
    }

    struct Run {
        var scanner: JSONScanner
        let capture: [Bool]
        /// Whether to keep the JSON path (only needed to report a failure).
        let tracking: Bool
        var path: [PathComponent] = []
        var failure: ValidationFailure?
        var lastSymbol: Symbol?
        var lastStringToken: JSONScanner.StringToken?

        init(scanner: JSONScanner, capture: [Bool], tracking: Bool) {
            self.scanner = scanner
            self.capture = capture
            self.tracking = tracking
            if tracking { path.reserveCapacity(8) }
        }

        /// One complete JSON document.
        mutating func document(_ root: SchemaNode, record: inout EventRecord) -> Bool {
            guard value(root, depth: 0, record: &record) else { return false }
            scanner.skipWhitespace()
            if !scanner.atEnd {
                scanner.fail("unexpected data after the JSON value")
                return false
            }
            return true
        }

        @inline(__always) mutating func push(_ c: @autoclosure () -> PathComponent) { if tracking { path.append(c()) } }
        @inline(__always) mutating func pop() { if tracking { path.removeLast() } }

        var pathString: String {
            var s = "$"
            for c in path {
                switch c {
                case .key(let k): s += "." + k
                case .index(let i): s += "[\(i)]"
                }
            }
            return s
        }

        mutating func contract(_ reason: String, kind: ValidationFailure.Kind = .contract) -> Bool {
            if failure == nil, scanner.failure == nil {
                failure = ValidationFailure(kind: kind, path: pathString, reason: reason)
            }
            return false
        }

        @inline(__always) func wants(_ node: SchemaNode) -> Bool { node.slot >= 0 && capture[node.slot] }

        static func describe(_ t: JSONTypes) -> String {
            var names: [String] = []
            if t.contains(.object) { names.append("an object") }
            if t.contains(.array) { names.append("an array") }
            if t.contains(.string) { names.append("a string") }
            if t.contains(.number) { names.append("a number") } else if t.contains(.integer) { names.append("an integer") }
            if t.contains(.boolean) { names.append("a boolean") }
            if t.contains(.null) { names.append("null") }
            return names.joined(separator: " or ")
        }

        mutating func mismatch(_ node: SchemaNode, found: String) -> Bool {
            contract("expected \(Run.describe(node.types)), found \(found)")
        }

        mutating func value(_ node: SchemaNode, depth: Int, record: inout EventRecord) -> Bool {
            scanner.skipWhitespace()
            guard !scanner.atEnd else { scanner.fail("unexpected end of input (truncated?)"); return false }
            guard depth < JSONScanner.maxDepth else { scanner.fail("nesting deeper than \(JSONScanner.maxDepth) levels"); return false }
            switch scanner.peek() {
            case 0x7B:
                guard node.types.contains(.object) else { return mismatch(node, found: "an object") }
                return object(node, depth: depth, record: &record)
            case 0x5B:
                guard node.types.contains(.array) else { return mismatch(node, found: "an array") }
                return array(node, depth: depth, record: &record)
            case 0x22:
                guard let tok = scanner.scanString() else { return false }
                guard node.types.contains(.string) else { return mismatch(node, found: "a string") }
                return string(node, tok, record: &record)
            case 0x74, 0x66:
                let v = scanner.peek() == 0x74
                guard scanner.scanLiteral(v ? "true" : "false") else { return false }
                guard node.types.contains(.boolean) else { return mismatch(node, found: "a boolean") }
                if let c = node.constValue, c != .bool(v) { return contract("must be \(c.jsonText)") }
                if wants(node) { record.set(node.slot, .bool(v)) }
                return true
            case 0x6E:
                guard scanner.scanLiteral("null") else { return false }
                guard node.types.contains(.null) else { return mismatch(node, found: "null") }
                return true
            case 0x2D, 0x30...0x39:
                guard let n = scanner.scanNumber() else { return false }
                let isInt = n.integer != nil
                guard node.types.contains(.number) || (isInt && node.types.contains(.integer)) else {
                    return mismatch(node, found: isInt ? "an integer" : "a number")
                }
                if let c = node.constValue {
                    guard case .number(let cd, _) = c, cd == n.double else {
                        let kind: ValidationFailure.Kind = node.path == "schema_version" ? .unsupportedSchemaVersion : .contract
                        if node.path == "schema_version" {
                            return contract("schema_version \(n.integer.map(String.init) ?? "?") is not supported (this build reads \(c.jsonText))", kind: kind)
                        }
                        return contract("must be \(c.jsonText)", kind: kind)
                    }
                }
                if let m = node.minimum, n.double < m { return contract("must be at least \(JSONValue.number(m, integer: Int64(exactly: m)).jsonText)") }
                if wants(node), let i = n.integer { record.set(node.slot, .int(i)) }
                return true
            default:
                scanner.fail("unexpected character")
                return false
            }
        }

        mutating func string(_ node: SchemaNode, _ tok: JSONScanner.StringToken, record: inout EventRecord) -> Bool {
            lastStringToken = tok
            if !node.enumBytes.isEmpty {
                var match = -1
                if !tok.hasEscapes {
                    match = node.enumPacked.index(of: scanner.base + tok.start, count: tok.end - tok.start, hint: -1)
                } else {
                    for (k, b) in node.enumBytes.enumerated() {
                        let eq = b.withUnsafeBufferPointer { scanner.equals(tok, $0) }
                        if eq { match = k; break }
                    }
                }
                guard match >= 0 else {
                    return contract("not one of the allowed values: \(node.enumValues.joined(separator: ", "))")
                }
                lastSymbol = node.enumSymbols[match]
                if wants(node) { record.set(node.slot, .symbol(node.enumSymbols[match])) }
                return true
            }
            if let c = node.constValue {
                guard case .string(let cs) = c, scanner.string(tok) == cs else { return contract("must be \(c.jsonText)") }
            }
            if let m = node.minLength, tok.scalarCount < m {
                return contract(m == 1 ? "must not be empty" : "shorter than \(m) characters")
            }
            if let m = node.maxLength, tok.scalarCount > m { return contract("longer than \(m) characters") }
            if node.isIdentifier && scanner.hasControlCharacters(tok) {
                return contract("control characters are not allowed in an identifier")
            }
            switch node.format {
            case .dateTime?:
                guard !tok.hasEscapes, let t = RFC3339.parseDateTime(scanner.base + tok.start, tok.end - tok.start) else {
                    return contract("not an RFC 3339 date-time (expected YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM))")
                }
                if wants(node) { record.set(node.slot, .instant(t)) }
            case .date?:
                guard !tok.hasEscapes, let d = RFC3339.parseDate(scanner.base + tok.start, tok.end - tok.start) else {
                    return contract("not a full date (expected YYYY-MM-DD)")
                }
                if wants(node) { record.set(node.slot, .date(d)) }
            case nil:
                if wants(node) { record.set(node.slot, .string(scanner.string(tok))) }
            }
            return true
        }

        mutating func array(_ node: SchemaNode, depth: Int, record: inout EventRecord) -> Bool {
            scanner.pos += 1
            var count = 0
            let keep = wants(node)
            var set = SymbolSet()
            var strings: [String] = []
            var tokens: [JSONScanner.StringToken] = []
            if !scanner.consume(0x5D) {
                while true {
                    push(.index(count))
                    if let items = node.items {
                        lastSymbol = nil
                        lastStringToken = nil
                        guard value(items, depth: depth + 1, record: &record) else { return false }
                        if node.uniqueItems, let tok = lastStringToken {
                            if let s = lastSymbol {
                                guard set.insert(s) else { return contract("duplicate item (items must be unique)") }
                            } else {
                                for prev in tokens where scanner.string(prev) == scanner.string(tok) {
                                    return contract("duplicate item (items must be unique)")
                                }
                                tokens.append(tok)
                            }
                        } else if let s = lastSymbol {
                            set.insert(s)
                        }
                        if keep, lastSymbol == nil, let tok = lastStringToken { strings.append(scanner.string(tok)) }
                    } else {
                        guard scanner.skipValue(depth: depth + 1) else { return false }
                    }
                    pop()
                    count += 1
                    if scanner.consume(0x2C) { continue }
                    if scanner.consume(0x5D) { break }
                    scanner.expectedFailure("',' or ']' in an array")
                    return false
                }
            }
            if let m = node.minItems, count < m { return contract("must have at least \(m) item\(m == 1 ? "" : "s")") }
            if keep {
                if let items = node.items, !items.enumSymbols.isEmpty {
                    record.set(node.slot, .symbols(set))
                } else {
                    record.set(node.slot, .strings(strings))
                }
            }
            return true
        }

        /// Validates a value against a node held without reference counting (the node tables keep it alive).
        @inline(__always) mutating func value(_ node: Unmanaged<SchemaNode>, depth: Int, record: inout EventRecord) -> Bool {
            node._withUnsafeGuaranteedRef { value($0, depth: depth, record: &record) }
        }

        /// The discriminator variant a string selects, or -1.
        func variantIndex(_ node: SchemaNode, _ tok: JSONScanner.StringToken) -> Int {
            if !tok.hasEscapes { return node.variantValues.index(of: scanner.base + tok.start, count: tok.end - tok.start) }
            guard let disc = node.discriminator else { return -1 }
            for k in disc.variants.indices {
                if disc.variants[k].bytes.withUnsafeBufferPointer({ scanner.equals(tok, $0) }) { return k }
            }
            return -1
        }

        mutating func object(_ node: SchemaNode, depth: Int, record: inout EventRecord) -> Bool {
            scanner.pos += 1
            var seen: UInt64 = 0
            var variant = -1
            var deferred: [(index: Int, start: Int)] = []
            var hint = 0
            let discIndex = node.discriminatorIndex
            let count = node.propertyRefs.count
            if !scanner.consume(0x7D) {
                while true {
                    scanner.skipWhitespace()
                    guard scanner.peek() == 0x22 else { scanner.expectedFailure("a property name in double quotes"); return false }
                    guard let key = scanner.scanString() else { return false }
                    guard scanner.consume(0x3A) else { scanner.expectedFailure("':' after a property name"); return false }
                    var index = -1
                    if !key.hasEscapes {
                        index = node.names.index(of: scanner.base + key.start, count: key.end - key.start, hint: hint)
                    } else {
                        for (k, p) in node.properties.enumerated() {
                            let eq = p.bytes.withUnsafeBufferPointer { scanner.equals(key, $0) }
                            if eq { index = k; break }
                        }
                    }
                    if index < 0 {
                        if !node.additionalProperties {
                            // The name is message content: it is not quoted, in the path or the reason.
                            push(.key("<undeclared>"))
                            let declared = node.properties.map(\.name).joined(separator: ", ")
                            return contract("a property the contract does not declare here (declared: \(declared))")
                        }
                        if let extra = node.additionalRef {
                            // Names are content (a label's name): the path says only that it was one of them.
                            push(.key("<additional>"))
                            guard value(extra, depth: depth + 1, record: &record) else { return false }
                            pop()
                        } else {
                            guard scanner.skipValue(depth: depth + 1) else { return false }
                        }
                    } else {
                        hint = index + 1
                        let bit = UInt64(1) << UInt64(index)
                        if tracking { push(.key(node.properties[index].name)) }
                        if seen & bit != 0 { return contract("property '\(node.properties[index].name)' appears twice") }
                        seen |= bit
                        if discIndex >= 0, node.overriddenMask & bit != 0 {
                            if variant >= 0 {
                                guard value(node.variantRefs[variant * count + index], depth: depth + 1, record: &record) else { return false }
                            } else if seen & (UInt64(1) << UInt64(discIndex)) != 0 {
                                // The selector was present but selected no variant: base schema only.
                                guard value(node.propertyRefs[index], depth: depth + 1, record: &record) else { return false }
                            } else {
                                scanner.skipWhitespace()
                                deferred.append((index, scanner.pos))
                                guard scanner.skipValue(depth: depth + 1) else { return false }
                            }
                        } else {
                            lastStringToken = nil
                            guard value(node.propertyRefs[index], depth: depth + 1, record: &record) else { return false }
                            if index == discIndex, let tok = lastStringToken { variant = variantIndex(node, tok) }
                        }
                        pop()
                    }
                    if scanner.consume(0x2C) { continue }
                    if scanner.consume(0x7D) { break }
                    scanner.expectedFailure("',' or '}' in an object")
                    return false
                }
            }
            if !deferred.isEmpty {
                let resume = scanner.pos
                for d in deferred {
                    scanner.pos = d.start
                    push(.key(node.properties[d.index].name))
                    let ref = variant >= 0 ? node.variantRefs[variant * count + d.index] : node.propertyRefs[d.index]
                    guard value(ref, depth: depth + 1, record: &record) else { return false }
                    pop()
                }
                scanner.pos = resume
            }
            if seen & node.requiredMask != node.requiredMask || !node.requiredUndeclared.isEmpty {
                for name in node.required {
                    guard let k = node.propertyIndex(name), seen & (UInt64(1) << UInt64(k)) != 0 else {
                        return contract("missing required property '\(name)'")
                    }
                }
            }
            return true
        }

        /// Property names from the input are echoed in errors, limited to 64 printable ASCII characters.
    }
}
