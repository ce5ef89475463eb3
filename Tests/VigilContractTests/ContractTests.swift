import Foundation
import Testing
@testable import VigilContract

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

func decode(_ text: String) -> (EventRecord, ValidationFailure?) {
    let d = EventDecoder()
    var r = d.makeRecord()
    let f = d.decode(text, into: &r)
    return (r, f)
}

let good = #"{"schema_version":1,"event_id":"e1","type":"home_visit","occurred_at":"2007-02-05T10:00:00Z","agency":"children_social_care","child":{"id":"C1","date_of_birth":"2006-03-01"},"data":{"access":"no_answer","child_seen":false,"adults_present":["P1","P2"]}}"#

@Suite struct EmbeddedContractTests {
    @Test func embeddedSchemasMatchTheContractFiles() throws {
        let events = try String(contentsOf: repoRoot.appendingPathComponent("contracts/events.schema.json"), encoding: .utf8)
        let alert = try String(contentsOf: repoRoot.appendingPathComponent("contracts/alert.schema.json"), encoding: .utf8)
        #expect(events.trimmingCharacters(in: .whitespacesAndNewlines) == EmbeddedContracts.eventsSchema.trimmingCharacters(in: .whitespacesAndNewlines),
                "run scripts/embed-contracts")
        #expect(alert.trimmingCharacters(in: .whitespacesAndNewlines) == EmbeddedContracts.alertSchema.trimmingCharacters(in: .whitespacesAndNewlines),
                "run scripts/embed-contracts")
    }

    @Test func catalogueKnowsFieldsAndTheirKinds() {
        let c = EventContract.embedded
        #expect(c.eventTypes.count == 20)
        #expect(c.field("data.status")?.kind == .symbol)
        #expect(c.field("data.explanation")?.kind == .string(freeText: true))
        #expect(c.field("data.person_ref")?.kind == .string(freeText: false))
        #expect(c.field("child.date_of_birth")?.kind == .date)
        #expect(c.field("occurred_at")?.kind == .instant)
        #expect(c.field("data.invited_agencies")?.kind == .symbolArray)
        #expect(c.field("data.sites")?.kind == .stringArray)
        #expect(c.field("schema_version")?.kind == .int)
        let planType = c.eventTypeIndex(named: "plan_status")!
        let policeType = c.eventTypeIndex(named: "police_investigation")!
        let status = c.field("data.status")!
        #expect(status.allowed[planType]!.contains(c.symbols.symbol("started")!))
        #expect(!status.allowed[planType]!.contains(c.symbols.symbol("opened")!))
        #expect(status.allowed[policeType]!.contains(c.symbols.symbol("opened")!))
    }

    @Test func everyScenarioEventIsValid() throws {
        let text = try String(contentsOf: repoRoot.appendingPathComponent("scenarios/haringey-2006-2007.jsonl"), encoding: .utf8)
        var n = 0
        for line in text.split(separator: "\n") {
            let (_, f) = decode(String(line))
            #expect(f == nil, "\(f?.description ?? "")")
            n += 1
        }
        #expect(n == 36)
    }

    @Test func capturesTypedValues() {
        let c = EventContract.embedded
        let (r, f) = decode(good)
        #expect(f == nil)
        #expect(r[c.eventIdSlot] == .string("e1"))
        #expect(r[c.typeSlot] == .symbol(c.symbols.symbol("home_visit")!))
        #expect(r[c.occurredAtSlot] == .instant(RFC3339.parseDateTime("2007-02-05T10:00:00Z")!))
        #expect(r[c.field("child.date_of_birth")!.slot] == .date(Day(year: 2006, month: 3, day: 1)!))
        #expect(r[c.field("data.child_seen")!.slot] == .bool(false))
        #expect(r[c.field("data.adults_present")!.slot] == .strings(["P1", "P2"]))
        #expect(r[c.field("data.status")!.slot] == .missing)
    }

    @Test func eachSlotIsListedOnceHoweverOftenItIsSet() {
        // An array's items set its slot before the array does: listed at each setting, a child's timeline
        // packed the array once per item.
        let c = EventContract.embedded
        let (r, f) = decode(good)
        #expect(f == nil)
        #expect(Set(r.writtenSlots).count == r.writtenSlots.count)
        #expect(r.writtenSlots.contains(Int32(c.field("data.adults_present")!.slot)))
        var x = EventRecord(slotCount: 4)
        x.set(2, .int(1))
        x.set(1, .int(5))
        x.set(2, .int(3))
        #expect(x.writtenSlots == [2, 1] && x[2] == .int(3))
        x.reset()
        #expect(x.writtenSlots.isEmpty && x[2] == .missing && x[1] == .missing)
    }

    @Test func dataBeforeTypeIsValidatedAgainstTheType() {
        let text = #"{"data":{"access":"no_answer","child_seen":"yes"},"schema_version":1,"event_id":"e1","type":"home_visit","occurred_at":"2007-02-05T10:00:00Z","agency":"gp","child":{"id":"C1"}}"#
        let (_, f) = decode(text)
        #expect(f?.path == "$.data.child_seen")
        #expect(f?.reason == "expected a boolean, found a string")
    }
}

