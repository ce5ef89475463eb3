/// The JSON types a schema node admits.
public struct JSONTypes: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let object = JSONTypes(rawValue: 1)
    public static let array = JSONTypes(rawValue: 2)
    public static let string = JSONTypes(rawValue: 4)
    public static let integer = JSONTypes(rawValue: 8)
    public static let number = JSONTypes(rawValue: 16)
    public static let boolean = JSONTypes(rawValue: 32)
    public static let null = JSONTypes(rawValue: 64)
    public static let any: JSONTypes = [.object, .array, .string, .integer, .number, .boolean, .null]
}

/// String formats the validator asserts.
public enum StringFormat: String, Sendable {
    case dateTime = "date-time"
    case date
}

/// One compiled node of a JSON Schema (2020-12), restricted to the keywords Vigil's contracts use.
///
/// Keywords outside that subset make `SchemaCompiler` fail rather than be silently ignored, so a contract
/// change that needs a new keyword is noticed at start-up, not in production.
public final class SchemaNode: Sendable {
    public struct Property: Sendable {
        public let name: String
        public let bytes: [UInt8]
        public let node: SchemaNode
    }

    /// A property whose value selects extra constraints, compiled from
    /// `allOf: [{if: {properties: {P: {const: V}}, required: [P]}, then: {properties: {...}}}, ...]`.
    public struct Discriminator: Sendable {
        public struct Variant: Sendable {
            public let value: String
            public let bytes: [UInt8]
            /// Replacement nodes by property index, used instead of the base node for that property.
            public let overrides: [Int: SchemaNode]
        }
        public let propertyIndex: Int
        public let variants: [Variant]
        /// Property indexes that some variant overrides (validated late when the discriminator comes after them).
        public let overridden: Set<Int>
    }

    /// Dotted path from the root (`data.status`, `child.id`); the key for value slots.
    public let path: String
    public let types: JSONTypes
    public let constValue: JSONValue?
    public let enumValues: [String]
    public let enumBytes: [[UInt8]]
    public let enumSymbols: [Symbol]
    public let minLength: Int?
    public let maxLength: Int?
    public let format: StringFormat?
    public let minimum: Double?
    public let properties: [Property]
    public let required: [String]
    public let additionalProperties: Bool
    /// The schema every undeclared property's value must satisfy (`additionalProperties: {...}`), if any.
    public let additionalSchema: SchemaNode?
    public let items: SchemaNode?
    public let uniqueItems: Bool
    public let minItems: Int?
    public let discriminator: Discriminator?
    /// Value slot of this node's path, or -1.
    public let slot: Int
    /// An identifier (`id`, `*_id`, `*_ref`): printed to people, so control characters are refused.
    public let isIdentifier: Bool

    // Lookup aids for the validator, derived from the above.
    /// Bit k set when property k is required.
    let requiredMask: UInt64
    /// Required names that are not declared properties (such a document can never be valid).
    let requiredUndeclared: [String]
    /// Property names, contiguous, with their offsets and lengths.
    let names: PackedStrings
    /// Enum values, as for property names.
    let enumPacked: PackedStrings
    /// Bit k set when a discriminator variant refines property k.
    let overriddenMask: UInt64
    /// The validator's tables without reference counting: property nodes by index (kept alive by
    /// `properties`), and per discriminator variant the node for each property (its override or the base
    /// node; kept alive by `properties` and `discriminator`).
    let propertyRefs: [Unmanaged<SchemaNode>]
    /// Variant v's node for property k at `v * properties.count + k`.
    let variantRefs: [Unmanaged<SchemaNode>]
    /// The discriminator's property index, or -1; its variants' values, as for property names.
    let discriminatorIndex: Int
    let variantValues: PackedStrings
    /// The additional-properties schema, if any, without reference counting.
    let additionalRef: Unmanaged<SchemaNode>?

