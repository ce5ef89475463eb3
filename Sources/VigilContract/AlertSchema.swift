/// The alert contract (`alert.schema.json`), compiled with Vigil's own schema compiler, for checking what
/// Vigil emits (tests, `vigil tail` consumers that want to be strict).
public enum AlertSchema {
    static let validator: SchemaValidator? = {
        var c = SchemaCompiler()
        guard let json = try? JSONValue.parse(EmbeddedContracts.alertSchema), let root = try? c.compile(json) else { return nil }
        return SchemaValidator(root: root, capture: [Bool](repeating: false, count: c.slotPaths.count))
    }()

    /// Why `json` does not satisfy the alert contract, or nil when it does.
    public static func failure(_ json: [UInt8]) -> ValidationFailure? {
        guard let validator else {
            return ValidationFailure(kind: .contract, path: "$", reason: "the embedded alert schema does not compile")
        }
        var r = EventRecord(slotCount: 0)
        return validator.validate(json, into: &r)
    }
}
