internal import COpenSSL
import Foundation

/// Everything that goes into a certificate except keys and the issuer: a profile fills it in,
/// `CertificateSigner` turns it into a signed certificate.
public struct CertificateTemplate: Sendable {
    public var serial: SerialNumber
    public var subject: DistinguishedName
    /// Truncated to whole seconds when encoded (X.509 time granularity).
    public var notBefore: Date
    public var notAfter: Date
    public var basicConstraints: BasicConstraints
    public var keyUsage: KeyUsage
    public var extendedKeyUsage: [ExtendedKeyUsage]
    public var subjectAlternativeNames: [GeneralName]

    public init(
        serial: SerialNumber, subject: DistinguishedName, notBefore: Date, notAfter: Date,
        basicConstraints: BasicConstraints, keyUsage: KeyUsage, extendedKeyUsage: [ExtendedKeyUsage] = [],
        subjectAlternativeNames: [GeneralName] = []
    ) {
        self.serial = serial
        self.subject = subject
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.basicConstraints = basicConstraints
        self.keyUsage = keyUsage
        self.extendedKeyUsage = extendedKeyUsage
        self.subjectAlternativeNames = subjectAlternativeNames
    }
}

/// Where the subject public key of a new certificate comes from.
public enum SubjectKey: Sendable {
    /// Copy the SubjectPublicKeyInfo from a CSR byte for byte (fast path, see the shim).
    case request(CertificateSigningRequest)
    /// The public half of a key Sigil holds (roots, intermediates, its own TLS certificate).
    case key(PrivateKey)
}

/// The signing side of an issuance: a certificate and its private key.
public struct SigningIdentity: Sendable {
    public let certificate: Certificate
    public let key: PrivateKey
    /// Writes this issuer's leaves without OpenSSL's X509 builder; nil when OpenSSL cannot name the key's
    /// signature algorithm (leaves are then built by OpenSSL).
    let leafEncoder: LeafEncoder?

    public init(certificate: Certificate, key: PrivateKey) {
        self.certificate = certificate
        self.key = key
        leafEncoder = try? LeafEncoder(issuer: certificate, key: key)
    }
}

/// Builds and signs X.509 v3 certificates.
public enum CertificateSigner {
    /// Signs `template` for `subjectKey`, by `issuer`, or self-signed when `issuer` is nil (the subject key
    /// must then be a `.key`). Adds SKI (RFC 5280 §4.2.1.2 method 1) to every CA certificate and AKI to
    /// every certificate, so path building never has to guess.
    /// Leaves from a CSR are written by `LeafEncoder`, anything else by OpenSSL.
    /// - Returns: the certificate parsed back from its DER encoding.
    public static func sign(
        _ template: CertificateTemplate, subjectKey: SubjectKey, issuer: SigningIdentity?
    ) throws -> Certificate {
        if case .request(let request) = subjectKey, let issuer, let encoder = issuer.leafEncoder,
            LeafEncoder.canEncode(template),
            let spki = request.publicKey?.der
        {
            return try Certificate(der: encoder.sign(template, subjectPublicKeyInfo: spki, key: issuer.key))
        }
        return try signWithOpenSSL(template, subjectKey: subjectKey, issuer: issuer)
    }