    init(path: String, types: JSONTypes, constValue: JSONValue?, enumValues: [String], enumSymbols: [Symbol],
         minLength: Int?, maxLength: Int?, format: StringFormat?, minimum: Double?, properties: [Property],
         required: [String], additionalProperties: Bool, items: SchemaNode?, uniqueItems: Bool, minItems: Int?,
         discriminator: Discriminator?, slot: Int, additionalSchema: SchemaNode? = nil) {
        self.path = path
        let name = path.split(separator: ".").last.map(String.init) ?? path
        isIdentifier = name == "id" || name.hasSuffix("_id") || name.hasSuffix("_ref")
        self.types = types
        self.constValue = constValue
        self.enumValues = enumValues
        self.enumBytes = enumValues.map { Array($0.utf8) }
        self.enumSymbols = enumSymbols
        self.minLength = minLength
        self.maxLength = maxLength
        self.format = format
        self.minimum = minimum
        self.properties = properties
        self.required = required
        self.additionalProperties = additionalProperties
        self.additionalSchema = additionalSchema
        self.items = items
        self.uniqueItems = uniqueItems
        self.minItems = minItems
        self.discriminator = discriminator
        self.slot = slot
        var mask: UInt64 = 0
        var undeclared: [String] = []
        for r in required {
            if let k = properties.firstIndex(where: { $0.name == r }) { mask |= UInt64(1) << UInt64(k) } else { undeclared.append(r) }
        }
        requiredMask = mask
        requiredUndeclared = undeclared
        names = PackedStrings(properties.map(\.bytes))
        enumPacked = PackedStrings(enumBytes)
        var over: UInt64 = 0
        for k in discriminator?.overridden ?? [] { over |= UInt64(1) << UInt64(k) }
        overriddenMask = over
        propertyRefs = properties.map { Unmanaged.passUnretained($0.node) }
        let base = propertyRefs
        variantRefs = (discriminator?.variants ?? []).flatMap { v in
            base.indices.map { k in v.overrides[k].map { Unmanaged.passUnretained($0) } ?? base[k] }
        }
        discriminatorIndex = discriminator?.propertyIndex ?? -1
        variantValues = PackedStrings((discriminator?.variants ?? []).map(\.bytes))
        additionalRef = additionalSchema.map { Unmanaged.passUnretained($0) }
    }

    public func propertyIndex(_ name: String) -> Int? { properties.firstIndex { $0.name == name } }
}

/// Byte strings laid end to end (one allocation), found by length and first eight bytes, then by the rest:
/// property names and discriminator values, which the validator looks up once per property of every message.
struct PackedStrings: Sendable {
    struct Entry: Sendable {
        /// The first eight bytes (fewer zero-padded), little-endian.
        var head: UInt64
        var offset: Int
        var length: Int
    }

    let bytes: [UInt8]
    let entries: [Entry]
    /// The entries' indexes ordered by length; those of length n at `byLength[lengthStart[n]..<lengthStart[n + 1]]`.
    let byLength: [Int32]
    let lengthStart: [Int32]

    init(_ strings: [[UInt8]]) {
        var bytes: [UInt8] = [], entries: [Entry] = []
        for b in strings {
            let head = b.withUnsafeBufferPointer { p in p.baseAddress.map { Self.head($0, b.count) } ?? 0 }
            entries.append(Entry(head: head, offset: bytes.count, length: b.count))
            bytes += b
        }
        self.bytes = bytes
        self.entries = entries
        byLength = entries.indices.sorted { (entries[$0].length, $0) < (entries[$1].length, $1) }.map { Int32($0) }
        let longest = entries.map(\.length).max() ?? -1
        var start = [Int32](repeating: 0, count: longest + 2)
        for e in entries { start[e.length + 1] += 1 }
        for n in start.indices.dropFirst() { start[n] += start[n - 1] }
        lengthStart = start
    }

