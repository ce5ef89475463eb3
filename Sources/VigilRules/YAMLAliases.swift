/// Vigil's YAML files (rule packs, rule tests, settings) never need aliases (`*name`), and an alias is how a
/// small file expands to an exponential structure ("billion laughs"; an alias used as a mapping key is hashed
/// in full by the YAML library). Files are refused when they use one, before they are parsed.
public enum YAMLAliases {
    /// Line and column (1-based) of the first alias in `text`, if any.
    public static func first(in text: String) -> (line: Int, column: Int)? {
        var line = 1
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var quote: Character?
            var previous: Character = " "
            var lastSignificant: Character? = nil
            var column = 0
            var chars = raw.makeIterator()
            var current = chars.next()
            while let c = current {
                column += 1
                let next = chars.next()
                if let q = quote {
                    if c == q { quote = nil }
                } else if c == "#" && (previous == " " || column == 1) {
                    break
                } else if c == "\"" || c == "'" {
                    if lastSignificant == nil || ":-[{,?".contains(lastSignificant ?? " ") { quote = c }
                } else if c == "*", let n = next, n != " ", lastSignificant == nil || ":-[{,?".contains(lastSignificant ?? " "),
                          previous == " " || previous == "[" || previous == "{" || previous == "," || column == 1 {
                    return (line, column)
                }
                if c != " " { lastSignificant = c }
                previous = c
                current = next
            }
            line += 1
        }
        return nil
    }
}
