internal import COpenSSL

/// Message digests, MACs and randomness from OpenSSL's default provider.
public enum Digest {
    /// SHA-256 of `bytes`.
    public static func sha256(_ bytes: some Collection<UInt8>) -> [UInt8] {
        digest(Array(bytes), Algorithms.shared.sha256)
    }

    /// SHA-1 of `bytes` (only for RFC 5280 §4.2.1.2 key identifiers, never for signatures).
    static func sha1(_ bytes: [UInt8]) -> [UInt8] { digest(bytes, Algorithms.shared.sha1) }

    private static func digest(_ bytes: [UInt8], _ md: OpaquePointer) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = bytes.withUnsafeBytes { EVP_Digest($0.baseAddress, $0.count, &out, &length, md, nil) }
        precondition(ok == 1, "digest failed: \(drainErrorQueue())")
        return Array(out.prefix(Int(length)))
    }
}

/// HMAC-SHA256 under one key, set once: OpenSSL's one-shot HMAC() fetches the MAC and its digest by name on
/// every call. Each message is authenticated on a copy of the keyed context.
public final class HMACSHA256: @unchecked Sendable {
    /// Keyed and never updated; only duplicated.
    private let keyed: OpaquePointer

    public init(key: [UInt8]) {
        let context = key.withUnsafeBufferPointer {
            copenssl_HMAC_SHA256_context(Algorithms.shared.hmac, $0.baseAddress, $0.count)
        }
        // Keying HMAC-SHA256 cannot fail short of allocation failure inside OpenSSL.
        guard let context else { preconditionFailure("HMAC-SHA256 context: \(drainErrorQueue())") }
        keyed = context
    }

    deinit { EVP_MAC_CTX_free(keyed) }

    /// The 32-byte MAC of `message`.
    public func authenticate(_ message: some Collection<UInt8>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length = 0
        guard let context = EVP_MAC_CTX_dup(keyed) else {
            preconditionFailure("HMAC-SHA256 copy: \(drainErrorQueue())")
        }
        defer { EVP_MAC_CTX_free(context) }
        let ok = Array(message).withUnsafeBufferPointer { data in
            EVP_MAC_update(context, data.baseAddress, data.count) == 1
                && EVP_MAC_final(context, &out, &length, out.count) == 1
        }
        precondition(ok && length == 32, "HMAC-SHA256 failed: \(drainErrorQueue())")
        return out
    }
}

/// Cryptographically secure random bytes from OpenSSL's DRBG.
public enum SecureRandom {
    /// `count` random bytes.
    public static func bytes(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        guard RAND_bytes(&out, Int32(count)) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "RAND_bytes")
        }
        return out
    }
}

/// Digest implementations fetched once per process (pitfall: implicit fetches on every call cost time).
final class Algorithms: @unchecked Sendable {
    static let shared = Algorithms()
    let sha1: OpaquePointer
    let sha256: OpaquePointer
    let sha384: OpaquePointer
    let sha512: OpaquePointer
    let aes256GCM: OpaquePointer
    let hmac: OpaquePointer
    /// A library context with only OpenSSL's `null` provider: certificates and CSRs parsed in it keep their
    /// SubjectPublicKeyInfo as bytes instead of decoding an EVP_PKEY. On OpenSSL 3.0 that decoding builds an
    /// OSSL_DECODER context per key (about 80 µs, more than an ECDSA verify, and most of a parse). Keys are
    /// decoded where they are used: `decodeSubjectPublicKey`, `Certificate.keyedPointer`.
    let structural: OpaquePointer

    private init() {
        // The default provider always has these; their absence means a broken installation.
        guard let sha1 = EVP_MD_fetch(nil, "SHA1", nil), let sha256 = EVP_MD_fetch(nil, "SHA256", nil),
            let sha384 = EVP_MD_fetch(nil, "SHA384", nil), let sha512 = EVP_MD_fetch(nil, "SHA512", nil),
            let aes = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil), let hmac = EVP_MAC_fetch(nil, "HMAC", nil)
        else { preconditionFailure("OpenSSL default provider lacks SHA-1/SHA-2/AES-GCM/HMAC: \(drainErrorQueue())") }
        self.sha1 = sha1
        self.sha256 = sha256
        self.sha384 = sha384
        self.sha512 = sha512
        self.aes256GCM = aes
        self.hmac = hmac
        guard let structural = OSSL_LIB_CTX_new(), OSSL_PROVIDER_load(structural, "null") != nil else {
            preconditionFailure("OpenSSL cannot create a library context with the null provider: \(drainErrorQueue())")
        }
        self.structural = structural
    }
}
