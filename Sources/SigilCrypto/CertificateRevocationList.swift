internal import COpenSSL
import Foundation

/// A parsed or freshly signed X.509 v2 CRL (RFC 5280 §5).
public final class CertificateRevocationList: @unchecked Sendable {
    let pointer: OpaquePointer
    public let der: [UInt8]

    init(taking pointer: OpaquePointer, der: [UInt8]) {
        self.pointer = pointer
        self.der = der
    }

    deinit { X509_CRL_free(pointer) }

    public convenience init(der: [UInt8]) throws {
        let pointer = try decodeDER(der, "CRL", free: { X509_CRL_free($0) }) { cursor, length in
            d2i_X509_CRL(nil, cursor, length)
        }
        self.init(taking: pointer, der: der)
    }

    /// One revoked certificate.
    public struct Entry: Hashable, Sendable {
        public let serial: SerialNumber
        public let revokedAt: Date
        public init(serial: SerialNumber, revokedAt: Date) {
            self.serial = serial
            self.revokedAt = revokedAt
        }
    }

    public var pem: String { PEMBlock(label: "X509 CRL", der: der).encoded }
    public var issuer: DistinguishedName { DistinguishedName(reading: X509_CRL_get_issuer(pointer)) }
    public var thisUpdate: Date { readTime(X509_CRL_get0_lastUpdate(pointer)) }
    public var nextUpdate: Date? { X509_CRL_get0_nextUpdate(pointer).map { readTime($0) } }

    public var entries: [Entry] {
        guard let stack = X509_CRL_get_REVOKED(pointer) else { return [] }
        return (0..<OPENSSL_sk_num(stack)).compactMap { index in
            guard let raw = OPENSSL_sk_value(stack, index) else { return nil }
            let revoked = OpaquePointer(raw)
            return Entry(
                serial: SerialNumber(bytes: asn1Bytes(X509_REVOKED_get0_serialNumber(revoked))),
                revokedAt: readTime(X509_REVOKED_get0_revocationDate(revoked)))
        }
    }

    /// Whether `issuer`'s key signed this CRL.
    public func isSigned(by issuer: Certificate) -> Bool {
        guard let key = X509_get0_pubkey(issuer.keyedPointer) else { return false }
        let ok = X509_CRL_verify(pointer, key) == 1
        drainErrorQueue()
        return ok
    }

    /// Builds and signs a CRL listing `entries`, with AKI and CRL number (RFC 5280 §5.2.1, §5.2.3).
    public static func sign(
        entries: [Entry], number: UInt64, thisUpdate: Date, nextUpdate: Date, issuer: SigningIdentity
    ) throws -> CertificateRevocationList {
        guard let crl = X509_CRL_new() else { throw OpenSSLError.drain(.operationFailed, "X509_CRL_new") }
        defer { X509_CRL_free(crl) }
        guard X509_CRL_set_version(crl, 1) == 1,
            X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer.certificate.pointer)) == 1
        else { throw OpenSSLError.drain(.operationFailed, "X509_CRL issuer") }
        try withTime(thisUpdate) {
            guard X509_CRL_set1_lastUpdate(crl, $0) == 1 else {
                throw OpenSSLError.drain(.operationFailed, "lastUpdate")
            }
        }
        try withTime(nextUpdate) {
            guard X509_CRL_set1_nextUpdate(crl, $0) == 1 else {
                throw OpenSSLError.drain(.operationFailed, "nextUpdate")
            }
        }
        for entry in entries {
            guard let revoked = X509_REVOKED_new() else {
                throw OpenSSLError.drain(.operationFailed, "X509_REVOKED_new")
            }
            guard let serial = makeInteger(entry.serial) else {
                X509_REVOKED_free(revoked)
                throw OpenSSLError.drain(.operationFailed, "serial")
            }
            defer { ASN1_INTEGER_free(serial) }
            var ok = X509_REVOKED_set_serialNumber(revoked, serial) == 1
            try withTime(entry.revokedAt) { ok = ok && X509_REVOKED_set_revocationDate(revoked, $0) == 1 }
            guard ok, X509_CRL_add0_revoked(crl, revoked) == 1 else {
                X509_REVOKED_free(revoked)
                throw OpenSSLError.drain(.operationFailed, "X509_CRL_add0_revoked")
            }
        }
        guard X509_CRL_sort(crl) == 1 else { throw OpenSSLError.drain(.operationFailed, "X509_CRL_sort") }
        if let keyID = issuer.certificate.subjectKeyIdentifier {
            guard let aki = AUTHORITY_KEYID_new(), let string = ASN1_OCTET_STRING_new(),
                ASN1_OCTET_STRING_set(string, keyID, Int32(keyID.count)) == 1
            else { throw OpenSSLError.drain(.operationFailed, "AUTHORITY_KEYID") }
            aki.pointee.keyid = string
            defer { AUTHORITY_KEYID_free(aki) }
            guard X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, aki, 0, UInt(X509V3_ADD_DEFAULT)) == 1 else {
                throw OpenSSLError.drain(.operationFailed, "CRL AKI")
            }
        }
        var numberBytes: [UInt8] = withUnsafeBytes(of: number.bigEndian, Array.init)
        numberBytes = Array(numberBytes.drop { $0 == 0 })
        guard let integer = makeInteger(SerialNumber(bytes: numberBytes)) else {
            throw OpenSSLError.drain(.operationFailed, "crl number")
        }
        defer { ASN1_INTEGER_free(integer) }
        guard X509_CRL_add1_ext_i2d(crl, NID_crl_number, integer, 0, UInt(X509V3_ADD_DEFAULT)) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "CRL number")
        }
        let context = try DigestContext()
        let key = issuer.key.pointer
        guard EVP_DigestSignInit(context.pointer, nil, signingDigest(for: key), nil, key) == 1,
            X509_CRL_sign_ctx(crl, context.pointer) > 0
        else { throw OpenSSLError.drain(.operationFailed, "X509_CRL_sign_ctx") }
        let der = try encodeDER("CRL") { i2d_X509_CRL(crl, $0) }
        return try CertificateRevocationList(der: der)
    }
}

private func withTime(_ date: Date, _ body: (UnsafeMutablePointer<ASN1_TIME>) throws -> Void) throws {
    guard let time = ASN1_TIME_set(nil, time_t(date.timeIntervalSince1970.rounded(.down))) else {
        throw OpenSSLError.drain(.operationFailed, "ASN1_TIME_set")
    }
    defer { ASN1_TIME_free(time) }
    try body(time)
}
