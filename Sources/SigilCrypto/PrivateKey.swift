internal import COpenSSL
import Synchronization

/// A private key held by OpenSSL. Never printed: `description` names the algorithm only.
public final class PrivateKey: @unchecked Sendable, CustomStringConvertible {
    // EVP_PKEY is safe to use for signing from several threads once built; this object is immutable.
    let pointer: OpaquePointer

    init(taking pointer: OpaquePointer) { self.pointer = pointer }
    deinit { EVP_PKEY_free(pointer) }

    /// Generates a fresh key pair.
    public static func generate(_ algorithm: KeyAlgorithm) throws -> PrivateKey {
        let name: String
        switch algorithm {
        case .ec: name = "EC"
        case .rsa: name = "RSA"
        case .ed25519: name = "ED25519"
        case .other(let other):
            throw OpenSSLError(code: .unsupportedKey, reason: "cannot generate \(other)", file: #fileID, line: #line)
        }
        guard KeyAlgorithm.generatable.contains(algorithm) else {
            throw OpenSSLError(
                code: .unsupportedKey, reason: "cannot generate \(algorithm)", file: #fileID, line: #line)
        }
        guard let context = EVP_PKEY_CTX_new_from_name(nil, name, nil) else {
            throw OpenSSLError.drain(.operationFailed, "EVP_PKEY_CTX_new_from_name(\(name))")
        }
        defer { EVP_PKEY_CTX_free(context) }
        guard EVP_PKEY_keygen_init(context) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "EVP_PKEY_keygen_init")
        }
        switch algorithm {
        case .ec(let curve):
            let group = curve == "P-384" ? "P-384" : "P-256"
            guard EVP_PKEY_CTX_set_group_name(context, group) == 1 else {
                throw OpenSSLError.drain(.operationFailed, "EVP_PKEY_CTX_set_group_name")
            }
        case .rsa(let bits):
            guard EVP_PKEY_CTX_set_rsa_keygen_bits(context, Int32(bits)) == 1 else {
                throw OpenSSLError.drain(.operationFailed, "EVP_PKEY_CTX_set_rsa_keygen_bits")
            }
        default: break
        }
        var key: OpaquePointer? = nil
        guard EVP_PKEY_generate(context, &key) == 1, let key else {
            throw OpenSSLError.drain(.operationFailed, "EVP_PKEY_generate")
        }
        return PrivateKey(taking: key)
    }

    /// Reads a private key from PEM (PKCS#8 `PRIVATE KEY`, or a traditional EC/RSA block).
    public convenience init(pem: String) throws {
        let key = try MemoryBIO.reading(Array(pem.utf8)) { bio in
            PEM_read_bio_PrivateKey(bio, nil, nil, nil)
        }
        guard let key else { throw OpenSSLError.drain(.invalidEncoding, "not a PEM private key") }
        self.init(taking: key)
    }

    /// Reads a PKCS#8 DER private key.
    public convenience init(pkcs8DER der: [UInt8]) throws {
        let key = try decodeDER(der, "private key", free: { EVP_PKEY_free($0) }) { cursor, length in
            d2i_AutoPrivateKey(nil, cursor, length)
        }
        self.init(taking: key)
    }

    /// PKCS#8 `-----BEGIN PRIVATE KEY-----` PEM.
    public func pkcs8PEM() throws -> String {
        let bio = try MemoryBIO()
        guard PEM_write_bio_PrivateKey(bio.pointer, pointer, nil, nil, 0, nil, nil) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "PEM_write_bio_PrivateKey")
        }
        return bio.string
    }

    /// PKCS#8 DER.
    public func pkcs8DER() throws -> [UInt8] {
        guard let info = EVP_PKEY2PKCS8(pointer) else { throw OpenSSLError.drain(.operationFailed, "EVP_PKEY2PKCS8") }
        defer { PKCS8_PRIV_KEY_INFO_free(info) }
        return try encodeDER("PKCS#8") { i2d_PKCS8_PRIV_KEY_INFO(info, $0) }
    }

    /// The public half.
    public func publicKey() throws -> PublicKeyInfo {
        let der = try encodeDER("public key") { i2d_PUBKEY(pointer, $0) }
        return PublicKeyInfo(der: der, algorithm: describeKey(pointer))
    }

    public var algorithm: KeyAlgorithm { describeKey(pointer) }

    public var description: String { "PrivateKey(\(algorithm))" }

    /// Signs `message` (hashing it with the digest that goes with the key; Ed25519 signs it whole).
    public func sign(_ message: [UInt8]) throws -> [UInt8] {
        let context = try DigestContext()
        guard EVP_DigestSignInit(context.pointer, nil, signingDigest(for: pointer), nil, pointer) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "EVP_DigestSignInit")
        }
        // A one-shot context: without this flag the final step copies the whole signing context first, so
        // that it could be used again.
        EVP_MD_CTX_set_flags(context.pointer, EVP_MD_CTX_FLAG_FINALISE)
        // The key's maximum signature size (an ECDSA signature is often a byte or two shorter).
        var length = Int(EVP_PKEY_get_size(pointer))
        guard length > 0 else { throw OpenSSLError.drain(.operationFailed, "EVP_PKEY_get_size") }
        var signature = [UInt8](repeating: 0, count: length)
        guard EVP_DigestSign(context.pointer, &signature, &length, message, message.count) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "EVP_DigestSign")
        }
        return Array(signature.prefix(length))
    }
}

