import Foundation

/// One PEM block (RFC 7468): a label and the DER bytes it carries.
public struct PEMBlock: Hashable, Sendable {
    public let label: String
    public let der: [UInt8]

    public init(label: String, der: [UInt8]) {
        self.label = label
        self.der = der
    }

    /// The block in strict RFC 7468 form, 64 base64 characters a line, ending in a newline.
    public var encoded: String {
        var text = Array("-----BEGIN \(label)-----\n".utf8)
        text += Data(der).base64EncodedData(options: [.lineLength64Characters, .endLineWithLineFeed])
        if !der.isEmpty { text.append(0x0A) }
        text += Array("-----END \(label)-----\n".utf8)
        return String(decoding: text, as: UTF8.self)
    }

    /// Every well-formed block in `text`, in order; text between blocks is ignored. Lines may end in LF or
    /// CRLF and carry leading or trailing spaces and tabs.
    /// Throws `invalidEncoding` on an unterminated block or bad base64.
    public static func parseAll(_ text: String) throws -> [PEMBlock] {
        var lines: [ArraySlice<UInt8>] = []
        let bytes = Array(text.utf8)
        // ASCII, the only form PEM takes in practice, is read byte by byte; anything else by Characters, so
        // that Unicode line breaks and spaces are treated alike either way.
        if bytes.allSatisfy({ $0 < 0x80 }) {
            for line in bytes.split(omittingEmptySubsequences: false, whereSeparator: { (0x0A...0x0D).contains($0) }) {
                var trimmed = line
                while let first = trimmed.first, first == 0x20 || first == 0x09 { trimmed.removeFirst() }
                while let last = trimmed.last, last == 0x20 || last == 0x09 { trimmed.removeLast() }
                lines.append(trimmed)
            }
        } else {
            for line in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
                let trimmed = Array(line.trimmingCharacters(in: .whitespaces).utf8)
                lines.append(trimmed[...])
            }
        }
        return try parse(lines)
    }

    private static let dashes = Array("-----".utf8)
    private static let begin = Array("-----BEGIN ".utf8)
    private static let end = Array("-----END ".utf8)

    private static func parse(_ lines: [ArraySlice<UInt8>]) throws -> [PEMBlock] {
        var blocks: [PEMBlock] = []
        var label: ArraySlice<UInt8>? = nil
        var body: [UInt8] = []
        for line in lines {
            if let current = label {
                if line.count == end.count + current.count + dashes.count, line.starts(with: end),
                    line.dropFirst(end.count).starts(with: current), line.suffix(dashes.count).elementsEqual(dashes)
                {
                    guard let data = Data(base64Encoded: Data(body)), !data.isEmpty else {
                        throw OpenSSLError(
                            code: .invalidEncoding, reason: "bad base64 in PEM \(text(current))", file: #fileID,
                            line: #line)
                    }
                    blocks.append(PEMBlock(label: text(current), der: Array(data)))
                    label = nil
                    body = []
                } else if line.starts(with: dashes) {
                    throw OpenSSLError(
                        code: .invalidEncoding, reason: "unterminated PEM \(text(current))", file: #fileID, line: #line)
                } else {
                    body += line
                }
            } else if line.count > begin.count + dashes.count, line.starts(with: begin),
                line.suffix(dashes.count).elementsEqual(dashes)
            {
                label = line.dropFirst(begin.count).dropLast(dashes.count)
            }
        }
        if let label {
            throw OpenSSLError(
                code: .invalidEncoding, reason: "unterminated PEM \(text(label))", file: #fileID, line: #line)
        }
        return blocks
    }

    private static func text(_ bytes: ArraySlice<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }
}