    @inline(__always) static func head(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
        if n >= 8 { return UnsafeRawPointer(p).loadUnaligned(as: UInt64.self) }
        var h: UInt64 = 0
        for i in 0..<n { h |= UInt64(p[i]) << UInt64(i << 3) }
        return h
    }

    /// The index of the string equal to the `n` bytes at `p`, or -1. `hint` is tried first (the validator
    /// passes the property after the one before: producers write the same keys in the same order).
    @inline(__always) func index(of p: UnsafePointer<UInt8>, count n: Int, hint: Int = 0) -> Int {
        let head = Self.head(p, n)
        return bytes.withUnsafeBufferPointer { b in
            entries.withUnsafeBufferPointer { e in
                // Empty only when every string is: then no comparison reads it.
                let base = b.baseAddress ?? p
                @inline(__always) func matches(_ x: Entry) -> Bool {
                    x.length == n && x.head == head && (n <= 8 || memcmpBytes(p + 8, base + x.offset + 8, n - 8))
                }
                if hint >= 0 && hint < e.count && matches(e[hint]) { return hint }
                guard n + 1 < lengthStart.count else { return -1 }
                for j in Int(lengthStart[n])..<Int(lengthStart[n + 1]) {
                    let k = Int(byLength[j])
                    if matches(e[k]) { return k }
                }
                return -1
            }
        }
    }
}

/// A schema the compiler cannot accept.
public struct SchemaError: Error, CustomStringConvertible, Sendable {
    public var pointer: String
    public var reason: String
    public var description: String { "schema \(pointer): \(reason)" }
}

/// Compiles a JSON Schema document into `SchemaNode`s, interning enum strings and assigning one value slot
/// per distinct dotted path.
public struct SchemaCompiler {
    public var symbols: SymbolTable
    public private(set) var slotPaths: [String] = []
    private var slotIndex: [String: Int] = [:]

    static let annotations: Set<String> = ["$schema", "$id", "title", "description", "$comment", "examples", "default"]

    public init(symbols: SymbolTable = SymbolTable()) { self.symbols = symbols }

    public mutating func compile(_ doc: JSONValue) throws(SchemaError) -> SchemaNode {
        try node(doc, path: "", pointer: "#")
    }

    mutating func slot(for path: String) -> Int {
        if path.isEmpty { return -1 }
        if let s = slotIndex[path] { return s }
        let s = slotPaths.count
        slotPaths.append(path)
        slotIndex[path] = s
        return s
    }

