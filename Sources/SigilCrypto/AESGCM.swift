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
            throw OpenSSLError(code: .invalidArgument, reason: "AES-256-GCM key must be 32 bytes", file: #fileID, line: #line)
        }
        let nonce = try SecureRandom.bytes(nonceLength)
        let context = try CipherContext()
        guard EVP_EncryptInit_ex2(context.pointer, Algorithms.shared.aes256GCM, key, nonce, nil) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "EVP_EncryptInit_ex2")
        }
        var length: Int32 = 0
        if !associatedData.isEmpty {
            guard EVP_EncryptUpdate(context.pointer, nil, &length, associatedData, Int32(associatedData.count)) == 1
            else { throw OpenSSLError.drain(.operationFailed, "EVP_EncryptUpdate(aad)") }
        }
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count + 16)
        guard EVP_EncryptUpdate(context.pointer, &ciphertext, &length, plaintext, Int32(plaintext.count)) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "EVP_EncryptUpdate")
        }
        var total = Int(length)
        let finalOK = ciphertext.withUnsafeMutableBufferPointer { buffer in
            EVP_EncryptFinal_ex(context.pointer, buffer.baseAddress! + total, &length)
        }
        guard finalOK == 1 else { throw OpenSSLError.drain(.operationFailed, "EVP_EncryptFinal_ex") }
        total += Int(length)
        var tag = [UInt8](repeating: 0, count: tagLength)
        guard EVP_CIPHER_CTX_ctrl(context.pointer, copenssl_EVP_CTRL_GCM_GET_TAG(), Int32(tagLength), &tag) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "GCM get tag")
        }
        return nonce + ciphertext.prefix(total) + tag
    }

    /// Decrypts `sealed`; throws `decryptionFailed` if the key is wrong or any byte was changed.
    public static func open(_ sealed: [UInt8], key: [UInt8], associatedData: [UInt8]) throws -> [UInt8] {
        guard key.count == keyLength, sealed.count >= nonceLength + tagLength else {
            throw OpenSSLError(code: .decryptionFailed, reason: "sealed data too short or bad key length", file: #fileID, line: #line)
        }
        let nonce = Array(sealed.prefix(nonceLength))
        var tag = Array(sealed.suffix(tagLength))
        let ciphertext = Array(sealed.dropFirst(nonceLength).dropLast(tagLength))
        let context = try CipherContext()
        guard EVP_DecryptInit_ex2(context.pointer, Algorithms.shared.aes256GCM, key, nonce, nil) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "EVP_DecryptInit_ex2")
        }
        var length: Int32 = 0
        if !associatedData.isEmpty {
            guard EVP_DecryptUpdate(context.pointer, nil, &length, associatedData, Int32(associatedData.count)) == 1
            else { throw OpenSSLError.drain(.operationFailed, "EVP_DecryptUpdate(aad)") }
        }
        var plaintext = [UInt8](repeating: 0, count: ciphertext.count + 16)
        guard EVP_DecryptUpdate(context.pointer, &plaintext, &length, ciphertext, Int32(ciphertext.count)) == 1 else {
            throw OpenSSLError.drain(.decryptionFailed, "EVP_DecryptUpdate")
        }
        var total = Int(length)
        guard EVP_CIPHER_CTX_ctrl(context.pointer, copenssl_EVP_CTRL_GCM_SET_TAG(), Int32(tagLength), &tag) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "GCM set tag")
        }
        let finalOK = plaintext.withUnsafeMutableBufferPointer { buffer in
            EVP_DecryptFinal_ex(context.pointer, buffer.baseAddress! + total, &length)
        }
        guard finalOK == 1 else { throw OpenSSLError.drain(.decryptionFailed, "GCM tag mismatch") }
        total += Int(length)
        return Array(plaintext.prefix(total))
    }
}

private final class CipherContext {
    let pointer: OpaquePointer
    init() throws {
        guard let context = EVP_CIPHER_CTX_new() else { throw OpenSSLError.drain(.operationFailed, "EVP_CIPHER_CTX_new") }
        pointer = context
    }
    deinit { EVP_CIPHER_CTX_free(pointer) }
}
