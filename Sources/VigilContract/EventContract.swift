/// What a field of the event contract holds, as the rule language sees it.
public enum FieldKind: Equatable, Sendable, CustomStringConvertible {
    /// An enum string; `allowed` is the union of the values any event type allows.
    case symbol
    /// A string. Identifiers (`id`, `*_id`, `*_ref`) may appear in alerts; other strings are free text.
    case string(freeText: Bool)
    case bool
    case int
    case date
    case instant
    /// An array of enum strings.
    case symbolArray
    /// An array of strings.
    case stringArray
    case object

    public var description: String {
        switch self {
        case .symbol: return "enum"
        case .string(let free): return free ? "free text" : "identifier"
        case .bool: return "boolean"
        case .int: return "integer"
        case .date: return "date"
        case .instant: return "date-time"
        case .symbolArray: return "array of enum"
        case .stringArray: return "array of strings"
        case .object: return "object"
        }
    }
}

/// One field path of the contract (`data.status`), across every event type that declares it.
public struct ContractField: Sendable {
    public let path: String
    public let slot: Int
    public let kind: FieldKind
    /// Event types (by index) on which the field may appear.
    public let eventTypes: Set<Int>
    /// Allowed enum values per event type index (for `.symbol` and `.symbolArray`).
    public let allowed: [Int: SymbolSet]

    /// Allowed values on any of `types`.
    public func allowedValues(on types: Set<Int>) -> SymbolSet {
        var s = SymbolSet()
        for t in types { if let a = allowed[t] { s = s.union(a) } }
        return s
    }
}

/// The agency-event contract (`events.schema.json`), compiled once: the validator, the interned enum
/// values, the event types and a catalogue of every field path with its kind and value slot.
public struct EventContract: Sendable {
    public let root: SchemaNode
    public let symbols: SymbolTable
    /// Event type names in contract order; an event type's index is its position here.
    public let eventTypes: [String]
    public let eventTypeSymbols: [Symbol]
    /// Event type index by symbol id (-1 when the symbol is not an event type).
    public let eventTypeIndexBySymbol: [Int16]
    public let fields: [String: ContractField]
    public let slotCount: Int
    /// Dotted path of each slot.
    public let slotPaths: [String]
    public let schemaVersion: Int64

    /// Slots the engine always reads.
    public let eventIdSlot: Int
    public let typeSlot: Int
    public let occurredAtSlot: Int
    public let agencySlot: Int
    public let childIdSlot: Int
    /// `recorded_at`, if the contract has it: when the source system recorded the event.
    public let recordedAtSlot: Int?

    /// Every field a rule could read, free text aside: what a child's timeline keeps of an event, so that a
    /// rule added later can be evaluated over the history already kept.
    public var ruleReadableSlots: [Int] {
        fields.values.compactMap { f -> Int? in
            switch f.kind {
            case .string(freeText: true), .object: return nil
            default: return f.slot
            }
        }.sorted()
    }

    /// The contract built into this binary.
    public static let embedded: EventContract = {
        do {
            return try EventContract(schemaText: EmbeddedContracts.eventsSchema)
        } catch {
            fatalError("the embedded event contract does not compile: \(error)")
        }
    }()

    public init(schemaText: String) throws {
        let doc = try JSONValue.parse(schemaText)
        var compiler = SchemaCompiler()
        let root = try compiler.compile(doc)
        guard let typeIdx = root.propertyIndex("type"), !root.properties[typeIdx].node.enumValues.isEmpty,
              let disc = root.discriminator, disc.propertyIndex == typeIdx else {
            throw SchemaError(pointer: "#", reason: "the event contract must select data by an enum 'type' property")
        }
        let typeNode = root.properties[typeIdx].node
        self.root = root
        self.eventTypes = typeNode.enumValues
        self.eventTypeSymbols = typeNode.enumSymbols
        var bySymbol = [Int16](repeating: -1, count: compiler.symbols.count)
        for (k, s) in typeNode.enumSymbols.enumerated() { bySymbol[Int(s.id)] = Int16(k) }
        self.eventTypeIndexBySymbol = bySymbol
        self.slotCount = compiler.slotPaths.count
        self.slotPaths = compiler.slotPaths
        self.symbols = compiler.symbols

        var catalogue: [String: (slot: Int, kind: FieldKind, types: Set<Int>, allowed: [Int: SymbolSet])] = [:]
        let allTypes = Set(0..<typeNode.enumValues.count)
        func add(_ node: SchemaNode, on types: Set<Int>) throws {
            let kind = try EventContract.kind(of: node)
            var entry = catalogue[node.path] ?? (node.slot, kind, [], [:])
            guard entry.kind == kind else {
                throw SchemaError(pointer: node.path, reason: "field has kind \(kind) on one event type and \(entry.kind) on another")
            }
            entry.types.formUnion(types)
            let values = SymbolSet(node.items?.enumSymbols ?? node.enumSymbols)
            if !values.isEmpty { for t in types { entry.allowed[t, default: SymbolSet()] = entry.allowed[t, default: SymbolSet()].union(values) } }
            catalogue[node.path] = entry
            if kind == .object { for p in node.properties { try add(p.node, on: types) } }
        }
        for (k, p) in root.properties.enumerated() where !disc.overridden.contains(k) {
            try add(p.node, on: allTypes)
        }
        for (k, variant) in disc.variants.enumerated() {
            guard let t = typeNode.enumValues.firstIndex(of: variant.value) else {
                throw SchemaError(pointer: "#/allOf/\(k)", reason: "selects unknown type '\(variant.value)'")
            }
            for (_, node) in variant.overrides { for p in node.properties { try add(p.node, on: [t]) } }
        }
        var fields: [String: ContractField] = [:]
        for (path, e) in catalogue {
            fields[path] = ContractField(path: path, slot: e.slot, kind: e.kind, eventTypes: e.types, allowed: e.allowed)
        }
        self.fields = fields

        func slot(_ path: String) throws -> Int {
            guard let f = catalogue[path] else { throw SchemaError(pointer: path, reason: "the event contract must declare '\(path)'") }
            return f.slot
        }
        eventIdSlot = try slot("event_id")
        typeSlot = try slot("type")
        occurredAtSlot = try slot("occurred_at")
        agencySlot = try slot("agency")
        childIdSlot = try slot("child.id")
        recordedAtSlot = catalogue["recorded_at"]?.slot
        guard let svIdx = root.propertyIndex("schema_version"), case .number(_, let v?)? = root.properties[svIdx].node.constValue else {
            throw SchemaError(pointer: "schema_version", reason: "the event contract must fix schema_version with const")
        }
        schemaVersion = v
        for required in ["event_id", "type", "occurred_at", "agency", "child"] where !root.required.contains(required) {
            throw SchemaError(pointer: required, reason: "the engine needs '\(required)' to be required")
        }
    }