    mutating func node(_ v: JSONValue, path: String, pointer: String) throws(SchemaError) -> SchemaNode {
        guard let members = v.objectValue else {
            if case .bool(true) = v {
                return SchemaNode(path: path, types: .any, constValue: nil, enumValues: [], enumSymbols: [],
                                  minLength: nil, maxLength: nil, format: nil, minimum: nil, properties: [],
                                  required: [], additionalProperties: true, items: nil, uniqueItems: false,
                                  minItems: nil, discriminator: nil, slot: slot(for: path))
            }
            throw SchemaError(pointer: pointer, reason: "a schema must be an object")
        }
        var types = JSONTypes.any
        var constValue: JSONValue?
        var enumValues: [String] = []
        var minLength: Int?, maxLength: Int?, minItems: Int?
        var format: StringFormat?
        var minimum: Double?
        var properties: [SchemaNode.Property] = []
        var required: [String] = []
        var additional = true
        var additionalSchema: SchemaNode?
        var items: SchemaNode?
        var unique = false
        var allOf: [JSONValue] = []

        for (key, value) in members {
            let here = pointer + "/" + key
            switch key {
            case _ where SchemaCompiler.annotations.contains(key):
                continue
            case "type":
                types = []
                let names = value.arrayValue?.compactMap(\.stringValue) ?? [value.stringValue].compactMap { $0 }
                guard !names.isEmpty else { throw SchemaError(pointer: here, reason: "type must be a string or array of strings") }
                for n in names {
                    switch n {
                    case "object": types.insert(.object)
                    case "array": types.insert(.array)
                    case "string": types.insert(.string)
                    case "integer": types.insert(.integer)
                    case "number": types.insert([.number, .integer])
                    case "boolean": types.insert(.boolean)
                    case "null": types.insert(.null)
                    default: throw SchemaError(pointer: here, reason: "unknown type '\(n)'")
                    }
                }
            case "const":
                constValue = value
            case "enum":
                guard let arr = value.arrayValue, !arr.isEmpty else { throw SchemaError(pointer: here, reason: "enum must be a non-empty array") }
                for item in arr {
                    guard let s = item.stringValue else { throw SchemaError(pointer: here, reason: "only string enums are supported") }
                    enumValues.append(s)
                }
            case "minLength": minLength = try intKeyword(value, here)
            case "maxLength": maxLength = try intKeyword(value, here)
            case "minItems": minItems = try intKeyword(value, here)
            case "minimum":
                guard case .number(let d, _) = value else { throw SchemaError(pointer: here, reason: "minimum must be a number") }
                minimum = d
            case "format":
                guard let f = value.stringValue.flatMap(StringFormat.init(rawValue:)) else {
                    throw SchemaError(pointer: here, reason: "unsupported format (supported: date-time, date)")
                }
                format = f
            case "properties":
                guard let props = value.objectValue else { throw SchemaError(pointer: here, reason: "properties must be an object") }
                for (name, sub) in props {
                    let childPath = path.isEmpty ? name : path + "." + name
                    let n = try node(sub, path: childPath, pointer: here + "/" + name)
                    properties.append(.init(name: name, bytes: Array(name.utf8), node: n))
                }
            case "required":
                guard let arr = value.arrayValue else { throw SchemaError(pointer: here, reason: "required must be an array") }
                required = arr.compactMap(\.stringValue)
            case "additionalProperties":
                if let b = value.boolValue {
                    additional = b
                } else if value.objectValue != nil {
                    // Values of undeclared names (a map): checked, never captured into a record slot.
                    additionalSchema = try node(value, path: "", pointer: here)
                } else {
                    throw SchemaError(pointer: here, reason: "additionalProperties must be a boolean or a schema")
                }
            case "items":
                items = try node(value, path: path, pointer: here)
            case "uniqueItems":
                unique = value.boolValue ?? false
            case "allOf":
                guard let arr = value.arrayValue else { throw SchemaError(pointer: here, reason: "allOf must be an array") }
                allOf = arr
            default:
                throw SchemaError(pointer: here, reason: "keyword '\(key)' is not supported by Vigil's validator")
            }
        }
        // enum and const restrict the type too (JSON Schema: a value must be one of them): without this, a node
        // with an enum and no type would accept any number, boolean or null.
        if !enumValues.isEmpty { types = types.intersection(.string) }
        if let c = constValue {
            switch c {
            case .string: types = types.intersection(.string)
            case .number: types = types.intersection([.number, .integer])
            case .bool: types = types.intersection(.boolean)
            case .null: types = types.intersection(.null)
            default: throw SchemaError(pointer: pointer + "/const", reason: "only scalar const values are supported")
            }
        }
        if types.isEmpty {
            throw SchemaError(pointer: pointer, reason: "no value can satisfy this schema (its type excludes its enum or const)")
        }
        if let items, unique, !items.types.isSubset(of: .string), items.enumValues.isEmpty {
            throw SchemaError(pointer: pointer + "/uniqueItems", reason: "uniqueItems is supported for string items only")
        }
        if properties.count > 64 {
            throw SchemaError(pointer: pointer + "/properties", reason: "at most 64 properties per object are supported")
        }
        let discriminator = try compileDiscriminator(allOf, properties: properties, path: path, pointer: pointer + "/allOf")
        let symbols = enumValues.map { self.symbols.intern($0) }
        if self.symbols.count > SymbolSet.capacity {
            throw SchemaError(pointer: pointer, reason: "more than \(SymbolSet.capacity) distinct enum values")
        }
        return SchemaNode(path: path, types: types, constValue: constValue, enumValues: enumValues, enumSymbols: symbols,
                          minLength: minLength, maxLength: maxLength, format: format, minimum: minimum,
                          properties: properties, required: required, additionalProperties: additional, items: items,
                          uniqueItems: unique, minItems: minItems, discriminator: discriminator,
                          slot: slot(for: path), additionalSchema: additionalSchema)
    }