    /// `sign` through OpenSSL's X509 builder (every template shape).
    static func signWithOpenSSL(
        _ template: CertificateTemplate, subjectKey: SubjectKey, issuer: SigningIdentity?
    ) throws -> Certificate {
        guard let x509 = X509_new() else { throw OpenSSLError.drain(.operationFailed, "X509_new") }
        defer { X509_free(x509) }
        guard X509_set_version(x509, Int(X509_VERSION_3)) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "X509_set_version")
        }
        try setSerial(template.serial, on: x509)

        let subject = try template.subject.makeName()
        defer { X509_NAME_free(subject) }
        guard X509_set_subject_name(x509, subject) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "X509_set_subject_name")
        }
        let issuerName = issuer.map { X509_get_subject_name($0.certificate.pointer) } ?? subject
        guard X509_set_issuer_name(x509, issuerName) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "X509_set_issuer_name")
        }
        guard
            ASN1_TIME_set(X509_getm_notBefore(x509), time_t(template.notBefore.timeIntervalSince1970.rounded(.down)))
                != nil,
            ASN1_TIME_set(X509_getm_notAfter(x509), time_t(template.notAfter.timeIntervalSince1970.rounded(.down)))
                != nil
        else { throw OpenSSLError.drain(.operationFailed, "ASN1_TIME_set") }

        let signingKey: PrivateKey
        switch subjectKey {
        case .request(let request):
            guard copenssl_X509_copy_pubkey_from_req(x509, request.pointer) == 1 else {
                throw OpenSSLError.drain(.invalidArgument, "cannot copy the CSR's public key")
            }
            guard let issuer else {
                throw OpenSSLError(
                    code: .invalidArgument, reason: "a CSR cannot be self-signed", file: #fileID, line: #line)
            }
            signingKey = issuer.key
        case .key(let key):
            guard X509_set_pubkey(x509, key.pointer) == 1 else {
                throw OpenSSLError.drain(.operationFailed, "X509_set_pubkey")
            }
            signingKey = issuer?.key ?? key
        }

        try addBasicConstraints(template.basicConstraints, to: x509)
        try addKeyUsage(template.keyUsage, to: x509)
        if !template.extendedKeyUsage.isEmpty { try addExtendedKeyUsage(template.extendedKeyUsage, to: x509) }
        if !template.subjectAlternativeNames.isEmpty {
            // RFC 5280 §4.2.1.6: with an empty subject the SAN extension MUST be critical.
            let names = try makeGeneralNames(template.subjectAlternativeNames)
            defer { copenssl_sk_GENERAL_NAME_pop_free(names) }
            try addExtension(
                NID_subject_alt_name, UnsafeMutableRawPointer(names), critical: template.subject.isEmpty, to: x509)
        }
        var ownKeyID: [UInt8]? = nil
        if template.basicConstraints.isCA {
            let keyID = try subjectKeyIdentifier(of: x509)
            try addOctetString(keyID, nid: NID_subject_key_identifier, to: x509)
            ownKeyID = keyID
        }
        if let authorityKeyID = issuer?.certificate.subjectKeyIdentifier ?? ownKeyID {
            try addAuthorityKeyIdentifier(authorityKeyID, to: x509)
        }

        let context = try DigestContext()
        guard
            EVP_DigestSignInit(context.pointer, nil, signingDigest(for: signingKey.pointer), nil, signingKey.pointer)
                == 1
        else { throw OpenSSLError.drain(.operationFailed, "EVP_DigestSignInit") }
        guard X509_sign_ctx(x509, context.pointer) > 0 else {
            throw OpenSSLError.drain(.operationFailed, "X509_sign_ctx")
        }
        // Parse back from DER: the caller gets exactly what a relying party will see, with a decodable key.
        let der = try encodeDER("certificate") { i2d_X509(x509, $0) }
        return try Certificate(der: der)
    }

    static func setSerial(_ serial: SerialNumber, on x509: OpaquePointer) throws {
        guard let integer = makeInteger(serial) else { throw OpenSSLError.drain(.operationFailed, "serial") }
        defer { ASN1_INTEGER_free(integer) }
        guard X509_set_serialNumber(x509, integer) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "X509_set_serialNumber")
        }
    }

    static func addBasicConstraints(_ constraints: BasicConstraints, to x509: OpaquePointer) throws {
        guard let value = BASIC_CONSTRAINTS_new() else {
            throw OpenSSLError.drain(.operationFailed, "BASIC_CONSTRAINTS_new")
        }
        defer { BASIC_CONSTRAINTS_free(value) }
        value.pointee.ca = constraints.isCA ? 0xff : 0
        if constraints.isCA, let pathLength = constraints.pathLength {
            guard let integer = ASN1_INTEGER_new(), ASN1_INTEGER_set(integer, pathLength) == 1 else {
                throw OpenSSLError.drain(.operationFailed, "pathlen")
            }
            value.pointee.pathlen = integer
        }
        try addExtension(NID_basic_constraints, UnsafeMutableRawPointer(value), critical: true, to: x509)
    }

    static func addKeyUsage(_ usage: KeyUsage, to x509: OpaquePointer) throws {
        guard let bits = ASN1_BIT_STRING_new() else {
            throw OpenSSLError.drain(.operationFailed, "ASN1_BIT_STRING_new")
        }
        defer { ASN1_BIT_STRING_free(bits) }
        for bit in usage.bitNumbers {
            guard ASN1_BIT_STRING_set_bit(bits, bit, 1) == 1 else {
                throw OpenSSLError.drain(.operationFailed, "set_bit")
            }
        }
        try addExtension(NID_key_usage, UnsafeMutableRawPointer(bits), critical: true, to: x509)
    }

    static func addExtendedKeyUsage(_ usages: [ExtendedKeyUsage], to x509: OpaquePointer) throws {
        guard let stack = copenssl_sk_ASN1_OBJECT_new_null() else {
            throw OpenSSLError.drain(.operationFailed, "sk_new")
        }
        defer { copenssl_sk_ASN1_OBJECT_pop_free(stack) }
        for usage in usages {
            let object: OpaquePointer?
            switch usage {
            case .serverAuth: object = OBJ_nid2obj(NID_server_auth)
            case .clientAuth: object = OBJ_nid2obj(NID_client_auth)
            case .other(let oid): object = OBJ_txt2obj(oid, 1)
            }
            guard let object, copenssl_sk_ASN1_OBJECT_push(stack, object) > 0 else {
                throw OpenSSLError.drain(.invalidArgument, "EKU \(usage)")
            }
        }
        try addExtension(NID_ext_key_usage, UnsafeMutableRawPointer(stack), critical: false, to: x509)
    }

    static func subjectKeyIdentifier(of x509: OpaquePointer) throws -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard X509_pubkey_digest(x509, Algorithms.shared.sha1, &digest, &length) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "X509_pubkey_digest")
        }
        return Array(digest.prefix(Int(length)))
    }

    static func addOctetString(_ bytes: [UInt8], nid: Int32, to x509: OpaquePointer) throws {
        guard let string = ASN1_OCTET_STRING_new(), ASN1_OCTET_STRING_set(string, bytes, Int32(bytes.count)) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "ASN1_OCTET_STRING")
        }
        defer { ASN1_OCTET_STRING_free(string) }
        try addExtension(nid, UnsafeMutableRawPointer(string), critical: false, to: x509)
    }

    static func addAuthorityKeyIdentifier(_ keyID: [UInt8], to x509: OpaquePointer) throws {
        guard let aki = AUTHORITY_KEYID_new(), let string = ASN1_OCTET_STRING_new(),
            ASN1_OCTET_STRING_set(string, keyID, Int32(keyID.count)) == 1
        else { throw OpenSSLError.drain(.operationFailed, "AUTHORITY_KEYID") }
        aki.pointee.keyid = string
        defer { AUTHORITY_KEYID_free(aki) }
        try addExtension(NID_authority_key_identifier, UnsafeMutableRawPointer(aki), critical: false, to: x509)
    }

    static func addExtension(
        _ nid: Int32, _ value: UnsafeMutableRawPointer, critical: Bool, to x509: OpaquePointer
    ) throws {
        guard X509_add1_ext_i2d(x509, nid, value, critical ? 1 : 0, UInt(X509V3_ADD_DEFAULT)) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "X509_add1_ext_i2d(\(nid))")
        }
    }
}

/// A fresh ASN1_INTEGER holding `serial` (caller frees).
func makeInteger(_ serial: SerialNumber) -> UnsafeMutablePointer<ASN1_INTEGER>? {
    guard let bignum = BN_bin2bn(serial.bytes, Int32(serial.bytes.count), nil) else { return nil }
    defer { BN_free(bignum) }
    return BN_to_ASN1_INTEGER(bignum, nil)
}