/// A DER SubjectPublicKeyInfo with its algorithm.
public struct PublicKeyInfo: Hashable, Sendable {
    /// DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7).
    public let der: [UInt8]
    public let algorithm: KeyAlgorithm

    public init(der: [UInt8], algorithm: KeyAlgorithm) {
        self.der = der
        self.algorithm = algorithm
    }

    /// SHA-256 over the DER SubjectPublicKeyInfo, lowercase hex: the key's stable fingerprint.
    public var sha256Fingerprint: String { hexString(Digest.sha256(der)) }

    /// `-----BEGIN PUBLIC KEY-----` PEM.
    public var pem: String { PEMBlock(label: "PUBLIC KEY", der: der).encoded }
}

final class DigestContext {
    let pointer: OpaquePointer
    init() throws {
        guard let context = EVP_MD_CTX_new() else { throw OpenSSLError.drain(.operationFailed, "EVP_MD_CTX_new") }
        pointer = context
    }
    deinit { EVP_MD_CTX_free(pointer) }
}

/// Names an EVP_PKEY's algorithm and size.
func describeKey(_ key: OpaquePointer) -> KeyAlgorithm {
    if EVP_PKEY_is_a(key, "EC") == 1 {
        var buffer = [CChar](repeating: 0, count: 80)
        var length = 0
        guard EVP_PKEY_get_group_name(key, &buffer, buffer.count, &length) == 1 else {
            drainErrorQueue()
            return .ec(curve: "unknown")
        }
        let name = String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        switch name {
        case "prime256v1", "P-256", "secp256r1": return .p256
        case "secp384r1", "P-384": return .p384
        default: return .ec(curve: name)
        }
    }
    if EVP_PKEY_is_a(key, "RSA") == 1 { return .rsa(bits: Int(EVP_PKEY_get_bits(key))) }
    if EVP_PKEY_is_a(key, "ED25519") == 1 { return .ed25519 }
    if let name = EVP_PKEY_get0_type_name(key) { return .other(String(cString: name)) }
    return .other("unknown")
}

/// Why a public key must not be certified even though its type is known, or nil. Found by the hostile-input
/// suite: OpenSSL decodes these keys and even verifies signatures made with them.
/// - RSA: CA/Browser Forum BR §6.1.6 — the exponent is odd and 2^16+1 ≤ e < 2^256. With e = 1 the
///   "signature" is the padded digest itself, so a CSR proves possession of nothing.
/// - EC: RFC 5480 §2.1.1 — only namedCurve parameters; explicit parameters are refused by Go and BoringSSL
///   and hide which curve is in use.
func keyWeakness(_ key: OpaquePointer) -> String? {
    if EVP_PKEY_is_a(key, "RSA") == 1 {
        var exponent: OpaquePointer? = nil
        guard EVP_PKEY_get_bn_param(key, "e", &exponent) == 1, let exponent else {
            drainErrorQueue()
            return "RSA public exponent cannot be read"
        }
        defer { BN_free(exponent) }
        let bits = BN_num_bits(exponent)
        // The smallest 17-bit number, 2^16, is even: an odd exponent of 17 to 256 bits is ≥ 65537.
        guard BN_is_odd(exponent) == 1, bits >= 17, bits <= 256 else {
            return "RSA public exponent is not odd and ≥ 65537"
        }
    }
    if EVP_PKEY_is_a(key, "EC") == 1 {
        var buffer = [CChar](repeating: 0, count: 32)
        var length = 0
        guard EVP_PKEY_get_utf8_string_param(key, "encoding", &buffer, buffer.count, &length) == 1 else {
            drainErrorQueue()
            return "EC parameter encoding cannot be read"
        }
        let encoding = String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard encoding == "named_curve" else { return "EC key has \(encoding) curve parameters, not a named curve" }
        // The point is on the curve and not the point at infinity (the quick check skips the costly order check).
        guard let context = EVP_PKEY_CTX_new_from_pkey(nil, key, nil) else {
            drainErrorQueue()
            return "EC public key cannot be checked"
        }
        defer { EVP_PKEY_CTX_free(context) }
        guard EVP_PKEY_public_check_quick(context) == 1 else {
            drainErrorQueue()
            return "EC public key is not a valid point on its curve"
        }
    }
    return nil
}

