/// A validator for JSON from callers (request bodies, JWT headers and claims) that refuses what lenient
/// decoders quietly resolve: duplicate member names (RFC 8259 §4 leaves them undefined, RFC 7519 §4 says
/// reject or take the last; Foundation takes one, JWTKit the other, so `{"alg":"none","alg":"RS256"}` meant
/// two things at once), invalid UTF-8 and lone surrogates (RFC 7493 §2.1), trailing commas and other
/// syntax a decoder may forgive, and nesting deeper than `maxDepth`. `object` also hands back a top-level
/// object's members, so a body is read in the same pass that checks it.
public enum StrictJSON {
    /// Throws `CAError` with `code` and a reason naming the first problem.
    public static func validate(_ bytes: [UInt8], code: CAError.Code = .badRequest, maxDepth: Int = 32) throws {
        _ = try object(bytes, code: code, maxDepth: maxDepth)
    }

    /// The first problem in `bytes`, or nil when it is one strict JSON value.
    public static func problem(in bytes: [UInt8], maxDepth: Int = 32) -> String? {
        do {
            _ = try parse(bytes, maxDepth: maxDepth)
            return nil
        } catch {
            return reason(error)
        }
    }

    /// Checks `bytes` as `validate` does and, when it is an object, returns its members; nil for any other value.
    /// - Throws: `CAError` with `code` and a reason naming the first problem.
    public static func object(_ bytes: [UInt8], code: CAError.Code = .badRequest, maxDepth: Int = 32) throws -> Object?
    {
        do {
            let members = try parse(bytes, maxDepth: maxDepth)
            return members.map { Object(bytes: bytes, members: $0) }
        } catch {
            throw CAError(code, reason: "JSON refused: \(reason(error))")
        }
    }

    /// A checked top-level object: each member's value is read from its bytes on request.
    public struct Object {
        let bytes: [UInt8]
        /// Member name (decoded) → the bytes of its value.
        let members: [String: Range<Int>]

        /// Whether the member is absent or `null`.
        public func isAbsentOrNull(_ name: String) -> Bool {
            guard let range = members[name] else { return true }
            return bytes[range].elementsEqual("null".utf8)
        }

        /// The member's value if it is a string.
        public func string(_ name: String) -> String? {
            guard let range = members[name], bytes[range.lowerBound] == UInt8(ascii: "\"") else { return nil }
            var parser = Parser(bytes: bytes, maxDepth: 1)
            parser.offset = range.lowerBound
            return try? parser.string(keep: true)
        }

        /// The member's value if it is a number written as an integer (no fraction or exponent) that fits an Int.
        public func integer(_ name: String) -> Int? {
            guard let range = members[name] else { return nil }
            return Int(String(decoding: bytes[range], as: UTF8.self))
        }
    }

    /// Parses one strict JSON value; returns the members of a top-level object, else nil.
    private static func parse(_ bytes: [UInt8], maxDepth: Int) throws -> [String: Range<Int>]? {
        guard String(validating: bytes, as: UTF8.self) != nil else { throw Failure("not valid UTF-8") }
        var parser = Parser(bytes: bytes, maxDepth: maxDepth)
        parser.skipWhitespace()
        let isObject = parser.current == UInt8(ascii: "{")
        try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.offset == bytes.count else { throw Failure("trailing content at byte \(parser.offset)") }
        return isObject ? parser.topLevelMembers : nil
    }

    private static func reason(_ error: any Error) -> String { (error as? Failure)?.reason ?? "\(error)" }

    struct Failure: Error {
        let reason: String
        init(_ reason: String) { self.reason = reason }
    }

    struct Parser {
        let bytes: [UInt8]
        let maxDepth: Int
        var offset = 0
        /// The top-level object's members, name → value bytes, as they are parsed.
        var topLevelMembers: [String: Range<Int>] = [:]

        init(bytes: [UInt8], maxDepth: Int) {
            self.bytes = bytes
            self.maxDepth = maxDepth
        }

        var current: UInt8? { offset < bytes.count ? bytes[offset] : nil }

        mutating func skipWhitespace() {
            while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { offset += 1 }
        }

        mutating func expect(_ byte: UInt8) throws {
            guard current == byte else {
                throw Failure("expected '\(Character(Unicode.Scalar(byte)))' at byte \(offset)")
            }
            offset += 1
        }

        mutating func value(depth: Int) throws {
            guard depth < maxDepth else { throw Failure("nested deeper than \(maxDepth)") }
            switch current {
            case UInt8(ascii: "{"): try object(depth: depth + 1)
            case UInt8(ascii: "["): try array(depth: depth + 1)
            case UInt8(ascii: "\""): _ = try string(keep: false)
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            case .some(let byte)
            where byte == UInt8(ascii: "-") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte): try number()
            default: throw Failure("unexpected \(current.map { "byte \($0)" } ?? "end") at byte \(offset)")
            }
        }

