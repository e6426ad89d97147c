internal import COpenSSL

/// Lowercase hexadecimal rendering of bytes, no separators.
public func hexString(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0x0f)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// Runs an `i2d_*`-style encoder that allocates its output, returning the bytes.
func encodeDER(
    _ what: String, file: String = #fileID, line: Int = #line,
    _ encoder: (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>) -> Int32
) throws -> [UInt8] {
    var out: UnsafeMutablePointer<UInt8>? = nil
    let length = encoder(&out)
    guard length > 0, let out else {
        throw OpenSSLError.drain(.operationFailed, "DER encoding of \(what) failed", file: file, line: line)
    }
    defer { copenssl_free(out) }
    return Array(UnsafeBufferPointer(start: out, count: Int(length)))
}

/// Runs a `d2i_*`-style decoder over all of `bytes`; trailing garbage is an error (and the decoded object is
/// released with `free`, found leaking by `sigil-fuzz csr-der`).
func decodeDER(
    _ bytes: [UInt8], _ what: String, file: String = #fileID, line: Int = #line,
    free: (OpaquePointer) -> Void,
    _ decoder: (UnsafeMutablePointer<UnsafePointer<UInt8>?>, Int) -> OpaquePointer?
) throws -> OpaquePointer {
    try bytes.withUnsafeBufferPointer { buffer in
        guard let base = buffer.baseAddress, !buffer.isEmpty else {
            throw OpenSSLError(code: .invalidEncoding, reason: "empty \(what)", file: file, line: line)
        }
        var cursor: UnsafePointer<UInt8>? = base
        guard let object = decoder(&cursor, buffer.count) else {
            throw OpenSSLError.drain(.invalidEncoding, "not a DER \(what)", file: file, line: line)
        }
        if let cursor, cursor != base + buffer.count {
            free(object)
            drainErrorQueue()
            throw OpenSSLError(
                code: .invalidEncoding, reason: "trailing bytes after DER \(what)", file: file, line: line)
        }
        return object
    }
}

/// A memory BIO owned by Swift.
final class MemoryBIO {
    let pointer: OpaquePointer

    init() throws {
        guard let bio = BIO_new(BIO_s_mem()) else { throw OpenSSLError.drain(.operationFailed, "BIO_new") }
        pointer = bio
    }

    deinit { BIO_free(pointer) }

    var contents: [UInt8] {
        var data: UnsafeMutablePointer<CChar>? = nil
        let length = copenssl_BIO_get_mem_data(pointer, &data)
        guard length > 0, let data else { return [] }
        return data.withMemoryRebound(to: UInt8.self, capacity: length) {
            Array(UnsafeBufferPointer(start: $0, count: length))
        }
    }

    var string: String { String(decoding: contents, as: UTF8.self) }

    /// Runs `body` with a read-only BIO over `bytes` (valid only inside the closure).
    static func reading<T>(_ bytes: [UInt8], _ body: (OpaquePointer) throws -> T) throws -> T {
        try bytes.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else {
                throw OpenSSLError.drain(.operationFailed, "BIO_new_mem_buf")
            }
            defer { BIO_free(bio) }
            return try body(bio)
        }
    }
}

/// Reads an ASN1_STRING's bytes.
func asn1Bytes(_ string: UnsafePointer<ASN1_STRING>?) -> [UInt8] {
    guard let string, let data = ASN1_STRING_get0_data(string) else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: Int(ASN1_STRING_length(string))))
}