/// The digest X.509 signatures by `key` use: SHA-384 for P-384, none for Ed25519 (PureEdDSA), else SHA-256.
func signingDigest(for key: OpaquePointer) -> OpaquePointer? {
    switch describeKey(key) {
    case .ed25519: return nil
    case .p384: return Algorithms.shared.sha384
    default: return Algorithms.shared.sha256
    }
}

/// Decodes a SubjectPublicKeyInfo into an EVP_PKEY (the caller frees it), or nil when OpenSSL cannot.
/// Named-curve EC keys, a mesh's common case, are imported from curve and point (`ECKeyImport`, about 20×
/// cheaper on OpenSSL 3.0); any other key, and an EC key that import refuses, goes through OpenSSL's
/// decoders, so that both paths accept exactly what the decoders accept.
func decodeSubjectPublicKey(_ spki: OpaquePointer?) -> OpaquePointer? {
    guard let spki else { return nil }
    defer { drainErrorQueue() }
    var algorithm: OpaquePointer? = nil
    var bits: UnsafePointer<UInt8>? = nil
    var length: Int32 = 0
    var parameters: UnsafeMutablePointer<X509_ALGOR>? = nil
    guard X509_PUBKEY_get0_param(&algorithm, &bits, &length, &parameters, spki) == 1 else { return nil }
    if OBJ_obj2nid(algorithm) == NID_X9_62_id_ecPublicKey, let bits {
        var type: Int32 = 0
        var value: UnsafeRawPointer? = nil
        X509_ALGOR_get0(nil, &type, &value, parameters)
        if type == V_ASN1_OBJECT, let curve = value,
            let key = ECKeyImport.shared.key(curve: OBJ_obj2nid(OpaquePointer(curve)), point: bits, length: Int(length))
        {
            return key
        }
    }
    guard let der = try? encodeDER("SPKI", { i2d_X509_PUBKEY(spki, $0) }) else { return nil }
    return der.withUnsafeBufferPointer { buffer in
        var cursor = buffer.baseAddress
        return d2i_PUBKEY(nil, &cursor, buffer.count)
    }
}

/// Imports EC public keys by curve and point. The first key of each curve is made with EVP_PKEY_fromdata
/// (`copenssl_EC_public_key`, ~15 µs, most of it building the curve's group); later ones duplicate that key
/// and set the new point (~4 µs). Both set the point through EC_POINT_oct2point, which refuses points off
/// the curve. At most one template per curve OpenSSL knows.
final class ECKeyImport: @unchecked Sendable {
    static let shared = ECKeyImport()
    /// An EVP_PKEY that is never modified, only duplicated (EVP_PKEY_dup reads it under OpenSSL's locks).
    private struct Template: @unchecked Sendable { let key: OpaquePointer }
    private let templates = Mutex<[Int32: Template]>([:])

    func key(curve: Int32, point: UnsafePointer<UInt8>, length: Int) -> OpaquePointer? {
        if let template = templates.withLock({ $0[curve] }) {
            guard let key = EVP_PKEY_dup(template.key) else { return nil }
            guard EVP_PKEY_set1_encoded_public_key(key, point, length) == 1 else {
                EVP_PKEY_free(key)
                return nil
            }
            return key
        }
        guard let key = copenssl_EC_public_key(curve, point, length) else { return nil }
        if let copy = EVP_PKEY_dup(key) {
            let template = Template(key: copy)
            templates.withLock { known in
                if known[curve] == nil { known[curve] = template } else { EVP_PKEY_free(template.key) }
            }
        }
        return key
    }
}
