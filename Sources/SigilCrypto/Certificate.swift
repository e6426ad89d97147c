internal import COpenSSL
import Foundation
import Synchronization

/// A parsed X.509 certificate. Immutable; safe to share between tasks.
public final class Certificate: @unchecked Sendable, Hashable, CustomStringConvertible {
    /// Parsed in `Algorithms.structural`: every field, with the public key kept as bytes. For reading fields.
    let pointer: OpaquePointer
    /// The certificate's DER encoding, exactly as parsed.
    public let der: [UInt8]
    /// The parse with the public key decoded, made on first use: see `keyedPointer`.
    private let keyed = Mutex<OpaquePointer?>(nil)
    /// `pem`, encoded on first use: an authority's certificates go out with every issuance.
    private let encodedPEM = Mutex<String?>(nil)

    private init(taking pointer: OpaquePointer, der: [UInt8]) {
        self.pointer = pointer
        self.der = der
    }

    deinit {
        X509_free(pointer)
        keyed.withLock { if let parsed = $0 { X509_free(parsed) } }
    }

    /// Parses a DER certificate.
    public convenience init(der: [UInt8]) throws {
        let pointer = try decodeDER(der, "certificate", free: { X509_free($0) }) { cursor, length in
            ASN1_item_d2i_ex(nil, cursor, length, X509_it(), Algorithms.shared.structural, nil)
        }
        // Cache the extensions now, once: that step also tries a SHA-1 fingerprint, which the structural
        // context cannot compute, and leaves an error behind.
        _ = X509_get_extension_flags(pointer)
        drainErrorQueue()
        self.init(taking: pointer, der: der)
    }

    /// The certificate parsed with its public key decoded, in the default library context: for the key itself
    /// and for OpenSSL operations on the certificate (signature checks, path validation), which run in the
    /// certificate's context. Parsed on first use and kept. Falls back to the structural parse, whose key
    /// cannot be used, only if OpenSSL fails where the structural parse succeeded.
    var keyedPointer: OpaquePointer {
        keyed.withLock { cached in
            if let cached { return cached }
            guard let parsed = try? decodeDER(der, "certificate", free: { X509_free($0) }, { d2i_X509(nil, $0, $1) })
            else {
                return pointer
            }
            cached = parsed
            return parsed
        }
    }

