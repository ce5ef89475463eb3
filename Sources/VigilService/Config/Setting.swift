import Foundation
import VigilRules
import Yams

/// One setting of `vigil run`: its name (the flag without its dashes, and the key in the `--config` YAML
/// file), what kind of value it takes, its help, and how it is read, shown and checked. The default is the
/// `PipelineConfig` property's initial value.
public struct Setting: Sendable {
    public enum Kind: Sendable, Equatable {
        case text
        case number(ClosedRange<Int>)
        case flag
        case choice([String])
        /// `name=value` librdkafka properties: repeatable on the command line, a mapping in YAML.
        case properties
    }

    public let name: String
    public let kind: Kind
    public let help: String
    /// How `--help` names the value.
    public let valueName: String
    /// A one-letter alias (`-X` for `--kafka`).
    public let short: Character?
    /// The value as text (each property as `name=value`).
    let read: @Sendable (PipelineConfig) -> [String]
    /// Sets the value from text (adds one property).
    let write: @Sendable (inout PipelineConfig, String) -> String?
    /// An extra word for `--print-config`.
    let note: (@Sendable (PipelineConfig) -> String?)?

    /// The value in `config`, as text.
    public func values(_ config: PipelineConfig) -> [String] { read(config) }

    /// The default, as `--help` shows it.
    public var defaultText: String {
        let v = read(PipelineConfig())
        return kind == .properties ? "" : v.first ?? ""
    }

    /// Sets the setting from text; a message saying what is wrong otherwise.
    public func set(_ config: inout PipelineConfig, _ text: String) throws(PipelineConfig.ConfigError) {
        if let problem = write(&config, text) { throw PipelineConfig.ConfigError("\(name) \(problem)") }
    }

    /// What is wrong with the value in `config`, if anything.
    func check(_ config: PipelineConfig) -> String? {
        guard case .number(let range) = kind, let v = read(config).first.flatMap({ Int($0) }), !range.contains(v) else { return nil }
        return "\(name) must be between \(range.lowerBound) and \(range.upperBound)"
    }

    // MARK: kinds

    static func text(_ name: String, _ kp: WritableKeyPath<PipelineConfig, String> & Sendable, value: String = "name", help: String) -> Setting {
        Setting(name: name, kind: .text, help: help, valueName: value, short: nil, read: { [$0[keyPath: kp]] },
                write: { c, s in c[keyPath: kp] = s; return nil }, note: nil)
    }

    static func number(_ name: String, _ kp: WritableKeyPath<PipelineConfig, Int> & Sendable, range: ClosedRange<Int>, value: String = "n",
                       help: String, note: (@Sendable (PipelineConfig) -> String?)? = nil) -> Setting {
        Setting(name: name, kind: .number(range), help: help, valueName: value, short: nil, read: { [String($0[keyPath: kp])] },
                write: { c, s in
                    guard let i = Int(s) else { return "must be a whole number" }
                    c[keyPath: kp] = i
                    return nil
                }, note: note)
    }

    static func flag(_ name: String, _ kp: WritableKeyPath<PipelineConfig, Bool> & Sendable, help: String) -> Setting {
        Setting(name: name, kind: .flag, help: help, valueName: "", short: nil, read: { [String($0[keyPath: kp])] },
                write: { c, s in
                    switch s {
                    case "true", "yes": c[keyPath: kp] = true
                    case "false", "no": c[keyPath: kp] = false
                    default: return "must be true or false"
                    }
                    return nil
                }, note: nil)
    }

    static func choice<E: RawRepresentable & CaseIterable & Sendable>(_ name: String, _ kp: WritableKeyPath<PipelineConfig, E> & Sendable,
                                                                      help: String) -> Setting where E.RawValue == String {
        let names = E.allCases.map(\.rawValue)
        return Setting(name: name, kind: .choice(names), help: help, valueName: names.joined(separator: "|"), short: nil,
                       read: { [$0[keyPath: kp].rawValue] },
                       write: { c, s in
                           guard let v = E(rawValue: s) else { return "must be \(names.joined(separator: " or "))" }
                           c[keyPath: kp] = v
                           return nil
                       }, note: nil)
    }

    static func properties(_ name: String, _ kp: WritableKeyPath<PipelineConfig, [String]> & Sendable, short: Character? = nil, help: String) -> Setting {
        Setting(name: name, kind: .properties, help: help, valueName: "property=value", short: short, read: { $0[keyPath: kp] },
                write: { c, s in
                    guard let eq = s.firstIndex(of: "="), eq != s.startIndex else { return "expects property=value" }
                    c[keyPath: kp].append(s)
                    return nil
                }, note: nil)
    }
}

