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
        let base64 = Data(der).base64EncodedString()
        var lines = ["-----BEGIN \(label)-----"]
        var index = base64.startIndex
        while index < base64.endIndex {
            let end = base64.index(index, offsetBy: 64, limitedBy: base64.endIndex) ?? base64.endIndex
            lines.append(String(base64[index..<end]))
            index = end
        }
        lines.append("-----END \(label)-----")
        return lines.joined(separator: "\n") + "\n"
    }

    /// Every well-formed block in `text`, in order; text between blocks is ignored.
    /// Throws `invalidEncoding` on an unterminated block or bad base64.
    public static func parseAll(_ text: String) throws -> [PEMBlock] {
        var blocks: [PEMBlock] = []
        var label: String? = nil
        var body = ""
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if let current = label {
                if line == "-----END \(current)-----" {
                    guard let data = Data(base64Encoded: body), !data.isEmpty else {
                        throw OpenSSLError(code: .invalidEncoding, reason: "bad base64 in PEM \(current)", file: #fileID, line: #line)
                    }
                    blocks.append(PEMBlock(label: current, der: Array(data)))
                    label = nil
                    body = ""
                } else if line.hasPrefix("-----") {
                    throw OpenSSLError(code: .invalidEncoding, reason: "unterminated PEM \(current)", file: #fileID, line: #line)
                } else {
                    body += line
                }
            } else if line.hasPrefix("-----BEGIN "), line.hasSuffix("-----"), line.count > 16 {
                label = String(line.dropFirst(11).dropLast(5))
            }
        }
        if let label {
            throw OpenSSLError(code: .invalidEncoding, reason: "unterminated PEM \(label)", file: #fileID, line: #line)
        }
        return blocks
    }
}
