import Foundation
import Testing
@testable import VigilContract

/// `stableHash` is persisted (a child's folded events keep their ids' hashes in the changelog) and places children
/// in the engine's index: its values must never change.
@Suite struct StableHashTests {
    @Test func isFNV1a64() {
        // The FNV-1a test vectors.
        #expect(stableHash("") == 0xcbf2_9ce4_8422_2325)
        #expect(stableHash("a") == 0xaf63_dc4c_8601_ec8c)
        #expect(stableHash("foobar") == 0x8594_4171_f739_67e8)
    }

    @Test func aStringHashesAsItsUTF8() {
        let texts = ["", "e1", "EV-000123-home-visit-2007-02-05", "Zoë-Ødegård-🧒", String(repeating: "x", count: 300),
                     NSString(string: "bridged-\u{00e9}-text").description]
        for t in texts {
            #expect(stableHash(t) == stableHash(Array(t.utf8)), "\(t)")
            #expect(stableHash(t) == stableHash(t.utf8), "\(t)")
        }
    }
}
