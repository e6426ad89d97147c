internal import COpenSSL

/// AES-256-GCM sealing, used to keep authority keys encrypted at rest under the key-encryption key.
///
/// The sealed form is `nonce (12) ‖ ciphertext ‖ tag (16)`; `associatedData` binds the ciphertext to its
/// context (e.g. the authority id) so a sealed key cannot be moved to another row unnoticed.
public enum AESGCM {
    public static let keyLength = 32
    static let nonceLength = 12
    static let tagLength = 16

    /// Encrypts and authenticates `plaintext` under a fresh random nonce.
    public static func seal(_ plaintext: [UInt8], key: [UInt8], associatedData: [UInt8]) throws -> [UInt8] {
        guard key.count == keyLength else {
            throw OpenSSLError(
                code: .invalidArgument, reason: "AES-256-GCM key must be 32 bytes", file: #fileID, line: #line)
        }
        let nonce = try SecureRandom.bytes(nonceLength)
        var tag = [UInt8](repeating: 0, count: tagLength)
        let ciphertext = try crypt(
            plaintext, key: key, nonce: nonce, associatedData: associatedData, tag: &tag, encrypt: true)
        return nonce + ciphertext + tag
    }

    /// Decrypts `sealed`; throws `decryptionFailed` if the key is wrong or any byte was changed.
    public static func open(_ sealed: [UInt8], key: [UInt8], associatedData: [UInt8]) throws -> [UInt8] {
        guard key.count == keyLength, sealed.count >= nonceLength + tagLength else {
            throw OpenSSLError(
                code: .decryptionFailed, reason: "sealed data too short or bad key length", file: #fileID, line: #line)
        }
        let nonce = Array(sealed.prefix(nonceLength))
        var tag = Array(sealed.suffix(tagLength))
        let ciphertext = Array(sealed.dropFirst(nonceLength).dropLast(tagLength))
        return try crypt(ciphertext, key: key, nonce: nonce, associatedData: associatedData, tag: &tag, encrypt: false)
    }

    /// One GCM pass in either direction (EVP_Cipher*): encrypting fills `tag`; decrypting checks the data
    /// against it at the final step, which fails with `decryptionFailed` on any mismatch.
    private static func crypt(
        _ input: [UInt8], key: [UInt8], nonce: [UInt8], associatedData: [UInt8], tag: inout [UInt8], encrypt: Bool
    ) throws -> [UInt8] {
        let failure: OpenSSLError.Code = encrypt ? .operationFailed : .decryptionFailed
        let context = try CipherContext()
        guard EVP_CipherInit_ex2(context.pointer, Algorithms.shared.aes256GCM, key, nonce, encrypt ? 1 : 0, nil) == 1
        else {
            throw OpenSSLError.drain(.operationFailed, "EVP_CipherInit_ex2")
        }
        var length: Int32 = 0
        if !associatedData.isEmpty {
            guard EVP_CipherUpdate(context.pointer, nil, &length, associatedData, Int32(associatedData.count)) == 1
            else { throw OpenSSLError.drain(.operationFailed, "EVP_CipherUpdate(aad)") }
        }
        var output = [UInt8](repeating: 0, count: input.count + 16)
        guard EVP_CipherUpdate(context.pointer, &output, &length, input, Int32(input.count)) == 1 else {
            throw OpenSSLError.drain(failure, "EVP_CipherUpdate")
        }
        var total = Int(length)
        if !encrypt {
            guard EVP_CIPHER_CTX_ctrl(context.pointer, copenssl_EVP_CTRL_GCM_SET_TAG(), Int32(tagLength), &tag) == 1
            else {
                throw OpenSSLError.drain(.operationFailed, "GCM set tag")
            }
        }
        let finalOK = output.withUnsafeMutableBufferPointer { buffer in
            EVP_CipherFinal_ex(context.pointer, buffer.baseAddress! + total, &length)
        }
        guard finalOK == 1 else {
            throw OpenSSLError.drain(failure, encrypt ? "EVP_CipherFinal_ex" : "GCM tag mismatch")
        }
        total += Int(length)
        if encrypt {
            guard EVP_CIPHER_CTX_ctrl(context.pointer, copenssl_EVP_CTRL_GCM_GET_TAG(), Int32(tagLength), &tag) == 1
            else {
                throw OpenSSLError.drain(.operationFailed, "GCM get tag")
            }
        }
        return Array(output.prefix(total))
    }
}

private final class CipherContext {
    let pointer: OpaquePointer
    init() throws {
        guard let context = EVP_CIPHER_CTX_new() else {
            throw OpenSSLError.drain(.operationFailed, "EVP_CIPHER_CTX_new")
        }
        pointer = context
    }
    deinit { EVP_CIPHER_CTX_free(pointer) }
}