    static func kind(of node: SchemaNode) throws -> FieldKind {
        let t = node.types
        if !node.enumValues.isEmpty, t.contains(.string) { return .symbol }
        if t == .object { return .object }
        if t == .array {
            guard let items = node.items else { return .stringArray }
            return items.enumValues.isEmpty ? .stringArray : .symbolArray
        }
        if t == .string {
            if !node.enumValues.isEmpty { return .symbol }
            switch node.format {
            case .date?: return .date
            case .dateTime?: return .instant
            case nil:
                let name = node.path.split(separator: ".").last.map(String.init) ?? node.path
                let idLike = name == "id" || name.hasSuffix("_id") || name.hasSuffix("_ref")
                return .string(freeText: !idLike)
            }
        }
        if t == .boolean { return .bool }
        if t == [.number, .integer] || t == .integer { return .int }
        if t == .any, case .number? = node.constValue { return .int }
        throw SchemaError(pointer: node.path, reason: "cannot classify field for rules (types \(t.rawValue))")
    }

    /// The index of the event type `s` names, -1 when it names none. Inlinable: called from another module's
    /// mutating method (the engine's, once an event), it copied the whole contract to pass it.
    @inlinable public func eventTypeIndex(_ s: Symbol) -> Int {
        Int(s.id) < eventTypeIndexBySymbol.count ? Int(eventTypeIndexBySymbol[Int(s.id)]) : -1
    }

    public func eventTypeIndex(named name: String) -> Int? { eventTypes.firstIndex(of: name) }

    public func field(_ path: String) -> ContractField? { fields[path] }
}

/// Decodes and validates events against the contract, capturing the slots a rule set reads.
///
/// Immutable and `Sendable`: share one between threads, give each thread its own `EventRecord`.
public struct EventDecoder: Sendable {
    public let contract: EventContract
    public let validator: SchemaValidator
    /// Messages larger than this are rejected before parsing.
    public let maxBytes: Int

    public static let defaultMaxBytes = 64 * 1024

    /// - Parameter slots: slots to capture in addition to the envelope fields the engine always reads.
    public init(contract: EventContract, slots: some Sequence<Int>, maxBytes: Int = EventDecoder.defaultMaxBytes) {
        self.contract = contract
        var capture = [Bool](repeating: false, count: contract.slotCount)
        for s in [contract.eventIdSlot, contract.typeSlot, contract.occurredAtSlot, contract.agencySlot, contract.childIdSlot]
            + (contract.recordedAtSlot.map { [$0] } ?? []) {
            capture[s] = true
        }
        for s in slots where s >= 0 && s < capture.count { capture[s] = true }
        self.validator = SchemaValidator(root: contract.root, capture: capture)
        self.maxBytes = maxBytes
    }

    /// A decoder capturing every field (tests, tools).
    public init(contract: EventContract = .embedded) {
        self.init(contract: contract, slots: 0..<contract.slotCount)
    }

    public func makeRecord() -> EventRecord { EventRecord(slotCount: contract.slotCount) }

    public func decode(_ bytes: UnsafeRawBufferPointer, into record: inout EventRecord) -> ValidationFailure? {
        if bytes.count > maxBytes {
            record.reset()
            return ValidationFailure(kind: .tooLarge, path: "$", reason: "the message is \(bytes.count) bytes, over the \(maxBytes)-byte limit")
        }
        return validator.validate(bytes, into: &record)
    }

    public func decode(_ bytes: [UInt8], into record: inout EventRecord) -> ValidationFailure? {
        bytes.withUnsafeBytes { decode($0, into: &record) }
    }

    public func decode(_ text: String, into record: inout EventRecord) -> ValidationFailure? {
        var t = text
        return t.withUTF8 { decode(UnsafeRawBufferPointer($0), into: &record) }
    }
}