    func intKeyword(_ v: JSONValue, _ pointer: String) throws(SchemaError) -> Int {
        guard let i = v.intValue, i >= 0 else { throw SchemaError(pointer: pointer, reason: "must be a non-negative integer") }
        return Int(i)
    }

    mutating func compileDiscriminator(_ allOf: [JSONValue], properties: [SchemaNode.Property], path: String,
                                       pointer: String) throws(SchemaError) -> SchemaNode.Discriminator? {
        guard !allOf.isEmpty else { return nil }
        var discriminatorName: String?
        var variants: [SchemaNode.Discriminator.Variant] = []
        var overridden = Set<Int>()
        for (k, clause) in allOf.enumerated() {
            let here = "\(pointer)/\(k)"
            guard let members = clause.objectValue, members.count == 2,
                  let cond = clause["if"], let then = clause["then"] else {
                throw SchemaError(pointer: here, reason: "only {if, then} clauses that select on a property's const value are supported")
            }
            guard let condProps = cond["properties"]?.objectValue, condProps.count == 1,
                  let req = cond["required"]?.arrayValue, req.count == 1, req[0].stringValue == condProps[0].0,
                  cond.objectValue?.count == 2,
                  let constant = condProps[0].1["const"]?.stringValue, condProps[0].1.objectValue?.count == 1 else {
                throw SchemaError(pointer: here + "/if", reason: "if must be {properties: {P: {const: V}}, required: [P]}")
            }
            let name = condProps[0].0
            if let d = discriminatorName, d != name {
                throw SchemaError(pointer: here + "/if", reason: "all clauses must select on the same property")
            }
            discriminatorName = name
            guard let thenProps = then["properties"]?.objectValue, then.objectValue?.count == 1 else {
                throw SchemaError(pointer: here + "/then", reason: "then must be {properties: {...}}")
            }
            var overrides: [Int: SchemaNode] = [:]
            for (pname, sub) in thenProps {
                guard let idx = properties.firstIndex(where: { $0.name == pname }) else {
                    throw SchemaError(pointer: here + "/then/properties/" + pname, reason: "then may only refine declared properties")
                }
                let childPath = path.isEmpty ? pname : path + "." + pname
                overrides[idx] = try node(sub, path: childPath, pointer: here + "/then/properties/" + pname)
                overridden.insert(idx)
            }
            variants.append(.init(value: constant, bytes: Array(constant.utf8), overrides: overrides))
        }
        guard let name = discriminatorName, let idx = properties.firstIndex(where: { $0.name == name }) else {
            throw SchemaError(pointer: pointer, reason: "the selecting property must be declared in properties")
        }
        // A refined property is validated against its refinement alone, so the base may constrain only the type.
        for i in overridden {
            let base = properties[i].node
            guard base.properties.isEmpty, base.enumValues.isEmpty, base.constValue == nil, base.items == nil,
                  base.required.isEmpty, base.format == nil, base.minLength == nil, base.maxLength == nil,
                  variants.allSatisfy({ $0.overrides[i].map { $0.types.isSubset(of: base.types) } ?? true }) else {
                throw SchemaError(pointer: pointer, reason: "a refined property's base schema may only name its type")
            }
        }
        return .init(propertyIndex: idx, variants: variants, overridden: overridden)
    }
}
