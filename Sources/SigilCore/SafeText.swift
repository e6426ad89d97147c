/// Text that came from outside (a token header, a content type, a client certificate) on its way into a
/// reason, a log line or a terminal: control characters escaped, length bounded.
///
/// Refusal reasons are fixed sentences; where a value helps an operator, at most an `excerpt` of it follows.
/// Log lines and `sigil audit list` escape what they print, so a newline or a terminal escape sequence in a
/// stored value can never forge a line or drive the operator's terminal.
public enum SafeText {
    /// The longest excerpt of attacker-supplied text a reason may carry, in bytes of its escaped form.
    public static let excerptLimit = 128

    /// `text` with control characters escaped, cut to at most `limit` bytes (UTF-8) of escaped text; a cut is
    /// marked with `…` (counted in the limit).
    public static func excerpt(_ text: some StringProtocol, limit: Int = excerptLimit) -> String {
        let escaped = escapingControlCharacters(text, stopAfter: limit + 1)
        guard escaped.utf8.count > limit else { return escaped }
        var result = ""
        var bytes = 0
        let marker = "…"
        for character in escaped {
            let size = character.utf8.count
            if bytes + size + marker.utf8.count > limit { break }
            result.append(character)
            bytes += size
        }
        return result + marker
    }

    /// `text` with C0 and C1 control characters, DEL and the Unicode bidirectional overrides written as
    /// `\u{XX}`, and backslashes doubled, so the result is one printable line that reads back unambiguously.
    /// - Parameter stopAfter: stop once the output has this many bytes (the caller cuts it anyway).
    public static func escapingControlCharacters(_ text: some StringProtocol, stopAfter: Int = .max) -> String {
        var output = ""
        var bytes = 0
        for scalar in text.unicodeScalars {
            if bytes >= stopAfter { break }
            let piece: String
            if needsEscape(scalar) {
                piece = "\\u{\(String(scalar.value, radix: 16))}"
            } else if scalar == "\\" {
                piece = "\\\\"
            } else {
                output.unicodeScalars.append(scalar)
                bytes += String(scalar).utf8.count
                continue
            }
            output += piece
            bytes += piece.utf8.count
        }
        return output
    }

    /// Whether `text` holds nothing `escapingControlCharacters` would change (the cheap path for log lines).
    public static func isPlain(_ text: some StringProtocol) -> Bool {
        text.utf8.allSatisfy { $0 >= 0x20 && $0 != 0x7f && $0 != UInt8(ascii: "\\") && $0 < 0x80 }
            || !text.unicodeScalars.contains { needsEscape($0) || $0 == "\\" }
    }

    static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1f, 0x7f...0x9f: return true
        // Bidirectional embeddings, overrides and isolates reorder what a terminal shows (CVE-2021-42574).
        case 0x202a...0x202e, 0x2066...0x2069: return true
        default: return false
        }
    }
}
