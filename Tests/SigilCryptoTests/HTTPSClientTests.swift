import Foundation
import Testing

@testable import SigilCrypto

@Suite("HTTPSClient")
struct HTTPSClientTests {
    private func read(_ chunks: [String], limit: Int = 1024) throws -> ResponseReader {
        var reader = ResponseReader(limit: limit)
        for chunk in chunks where !reader.isComplete { try reader.append(ArraySlice(chunk.utf8)) }
        if !reader.isComplete { try reader.finish() }
        return reader
    }

    @Test("a Content-Length body is complete once that many bytes arrived, whatever comes later")
    func contentLength() throws {
        let reader = try read(["HTTP/1.1 201 Created\r\nContent-Le", "ngth: 5\r\nETag: \"x\"\r\n\r\nhel", "lo"])
        #expect(reader.isComplete && reader.status == 201)
        #expect(String(decoding: reader.body, as: UTF8.self) == "hello")
        #expect(reader.headers.contains { $0.name == "etag" && $0.value == "\"x\"" })
    }

    @Test("a chunked body is decoded, split anywhere")
    func chunked() throws {
        let reader = try read([
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwi", "ki\r\n5;ext=1\r\npedia\r\n0\r\n", "\r\n",
        ])
        #expect(String(decoding: reader.body, as: UTF8.self) == "wikipedia")
    }

    @Test("304 has no body; without framing the body runs to the end of the connection")
    func unframed() throws {
        #expect(try read(["HTTP/1.1 304 Not Modified\r\n\r\n"]).body.isEmpty)
        #expect(String(decoding: try read(["HTTP/1.1 200 OK\r\n\r\nabc", "def"]).body, as: UTF8.self) == "abcdef")
    }

    @Test("truncated, oversized or malformed answers are protocol errors")
    func refusals() {
        for chunks in [
            ["HTTP/1.1 200 OK\r\nContent-"],  // closed before the headers end
            ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"],  // closed inside the body
            ["HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n"],  // over the limit
            ["SSH-2.0-OpenSSH\r\n\r\n"],  // not HTTP
            ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],  // bad chunk size
        ] {
            #expect(throws: HTTPSClientError.self, "\(chunks)") { _ = try read(chunks) }
        }
        #expect(throws: HTTPSClientError.self) { _ = try read([String(repeating: "x", count: 80 * 1024)]) }
    }

    @Test("trust must hold a certificate; the URL must be https; a closed port fails fast as connect")
    func setup() throws {
        #expect(throws: OpenSSLError.self) { _ = try HTTPSClient(trust: "not PEM") }
        let pem = try CertificateJWKTests.selfSigned(.p256).pem
        let client = try HTTPSClient(trust: pem)
        #expect { try client.send("GET", "http://127.0.0.1:1/", timeout: .seconds(2)) } throws: {
            ($0 as? HTTPSClientError)?.kind == .connect
        }
        #expect { try client.send("GET", "https://127.0.0.1:1/", timeout: .seconds(2)) } throws: {
            ($0 as? HTTPSClientError)?.kind == .connect
        }
        // A header with a line break is refused before any connection (else this would be a connect error).
        let smuggling = [("Authorization", "Bearer a\r\nX-Injected: 1")]
        #expect { try client.send("GET", "https://127.0.0.1:1/", headers: smuggling, timeout: .seconds(2)) } throws: {
            ($0 as? HTTPSClientError)?.kind == .protocolError
        }
    }

    @Test(
        "a host is an IP literal only when it parses as one; anything else is a DNS name",
        arguments: [
            ("127.0.0.1", GeneralName.ip("127.0.0.1")), ("::1", .ip("::1")), ("[::1]", .ip("::1")),
            ("sigil.example", .dns("sigil.example")), ("1.2", .dns("1.2")), ("999.1.1.1", .dns("999.1.1.1")),
            ("localhost", .dns("localhost")),
        ])
    func hostNames(_ host: String, _ expected: GeneralName) {
        #expect(GeneralName(host: host) == expected)
    }
}