extension PipelineConfig {
    /// Reads settings from a YAML mapping: keys as the settings' names (`input-topic: ...`); the property
    /// settings (`kafka`, ...) are mappings of librdkafka properties.
    public mutating func load(yaml text: String, path: String) throws(ConfigError) {
        if let (line, column) = YAMLAliases.first(in: text) {
            throw ConfigError("\(path):\(line):\(column): YAML aliases (*name) are not allowed in settings files")
        }
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch { throw ConfigError("\(path): not valid YAML: \(error)") }
        guard case .mapping(let m)? = node else { throw ConfigError("\(path): expected a mapping of settings") }
        for (k, v) in m {
            guard let key = k.string else { continue }
            let line = k.mark?.line ?? 0
            guard let setting = Self.setting(named: key) else {
                throw ConfigError("\(path):\(line): unknown setting '\(key)' (known: \(Self.settings.map(\.name).joined(separator: ", ")))")
            }
            do throws(ConfigError) {
                if setting.kind == .properties {
                    guard case .mapping(let props) = v else { throw ConfigError("\(key) must be a mapping of librdkafka properties") }
                    for (pk, pv) in props {
                        guard let name = pk.string, let value = pv.string else { continue }
                        try setting.set(&self, "\(name)=\(value)")
                    }
                } else {
                    guard let s = v.string else { throw ConfigError("\(key) must be a single value") }
                    try setting.set(&self, s)
                }
            } catch {
                throw ConfigError("\(path):\(line): \(error.message)")
            }
        }
    }

    /// Reads settings from command-line arguments: `--name value`, `--name=value`, `--flag`, and a property
    /// setting's short form (`-X property=value`).
    public mutating func parse(arguments: [String]) throws(ConfigError) {
        var i = 0
        while i < arguments.count {
            let arg = arguments[i]
            i += 1
            var name: String
            var inline: String?
            if arg.hasPrefix("--") {
                name = String(arg.dropFirst(2))
                if let eq = name.firstIndex(of: "=") {
                    inline = String(name[name.index(after: eq)...])
                    name = String(name[..<eq])
                }
            } else if arg.hasPrefix("-"), arg.count >= 2, let s = Self.settings.first(where: { $0.short == arg.dropFirst().first }) {
                name = s.name
                if arg.count > 2 { inline = String(arg.dropFirst(2)) }
            } else {
                throw ConfigError("unexpected argument '\(arg)'")
            }
            guard let setting = Self.setting(named: name) else {
                throw ConfigError("unknown option '--\(name)' (see vigil run --help)")
            }
            if setting.kind == .flag && inline == nil {
                try setting.set(&self, "true")
                continue
            }
            guard let value = inline ?? (i < arguments.count ? arguments[i] : nil) else {
                throw ConfigError("--\(name) needs a value (\(setting.valueName))")
            }
            if inline == nil { i += 1 }
            try setting.set(&self, value)
        }
    }

    /// The settings as YAML, in the `--config` format. Property values that look like secrets are masked.
    public var yaml: String {
        func q(_ s: String) -> String { s.isEmpty || s.contains(where: { ": #'\"{}[],&*!|>%@`".contains($0) }) ? "'" + s.replacingOccurrences(of: "'", with: "''") + "'" : s }
        var out = ""
        for s in Self.settings {
            let values = s.values(self)
            if s.kind == .properties {
                guard !values.isEmpty else { continue }
                out += "\(s.name):\n"
                for p in values {
                    let parts = p.split(separator: "=", maxSplits: 1).map(String.init)
                    let name = parts.first ?? p
                    out += "  \(name): \(Self.isSecret(name) ? "'***'" : q(parts.count > 1 ? parts[1] : ""))\n"
                }
            } else {
                let note = s.note?(self).map { "  # \($0)" } ?? ""
                out += "\(s.name): \(s.kind == .text ? q(values.first ?? "") : values.first ?? "")\(note)\n"
            }
        }
        return out
    }

    /// Whether a librdkafka property may hold a secret (never printed): passwords, keys and their PEM text,
    /// SASL configurations and tokens. Errs on the side of masking.
    static func isSecret(_ name: String) -> Bool {
        let n = name.lowercased()
        return ["password", "secret", "jaas", "oauthbearer", "token", "credential", "key.pem", "private"].contains { n.contains($0) }
            || n.hasSuffix(".key") || n.hasSuffix("_key")
    }

    /// The settings as `--help` lists them: each flag with its value and default, then its help, in lines
    /// short enough that the help printer does not re-wrap them.
    public static var helpText: String {
        var lines: [String] = []
        for s in settings {
            var flag = "--\(s.name)"
            if let c = s.short { flag = "-\(c), " + flag }
            if !s.valueName.isEmpty { flag += " <\(s.valueName)>" }
            let d = s.defaultText
            if s.kind != .properties && s.kind != .flag { flag += "  (default: \(d.isEmpty ? "none" : d))" }
            lines.append("  " + flag)
            var line = "     "
            for word in s.help.split(separator: " ") {
                if line.count + word.count + 1 > 76 {
                    lines.append(line)
                    line = "     "
                }
                line += " " + word
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}