        mutating func object(depth: Int) throws {
            try expect(UInt8(ascii: "{"))
            skipWhitespace()
            if current == UInt8(ascii: "}") {
                offset += 1
                return
            }
            var names = Set<String>()
            while true {
                skipWhitespace()
                guard current == UInt8(ascii: "\"") else { throw Failure("expected a member name at byte \(offset)") }
                let name = try string(keep: true)
                guard names.insert(name).inserted else { throw Failure("duplicate member name \"\(name.prefix(40))\"") }
                skipWhitespace()
                try expect(UInt8(ascii: ":"))
                skipWhitespace()
                let start = offset
                try value(depth: depth)
                if depth == 1 { topLevelMembers[name] = start..<offset }
                skipWhitespace()
                if current == UInt8(ascii: ",") {
                    offset += 1
                    continue
                }
                try expect(UInt8(ascii: "}"))
                return
            }
        }

        mutating func array(depth: Int) throws {
            try expect(UInt8(ascii: "["))
            skipWhitespace()
            if current == UInt8(ascii: "]") {
                offset += 1
                return
            }
            while true {
                skipWhitespace()
                try value(depth: depth)
                skipWhitespace()
                if current == UInt8(ascii: ",") {
                    offset += 1
                    continue
                }
                try expect(UInt8(ascii: "]"))
                return
            }
        }

        mutating func literal(_ word: String) throws {
            let expected = Array(word.utf8)
            guard offset + expected.count <= bytes.count, Array(bytes[offset..<(offset + expected.count)]) == expected
            else {
                throw Failure("bad literal at byte \(offset)")
            }
            offset += expected.count
        }

        mutating func digits() -> Int {
            let start = offset
            while let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { offset += 1 }
            return offset - start
        }

        mutating func number() throws {
            if current == UInt8(ascii: "-") { offset += 1 }
            if current == UInt8(ascii: "0") {
                offset += 1
            } else if digits() == 0 {
                throw Failure("bad number at byte \(offset)")
            }
            if current == UInt8(ascii: ".") {
                offset += 1
                guard digits() > 0 else { throw Failure("bad fraction at byte \(offset)") }
            }
            if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
                offset += 1
                if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { offset += 1 }
                guard digits() > 0 else { throw Failure("bad exponent at byte \(offset)") }
            }
        }

        /// A string, checked; with `keep`, its decoded value (member names are compared decoded: "a" and
        /// "\u0061" are the same name). Values are only checked while parsing, not copied: a CSR is most of a
        /// request body, and `Object.string` decodes the one value it is asked for.
        mutating func string(keep: Bool) throws -> String {
            try expect(UInt8(ascii: "\""))
            // The decoded value as UTF-8 (the input is valid UTF-8, checked before parsing).
            var value: [UInt8] = []
            func keepScalar(_ scalar: Unicode.Scalar) {
                if keep, let encoded = UTF8.encode(scalar) { value.append(contentsOf: encoded) }
            }
            while let byte = current {
                offset += 1
                switch byte {
                case UInt8(ascii: "\""):
                    return String(decoding: value, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard let escape = current else { throw Failure("unterminated string") }
                    offset += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): keepScalar(Unicode.Scalar(escape))
                    case UInt8(ascii: "b"): keepScalar("\u{08}")
                    case UInt8(ascii: "f"): keepScalar("\u{0C}")
                    case UInt8(ascii: "n"): keepScalar("\n")
                    case UInt8(ascii: "r"): keepScalar("\r")
                    case UInt8(ascii: "t"): keepScalar("\t")
                    case UInt8(ascii: "u"):
                        let unit = try hex4()
                        if (0xD800..<0xDC00).contains(unit) {
                            guard current == UInt8(ascii: "\\"), offset + 1 < bytes.count,
                                bytes[offset + 1] == UInt8(ascii: "u")
                            else {
                                throw Failure("lone surrogate in string")
                            }
                            offset += 2
                            let low = try hex4()
                            guard (0xDC00..<0xE000).contains(low) else { throw Failure("lone surrogate in string") }
                            keepScalar(Unicode.Scalar(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)) ?? "\u{FFFD}")
                        } else if (0xDC00..<0xE000).contains(unit) {
                            throw Failure("lone surrogate in string")
                        } else {
                            keepScalar(Unicode.Scalar(unit) ?? "\u{FFFD}")
                        }
                    default: throw Failure("bad escape at byte \(offset - 1)")
                    }
                case 0..<0x20:
                    throw Failure("control character in string at byte \(offset - 1)")
                default:
                    if keep { value.append(byte) }
                }
            }
            throw Failure("unterminated string")
        }

        mutating func hex4() throws -> UInt32 {
            guard offset + 4 <= bytes.count,
                let value = UInt32(String(decoding: bytes[offset..<(offset + 4)], as: UTF8.self), radix: 16),
                bytes[offset..<(offset + 4)].allSatisfy({ $0 != UInt8(ascii: "+") && $0 != UInt8(ascii: "-") })
            else { throw Failure("bad \\u escape at byte \(offset)") }
            offset += 4
            return value
        }
    }
}