@Suite struct MalformedEventTests {
    func failure(_ text: String) -> ValidationFailure? { decode(text).1 }

    @Test func notJSON() {
        let f = failure("hello")
        #expect(f?.kind == .invalidJSON)
        #expect(f?.path == "$")
    }

    @Test func truncated() {
        let f = failure(String(good.prefix(80)))
        #expect(f?.kind == .invalidJSON)
        #expect(f?.reason.contains("truncated") == true)
    }

    @Test func wrongTypes() {
        let f = failure(good.replacingOccurrences(of: #""child_seen":false"#, with: #""child_seen":0"#))
        #expect(f?.kind == .contract)
        #expect(f?.path == "$.data.child_seen")
        #expect(f?.reason == "expected a boolean, found an integer")
    }

    @Test func unknownType() {
        let f = failure(good.replacingOccurrences(of: "home_visit", with: "home_vist"))
        #expect(f?.path == "$.type")
        #expect(f?.reason.hasPrefix("not one of the allowed values: appointment,") == true)
    }

    @Test func missingChildId() {
        let f = failure(good.replacingOccurrences(of: #""id":"C1","#, with: ""))
        #expect(f?.path == "$.child")
        #expect(f?.reason == "missing required property 'id'")
    }

    @Test func oversized() {
        let d = EventDecoder(contract: .embedded, slots: [], maxBytes: 100)
        var r = d.makeRecord()
        #expect(d.decode(good, into: &r)?.kind == .tooLarge)
    }

    @Test func wrongSchemaVersion() {
        let f = failure(good.replacingOccurrences(of: #""schema_version":1"#, with: #""schema_version":2"#))
        #expect(f?.kind == .unsupportedSchemaVersion)
        #expect(f?.path == "$.schema_version")
    }

    @Test func notUTF8() {
        var bytes = Array(good.utf8)
        let i = bytes.firstIndex(of: UInt8(ascii: "C"))!
        bytes[i] = 0xC3
        bytes[i + 1] = 0x28
        let d = EventDecoder()
        var r = d.makeRecord()
        #expect(d.decode(bytes, into: &r)?.kind == .invalidUTF8)
    }

    @Test func unknownProperty() {
        let f = failure(good.replacingOccurrences(of: #""announced""#, with: #""x""#).replacingOccurrences(of: #""access""#, with: #""acess""#))
        // The unknown name is message content: neither the path nor the reason quotes it.
        #expect(f?.path == "$.data.<undeclared>")
        #expect(f?.reason.hasPrefix("a property the contract does not declare here (declared: ") == true)
        #expect(f.map { !"\($0)".contains("acess") } == true)
    }

    @Test func badDateTime() {
        let f = failure(good.replacingOccurrences(of: "2007-02-05T10:00:00Z", with: "2007-02-30T10:00:00Z"))
        #expect(f?.path == "$.occurred_at")
    }

    @Test func duplicateProperty() {
        let f = failure(good.replacingOccurrences(of: #""event_id":"e1","#, with: #""event_id":"e1","event_id":"e2","#))
        #expect(f?.path == "$.event_id")
        #expect(f?.reason == "property 'event_id' appears twice")
    }

    @Test func duplicateItemsInAUniqueArray() {
        let text = #"{"schema_version":1,"event_id":"e1","type":"core_group","occurred_at":"2007-02-05T10:00:00Z","agency":"gp","child":{"id":"C1"},"data":{"attending_agencies":["gp","gp"]}}"#
        let f = failure(text)
        #expect(f?.path == "$.data.attending_agencies[1]")
    }

    @Test func reasonsNeverQuoteValues() {
        let secret = "Jane Smith lives at 1 High Street"
        for text in [
            good.replacingOccurrences(of: "no_answer", with: secret),
            good.replacingOccurrences(of: #""child_seen":false"#, with: #""child_seen":"\#(secret)""#),
            good.replacingOccurrences(of: "2007-02-05T10:00:00Z", with: secret),
        ] {
            let f = failure(text)
            #expect(f != nil)
            #expect(f?.description.contains("Jane") == false)
        }
    }

    /// Raw DEL and C1 bytes in an identifier are refused wherever they sit (the scanner notes them as it skips
    /// plain bytes eight at a time); a multi-byte character that is not a control character is not.
    @Test func rawControlBytesInAnIdentifierAreRefusedAtEveryOffset() {
        let d = EventDecoder()
        var r = d.makeRecord()
        func validate(_ id: [UInt8]) -> ValidationFailure? {
            let text = Array(good.utf8)
            let value = Array(#""event_id":"e1""#.utf8)
            let at = (0...(text.count - value.count)).first { Array(text[$0..<($0 + value.count)]) == value }! + value.count - 3
            return d.decode(Array(text[..<at]) + id + Array(text[(at + 2)...]), into: &r)
        }
        for length in 1...20 {
            for offset in 0..<length {
                var plain = Array(repeating: UInt8(ascii: "x"), count: length)
                #expect(validate(plain) == nil)
                plain[offset] = 0x7F
                #expect(validate(plain)?.reason == "control characters are not allowed in an identifier", "DEL at \(offset) of \(length)")
                var c1 = Array(repeating: UInt8(ascii: "x"), count: length)
                c1.replaceSubrange(offset..<(offset + 1), with: [0xC2, 0x9B])
                #expect(validate(c1)?.reason == "control characters are not allowed in an identifier", "C1 at \(offset) of \(length)")
                var nbsp = Array(repeating: UInt8(ascii: "x"), count: length)
                nbsp.replaceSubrange(offset..<(offset + 1), with: [0xC2, 0xA0, 0xC3, 0xA9])
                #expect(validate(nbsp) == nil, "U+00A0 and U+00E9 at \(offset) of \(length)")
            }
        }
    }

    /// Every string the scanner reads ends at its closing quote, decodes to its text and counts its scalars,
    /// whatever its length and wherever its escapes, quotes and multi-byte characters fall.
    @Test func scannerReadsStringsOfEveryShape() {
        let pieces = ["a", "Z", " ", "é", "€", "𝄞", "\u{7F}", "\"", "\\", "\n", "\u{1}", "/"]
        var state: UInt64 = 42
        func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
        for _ in 0..<3_000 {
            let n = next(41)
            let text = (0..<n).map { _ in pieces[next(pieces.count)] }.joined()
            let json = Array(JSONValue.string(text).jsonText.utf8) + Array(#","#.utf8)
            json.withUnsafeBufferPointer { b in
                var s = JSONScanner(base: b.baseAddress!, count: b.count)
                let tok = s.scanString()
                #expect(tok != nil && s.pos == b.count - 1)
                if let tok {
                    #expect(s.string(tok) == text)
                    #expect(tok.scalarCount == text.unicodeScalars.count)
                    #expect(s.hasControlCharacters(tok) == text.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) })
                }
            }
        }
    }

    @Test func deepNestingIsRejectedNotCrashed() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        let text = good.replacingOccurrences(of: #""adults_present":["P1","P2"]"#, with: #""adults_present":\#(deep)"#)
        #expect(failure(text) != nil)
    }
}

@Suite struct TimeTests {
    @Test func parsesAndFormatsRFC3339() {
        #expect(RFC3339.parseDateTime("2007-03-14T00:00:00Z")?.description == "2007-03-14T00:00:00Z")
        #expect(RFC3339.parseDateTime("2007-06-19T23:00:00.250Z")?.description == "2007-06-19T23:00:00.25Z")
        #expect(RFC3339.parseDateTime("2007-06-20T00:00:00+01:00")?.description == "2007-06-19T23:00:00Z")
        #expect(RFC3339.parseDateTime("2007-06-20t00:00:00z")?.description == "2007-06-20T00:00:00Z")
        #expect(RFC3339.parseDateTime("2007-06-20T24:00:00Z") == nil)
        #expect(RFC3339.parseDateTime("2007-06-20 10:00:00Z") == nil)
        #expect(RFC3339.parseDateTime("2007-06-20T10:00Z") == nil)
        #expect(RFC3339.parseDateTime("1969-12-31T23:59:59Z")?.micros == -1_000_000)
        #expect(RFC3339.parseDate("2008-02-29") != nil)
        #expect(RFC3339.parseDate("2007-02-29") == nil)
    }

    @Test func addsMonthsClampingToTheMonthEnd() {
        let d = Day(year: 2007, month: 1, day: 31)!
        #expect(d.adding(months: 1).description == "2007-02-28")
        #expect(Day(year: 2006, month: 12, day: 22)!.adding(months: 3).description == "2007-03-22")
        #expect(Day(year: 2007, month: 11, day: 30)!.adding(months: -12).description == "2006-11-30")
        #expect(Day(year: 2007, month: 3, day: 12)!.isoWeekday == 1)
        #expect(Day(year: 1970, month: 1, day: 1)!.isoWeekday == 4)
    }
}

@Suite struct JSONTests {
    @Test func roundTripsAndRejectsDuplicates() throws {
        let v = try JSONValue.parse(#"{"a":[1,2.5,"x\n\u00e9"],"b":{"c":null,"d":true}}"#)
        #expect(v.jsonText == #"{"a":[1,2.5,"x\né"],"b":{"c":null,"d":true}}"#)
        #expect(throws: JSONSyntaxError.self) { try JSONValue.parse(#"{"a":1,"a":2}"#) }
        #expect(throws: JSONSyntaxError.self) { try JSONValue.parse(#"{"a":1"#) }
        #expect(throws: JSONSyntaxError.self) { try JSONValue.parse(#""\ud800""#) }
    }

    @Test func schemaCompilerRefusesUnsupportedKeywords() throws {
        var c = SchemaCompiler()
        #expect(throws: SchemaError.self) { try c.compile(try JSONValue.parse(#"{"type":"object","patternProperties":{}}"#)) }
    }
}