    /// Parses the first `CERTIFICATE` block of `pem`.
    public convenience init(pem: String) throws {
        guard let block = try PEMBlock.parseAll(pem).first(where: { $0.label == "CERTIFICATE" }) else {
            throw OpenSSLError(
                code: .invalidEncoding, reason: "no CERTIFICATE block in PEM", file: #fileID, line: #line)
        }
        try self.init(der: block.der)
    }

    /// Every `CERTIFICATE` block of `pem`, in order.
    public static func parseChain(pem: String) throws -> [Certificate] {
        try PEMBlock.parseAll(pem).filter { $0.label == "CERTIFICATE" }.map { try Certificate(der: $0.der) }
    }

    public var pem: String {
        encodedPEM.withLock { cached in
            if let cached { return cached }
            let encoded = PEMBlock(label: "CERTIFICATE", der: der).encoded
            cached = encoded
            return encoded
        }
    }

    public var serial: SerialNumber {
        guard let integer = X509_get0_serialNumber(pointer) else { return SerialNumber(bytes: []) }
        return SerialNumber(bytes: asn1Bytes(integer))
    }

    public var subject: DistinguishedName { DistinguishedName(reading: X509_get_subject_name(pointer)) }
    public var issuer: DistinguishedName { DistinguishedName(reading: X509_get_issuer_name(pointer)) }

    /// DER of the subject Name, for exact comparison with a child's issuer (RFC 5280 §7.1 name chaining).
    public var subjectNameDER: [UInt8] {
        (try? encodeDER("subject name") { i2d_X509_NAME(X509_get_subject_name(pointer), $0) }) ?? []
    }

    public var issuerNameDER: [UInt8] {
        (try? encodeDER("issuer name") { i2d_X509_NAME(X509_get_issuer_name(pointer), $0) }) ?? []
    }

    public var notBefore: Date { readTime(X509_get0_notBefore(pointer)) }
    public var notAfter: Date { readTime(X509_get0_notAfter(pointer)) }

    /// The SubjectPublicKeyInfo's DER, as it is in the certificate (no key decoding).
    public var subjectPublicKeyInfoDER: [UInt8] {
        (try? encodeDER("SPKI") { i2d_X509_PUBKEY(X509_get_X509_PUBKEY(pointer), $0) }) ?? []
    }

    /// The SubjectPublicKeyInfo and the key's algorithm (which decodes the key).
    public var publicKey: PublicKeyInfo {
        let algorithm = X509_get0_pubkey(keyedPointer).map(describeKey) ?? .other("undecodable")
        drainErrorQueue()
        return PublicKeyInfo(der: subjectPublicKeyInfoDER, algorithm: algorithm)
    }

    /// SHA-256 over the DER certificate, lowercase hex.
    public var sha256Fingerprint: String { hexString(Digest.sha256(der)) }

    /// The signature algorithm's short name (e.g. `ecdsa-with-SHA256`).
    public var signatureAlgorithm: String {
        let nid = X509_get_signature_nid(pointer)
        return OBJ_nid2ln(nid).map { String(cString: $0) } ?? "unknown"
    }

    public var subjectKeyIdentifier: [UInt8]? {
        guard let ski = X509_get0_subject_key_id(pointer) else { return nil }
        return asn1Bytes(ski)
    }

    public var authorityKeyIdentifier: [UInt8]? {
        guard let aki = X509_get0_authority_key_id(pointer) else { return nil }
        return asn1Bytes(aki)
    }

    public var subjectAlternativeNames: Flagged<[GeneralName]>? {
        var critical: Int32 = 0
        guard let raw = X509_get_ext_d2i(pointer, NID_subject_alt_name, &critical, nil) else {
            drainErrorQueue()
            return nil
        }
        return Flagged(value: readGeneralNames(OpaquePointer(raw)), critical: critical == 1)
    }

    public var basicConstraints: Flagged<BasicConstraints>? {
        var critical: Int32 = 0
        guard let raw = X509_get_ext_d2i(pointer, NID_basic_constraints, &critical, nil) else {
            drainErrorQueue()
            return nil
        }
        let constraints = raw.assumingMemoryBound(to: BASIC_CONSTRAINTS.self)
        defer { BASIC_CONSTRAINTS_free(constraints) }
        let pathLength = constraints.pointee.pathlen.map { Int(ASN1_INTEGER_get($0)) }
        return Flagged(
            value: BasicConstraints(isCA: constraints.pointee.ca != 0, pathLength: pathLength), critical: critical == 1)
    }

    public var keyUsage: Flagged<KeyUsage>? {
        var critical: Int32 = 0
        guard let raw = X509_get_ext_d2i(pointer, NID_key_usage, &critical, nil) else {
            drainErrorQueue()
            return nil
        }
        let bits = raw.assumingMemoryBound(to: ASN1_BIT_STRING.self)
        defer { ASN1_BIT_STRING_free(bits) }
        var usage = KeyUsage()
        for bit in 0..<9 where ASN1_BIT_STRING_get_bit(bits, Int32(bit)) == 1 {
            usage.insert(KeyUsage(rawValue: 1 << bit))
        }
        return Flagged(value: usage, critical: critical == 1)
    }

    public var extendedKeyUsage: Flagged<[ExtendedKeyUsage]>? {
        var critical: Int32 = 0
        guard let raw = X509_get_ext_d2i(pointer, NID_ext_key_usage, &critical, nil) else {
            drainErrorQueue()
            return nil
        }
        let stack = OpaquePointer(raw)
        defer { copenssl_sk_ASN1_OBJECT_pop_free(stack) }
        let usages = (0..<copenssl_sk_ASN1_OBJECT_num(stack)).map { index -> ExtendedKeyUsage in
            let object = copenssl_sk_ASN1_OBJECT_value(stack, index)
            switch OBJ_obj2nid(object) {
            case NID_server_auth: return .serverAuth
            case NID_client_auth: return .clientAuth
            default: return .other(objectText(object))
            }
        }
        return Flagged(value: usages, critical: critical == 1)
    }

    /// Dotted OIDs of every extension, in order, with criticality.
    public var extensionOIDs: [Flagged<String>] {
        (0..<X509_get_ext_count(pointer)).compactMap { index in
            guard let ext = X509_get_ext(pointer, index) else { return nil }
            return Flagged(
                value: objectText(X509_EXTENSION_get_object(ext)), critical: X509_EXTENSION_get_critical(ext) == 1)
        }
    }

    /// Whether subject and issuer names are equal (a self-issued certificate).
    public var isSelfIssued: Bool { subjectNameDER == issuerNameDER }

    /// Checks this certificate's signature with `issuer`'s public key.
    public func isSigned(by issuer: Certificate) -> Bool {
        guard let key = X509_get0_pubkey(issuer.keyedPointer) else {
            drainErrorQueue()
            return false
        }
        let ok = X509_verify(keyedPointer, key) == 1
        if !ok { drainErrorQueue() }
        return ok
    }

    public var description: String { "Certificate(subject: \(subject), serial: \(serial))" }

    public static func == (lhs: Certificate, rhs: Certificate) -> Bool { lhs.der == rhs.der }
    public func hash(into hasher: inout Hasher) { hasher.combine(der) }
}

func objectText(_ object: OpaquePointer?) -> String {
    var buffer = [CChar](repeating: 0, count: 128)
    let length = OBJ_obj2txt(&buffer, Int32(buffer.count), object, 1)
    guard length > 0 else { return "?" }
    return String(decoding: buffer.prefix(Int(min(length, 127))).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func readTime(_ time: UnsafePointer<ASN1_TIME>?) -> Date {
    var parts = tm()
    guard let time, ASN1_TIME_to_tm(time, &parts) == 1 else {
        drainErrorQueue()
        return Date(timeIntervalSince1970: 0)
    }
    return Date(timeIntervalSince1970: TimeInterval(timegm(&parts)))
}

extension Certificate {
    /// The public key's JWK parameters (RFC 7518 §6.2/§6.3, RFC 8037 §2); see `jwkParameters(of:)`.
    public var jwkPublicParameters: [String: String] {
        guard let key = X509_get0_pubkey(keyedPointer) else {
            drainErrorQueue()
            return [:]
        }
        return jwkParameters(of: key)
    }
}

extension PrivateKey {
    /// The public half's JWK parameters.
    public var jwkPublicParameters: [String: String] { jwkParameters(of: pointer) }
}

/// `crv`/`x`/`y` for EC, `n`/`e` for RSA, `crv`/`x` for Ed25519, base64url without padding; empty for other types.
func jwkParameters(of key: OpaquePointer) -> [String: String] {
    defer { drainErrorQueue() }
    switch describeKey(key) {
    case .ec(let curve):
        var point = [UInt8](repeating: 0, count: 256)
        var length = 0
        guard EVP_PKEY_get_octet_string_param(key, "encoded-pub-key", &point, point.count, &length) == 1,
            length > 1, point[0] == 0x04, length % 2 == 1
        else { return [:] }
        let half = (length - 1) / 2
        return ["crv": curve, "x": base64URL(point[1...half]), "y": base64URL(point[(half + 1)..<length])]
    case .ed25519:
        var raw = [UInt8](repeating: 0, count: 32)
        var length = raw.count
        guard EVP_PKEY_get_raw_public_key(key, &raw, &length) == 1 else { return [:] }
        return ["crv": "Ed25519", "x": base64URL(raw.prefix(length))]
    case .rsa:
        var result: [String: String] = [:]
        for name in ["n", "e"] {
            var number: OpaquePointer? = nil
            guard EVP_PKEY_get_bn_param(key, name, &number) == 1, let number else { continue }
            defer { BN_free(number) }
            var bytes = [UInt8](repeating: 0, count: Int((BN_num_bits(number) + 7) / 8))
            BN_bn2bin(number, &bytes)
            result[name] = base64URL(bytes)
        }
        return result
    case .other:
        return [:]
    }
}

/// base64url without padding (RFC 7515 §2).
public func base64URL(_ bytes: some Collection<UInt8>) -> String {
    Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}
