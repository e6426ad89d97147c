import SigilCrypto
import Testing

@Suite("PEMBlock")
struct PEMBlockTests {
    @Test("encoding wraps base64 at 64 columns and ends with a newline")
    func encodingShape() {
        let block = PEMBlock(label: "CERTIFICATE", der: [UInt8](repeating: 0x5a, count: 100))
        let lines = block.encoded.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.first == "-----BEGIN CERTIFICATE-----")
        #expect(lines.dropFirst().first?.count == 64)
        #expect(lines[lines.count - 2] == "-----END CERTIFICATE-----")
        #expect(lines.last == "")
        #expect(block.encoded.utf8.allSatisfy { $0 != UInt8(ascii: "\r") })
    }

    @Test("parses every block in order, ignoring text between them")
    func parsesMultipleBlocks() throws {
        let first = PEMBlock(label: "CERTIFICATE", der: Array(0..<70))
        let second = PEMBlock(label: "X509 CRL", der: [1, 2, 3])
        let third = PEMBlock(label: "PRIVATE KEY", der: [9])
        let text = "subject=CN=x\n" + first.encoded + "\nsome comment\n" + second.encoded + third.encoded + "trailer"
        #expect(try PEMBlock.parseAll(text) == [first, second, third])
    }

    @Test("accepts CRLF line endings and indented lines")
    func lenientWhitespace() throws {
        let block = PEMBlock(label: "CERTIFICATE", der: Array(0..<100))
        let crlf = block.encoded.replacingOccurrences(of: "\n", with: "\r\n")
        let indented = block.encoded.split(separator: "\n").map { "  \($0)  " }.joined(separator: "\n")
        #expect(try PEMBlock.parseAll(crlf) == [block])
        #expect(try PEMBlock.parseAll(indented) == [block])
    }

    @Test("text without blocks yields none")
    func noBlocks() throws {
        #expect(try PEMBlock.parseAll("").isEmpty)
        #expect(try PEMBlock.parseAll("hello\n-----END CERTIFICATE-----\n").isEmpty)
    }

    @Test(
        "unterminated, mismatched, nested, empty or non-base64 blocks are invalid encodings",
        arguments: [
            "-----BEGIN CERTIFICATE-----\nAQID\n",
            "-----BEGIN CERTIFICATE-----\nAQID\n-----END CRL-----\n",
            "-----BEGIN CERTIFICATE-----\nAQID\n-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n",
            PEMBlock(label: "A", der: [1]).encoded + "-----BEGIN B-----\nAQID",
        ])
    func malformedBlocks(_ text: String) {
        expectOpenSSLError(.invalidEncoding) { try PEMBlock.parseAll(text) }
    }
}
