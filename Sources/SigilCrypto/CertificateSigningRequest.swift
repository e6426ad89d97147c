internal import COpenSSL

/// A parsed PKCS#10 certificate signing request. Immutable after parsing.
public final class CertificateSigningRequest: @unchecked Sendable {
    let pointer: OpaquePointer
    /// The subject public key, decoded once; nil when it cannot be (unknown curve, malformed point).
    let key: OpaquePointer?

    /// The public key; `nil` when the key cannot be decoded (unknown curve, malformed point). Encoded once:
    /// issuance reads it three times.
    public let publicKey: PublicKeyInfo?

    private init(taking pointer: OpaquePointer) {
        self.pointer = pointer
        let key = decodeSubjectPublicKey(X509_REQ_get_X509_PUBKEY(pointer))
        self.key = key
        if let key, let der = try? encodeDER("SPKI", { i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(pointer), $0) }) {
            publicKey = PublicKeyInfo(der: der, algorithm: describeKey(key))
        } else {
            drainErrorQueue()
            publicKey = nil
        }
    }

    deinit {
        X509_REQ_free(pointer)
        if let key { EVP_PKEY_free(key) }
    }

    /// Parses a DER CSR: strict DER with every field of RFC 2986 present (see `DERStructure`). OpenSSL parses
    /// the structure (`Algorithms.structural`); the key is decoded by `decodeSubjectPublicKey`.
    public convenience init(der: [UInt8]) throws {
        guard DERStructure.isCertificationRequest(der) else {
            throw OpenSSLError(
                code: .invalidEncoding, reason: "not a DER PKCS#10 request (BER lengths or missing fields)",
                file: #fileID, line: #line)
        }
        let pointer = try decodeDER(der, "CSR", free: { X509_REQ_free($0) }) { cursor, length in
            ASN1_item_d2i_ex(nil, cursor, length, X509_REQ_it(), Algorithms.shared.structural, nil)
        }
        self.init(taking: pointer)
    }

    /// Parses a PEM CSR (`CERTIFICATE REQUEST`, or the legacy `NEW CERTIFICATE REQUEST` label).
    public convenience init(pem: String) throws {
        let blocks = try PEMBlock.parseAll(pem).filter {
            $0.label == "CERTIFICATE REQUEST" || $0.label == "NEW CERTIFICATE REQUEST"
        }
        guard blocks.count == 1 else {
            throw OpenSSLError(
                code: .invalidEncoding, reason: "expected one CERTIFICATE REQUEST block, found \(blocks.count)",
                file: #fileID, line: #line)
        }
        try self.init(der: blocks[0].der)
    }

    /// Creates and signs a CSR for `key` (used by the agent and by tests).
    public static func create(
        key: PrivateKey, subject: DistinguishedName = .empty, subjectAlternativeNames: [GeneralName]
    ) throws -> CertificateSigningRequest {
        guard let request = X509_REQ_new() else { throw OpenSSLError.drain(.operationFailed, "X509_REQ_new") }
        defer { X509_REQ_free(request) }
        guard X509_REQ_set_version(request, 0) == 1, X509_REQ_set_pubkey(request, key.pointer) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "X509_REQ_set_pubkey")
        }
        let name = try subject.makeName()
        defer { X509_NAME_free(name) }
        guard X509_REQ_set_subject_name(request, name) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "X509_REQ_set_subject_name")
        }
        if !subjectAlternativeNames.isEmpty {
            let names = try makeGeneralNames(subjectAlternativeNames)
            defer { copenssl_sk_GENERAL_NAME_pop_free(names) }
            guard let extensions = copenssl_sk_X509_EXTENSION_new_null() else {
                throw OpenSSLError.drain(.operationFailed, "sk_X509_EXTENSION_new_null")
            }
            defer { copenssl_sk_X509_EXTENSION_pop_free(extensions) }
            guard
                let ext = X509V3_EXT_i2d(NID_subject_alt_name, subject.isEmpty ? 1 : 0, UnsafeMutableRawPointer(names))
            else { throw OpenSSLError.drain(.operationFailed, "X509V3_EXT_i2d(SAN)") }
            guard copenssl_sk_X509_EXTENSION_push(extensions, ext) > 0 else {
                X509_EXTENSION_free(ext)
                throw OpenSSLError.drain(.operationFailed, "sk_X509_EXTENSION_push")
            }
            guard X509_REQ_add_extensions(request, extensions) == 1 else {
                throw OpenSSLError.drain(.operationFailed, "X509_REQ_add_extensions")
            }
        }
        let context = try DigestContext()
        guard EVP_DigestSignInit(context.pointer, nil, signingDigest(for: key.pointer), nil, key.pointer) == 1,
            X509_REQ_sign_ctx(request, context.pointer) > 0
        else { throw OpenSSLError.drain(.operationFailed, "X509_REQ_sign_ctx") }
        // Parsed back, so that a created request is read exactly as a received one.
        return try CertificateSigningRequest(der: try encodeDER("CSR") { i2d_X509_REQ(request, $0) })
    }

    public var der: [UInt8] {
        get throws { try encodeDER("CSR") { i2d_X509_REQ(pointer, $0) } }
    }

    public var pem: String {
        get throws { PEMBlock(label: "CERTIFICATE REQUEST", der: try der).encoded }
    }

    /// Proof of possession: whether the CSR is signed by the private key of the public key it carries.
    public func verifySignature() -> Bool {
        guard let key else { return false }
        // In the default library context: the request itself was parsed in the structural one.
        let ok = X509_REQ_verify_ex(pointer, key, nil, nil) == 1
        if !ok { drainErrorQueue() }
        return ok
    }

    public var subject: DistinguishedName { DistinguishedName(reading: X509_REQ_get_subject_name(pointer)) }

    /// Why the public key must not be certified although its type is known (weak RSA exponent, explicit
    /// EC parameters), or nil; see `keyWeakness`.
    public var publicKeyWeakness: String? {
        guard let key else { return "public key cannot be decoded" }
        return keyWeakness(key)
    }

    /// The CSR's version field: 0 (v1) is the only one PKCS#10 (RFC 2986 §4.1) defines.
    public var version: Int { Int(X509_REQ_get_version(pointer)) }

    /// Extensions the requester asked for, read from the PKCS#9 extensionRequest attribute. More than one
    /// such attribute, or one that does not decode, is `malformed` (OpenSSL would read the first, or none).
    public var requestedExtensions: RequestedExtensions {
        var result = RequestedExtensions()
        let first = X509_REQ_get_attr_by_NID(pointer, NID_ext_req, -1)
        guard first >= 0 else { return result }
        guard X509_REQ_get_attr_by_NID(pointer, NID_ext_req, first) < 0 else {
            result.malformed = true
            return result
        }
        guard let stack = X509_REQ_get_extensions(pointer) else {
            drainErrorQueue()
            result.malformed = true
            return result
        }
        defer { copenssl_sk_X509_EXTENSION_pop_free(stack) }
        for index in 0..<copenssl_sk_X509_EXTENSION_num(stack) {
            guard let ext = copenssl_sk_X509_EXTENSION_value(stack, index) else { continue }
            let object = X509_EXTENSION_get_object(ext)
            let nid = OBJ_obj2nid(object)
            result.oids.append(objectText(object))
            switch nid {
            case NID_subject_alt_name:
                if let raw = X509V3_EXT_d2i(ext) {
                    result.subjectAlternativeNames += readGeneralNames(OpaquePointer(raw))
                } else {
                    drainErrorQueue()
                    result.malformed = true
                }
            case NID_basic_constraints:
                if let raw = X509V3_EXT_d2i(ext) {
                    let constraints = raw.assumingMemoryBound(to: BASIC_CONSTRAINTS.self)
                    result.requestsCA = result.requestsCA || constraints.pointee.ca != 0
                    BASIC_CONSTRAINTS_free(constraints)
                } else {
                    drainErrorQueue()
                    result.malformed = true
                }
            default: break
            }
        }
        return result
    }
}

/// What a CSR's extensionRequest asks for.
public struct RequestedExtensions: Sendable, Equatable {
    public var subjectAlternativeNames: [GeneralName] = []
    /// basicConstraints with cA=true was requested.
    public var requestsCA = false
    /// Dotted OIDs of all requested extensions.
    public var oids: [String] = []
    /// An extension could not be decoded.
    public var malformed = false
}
