internal import COpenSSL
import Foundation

/// Signs end-entity certificates by writing their DER directly: building an OpenSSL `X509`, adding each
/// extension through `X509V3_EXT` and encoding it (twice: once to sign, once to output) cost about 27 µs
/// per leaf, more than the ECDSA signature. Only the leaf shape is written here (empty subject, no CA,
/// URI/DNS/email SANs, serverAuth/clientAuth); `CertificateSigner` falls back to OpenSSL for anything
/// else. Tests compare the TBSCertificate byte for byte with OpenSSL's encoding of the same template.
struct LeafEncoder: Sendable {
    /// DER of the issuer's subject Name.
    let issuerName: [UInt8]
    /// DER of the AlgorithmIdentifier the issuer's key signs with, as OpenSSL's signature provider reports it.
    let signatureAlgorithm: [UInt8]
    /// The issuer's subjectKeyIdentifier, for the authorityKeyIdentifier extension.
    let authorityKeyID: [UInt8]?

    init(issuer: Certificate, key: PrivateKey) throws {
        issuerName = issuer.subjectNameDER
        guard !issuerName.isEmpty else { throw OpenSSLError.drain(.invalidEncoding, "issuer name") }
        signatureAlgorithm = try Self.algorithmIdentifier(key)
        authorityKeyID = issuer.subjectKeyIdentifier
    }

    /// Whether `template` has the shape this encoder writes.
    static func canEncode(_ template: CertificateTemplate) -> Bool {
        guard !template.basicConstraints.isCA, template.subject.isEmpty else { return false }
        let namesOK = template.subjectAlternativeNames.allSatisfy {
            switch $0 {
            case .uri, .dns, .email: return true
            case .ip, .other: return false
            }
        }
        return namesOK && template.extendedKeyUsage.allSatisfy { $0 == .serverAuth || $0 == .clientAuth }
    }

    /// The TBSCertificate (RFC 5280 §4.1) of `template` for the subject key `subjectPublicKeyInfo` (DER).
    func tbsCertificate(_ template: CertificateTemplate, subjectPublicKeyInfo: [UInt8]) -> [UInt8] {
        var tbs = DERWriter()
        tbs.constructed(0xA0) { $0.append(0x02, [2]) }  // version v3
        tbs.append(0x02, Self.integerContents(template.serial.bytes))
        tbs.raw(signatureAlgorithm)
        tbs.raw(issuerName)
        tbs.constructed(0x30) {
            $0.time(template.notBefore)
            $0.time(template.notAfter)
        }
        tbs.append(0x30, [])  // empty subject: the identity is in the SAN
        tbs.raw(subjectPublicKeyInfo)
        tbs.constructed(0xA3) { $0.constructed(0x30) { extensions(template, into: &$0) } }
        return tbs.finish(tag: 0x30)
    }

    /// Signs `template` with `key` (the issuer's) and returns the certificate's DER.
    func sign(_ template: CertificateTemplate, subjectPublicKeyInfo: [UInt8], key: PrivateKey) throws -> [UInt8] {
        let tbs = tbsCertificate(template, subjectPublicKeyInfo: subjectPublicKeyInfo)
        let signature = try key.sign(tbs)
        var certificate = DERWriter()
        certificate.raw(tbs)
        certificate.raw(signatureAlgorithm)
        certificate.append(0x03, [0] + signature)
        return certificate.finish(tag: 0x30)
    }

    /// Extensions in the order `CertificateSigner` adds them (a non-CA has no subjectKeyIdentifier).
    private func extensions(_ template: CertificateTemplate, into writer: inout DERWriter) {
        // basicConstraints: cA DEFAULT FALSE is omitted, leaving an empty SEQUENCE.
        writer.extensionField(oid: [0x55, 0x1D, 0x13], critical: true, value: [0x30, 0x00])
        writer.extensionField(oid: [0x55, 0x1D, 0x0F], critical: true, value: Self.keyUsage(template.keyUsage))
        if !template.extendedKeyUsage.isEmpty {
            var usages = DERWriter()
            for usage in template.extendedKeyUsage {
                usages.append(0x06, [0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, usage == .serverAuth ? 0x01 : 0x02])
            }
            writer.extensionField(oid: [0x55, 0x1D, 0x25], critical: false, value: usages.finish(tag: 0x30))
        }
        if !template.subjectAlternativeNames.isEmpty {
            var names = DERWriter()
            for name in template.subjectAlternativeNames {
                switch name {
                case .email(let value): names.append(0x81, Array(value.utf8))
                case .dns(let value): names.append(0x82, Array(value.utf8))
                case .uri(let value): names.append(0x86, Array(value.utf8))
                case .ip, .other: preconditionFailure("canEncode admits only URI, DNS and email names")
                }
            }
            // RFC 5280 §4.2.1.6: with an empty subject the SAN extension MUST be critical.
            writer.extensionField(oid: [0x55, 0x1D, 0x11], critical: true, value: names.finish(tag: 0x30))
        }
        if let authorityKeyID {
            var keyID = DERWriter()
            keyID.append(0x80, authorityKeyID)
            writer.extensionField(oid: [0x55, 0x1D, 0x23], critical: false, value: keyID.finish(tag: 0x30))
        }
    }

    /// A keyUsage BIT STRING: named bits, trailing zero bits dropped (X.690 §11.2.2).
    static func keyUsage(_ usage: KeyUsage) -> [UInt8] {
        let bits = usage.bitNumbers.map(Int.init)
        guard let highest = bits.last else { return [0x03, 0x01, 0x00] }
        let byteCount = highest / 8 + 1
        var contents = [UInt8(byteCount * 8 - highest - 1)] + [UInt8](repeating: 0, count: byteCount)
        for bit in bits { contents[1 + bit / 8] |= 0x80 >> UInt8(bit % 8) }
        var writer = DERWriter()
        writer.raw(contents)
        return writer.finish(tag: 0x03)
    }

    /// INTEGER contents of a non-negative magnitude: a leading zero keeps it positive.
    static func integerContents(_ magnitude: [UInt8]) -> [UInt8] {
        guard let first = magnitude.first else { return [0] }
        return first & 0x80 != 0 ? [0] + magnitude : magnitude
    }

    /// The AlgorithmIdentifier OpenSSL's signature provider writes for `key` (what `X509_sign` would put in).
    private static func algorithmIdentifier(_ key: PrivateKey) throws -> [UInt8] {
        let context = try DigestContext()
        guard EVP_DigestSignInit(context.pointer, nil, signingDigest(for: key.pointer), nil, key.pointer) == 1,
            let keyContext = EVP_MD_CTX_get_pkey_ctx(context.pointer)
        else { throw OpenSSLError.drain(.operationFailed, "EVP_DigestSignInit") }
        var buffer = [UInt8](repeating: 0, count: 256)
        // OSSL_PARAM keeps the key's pointer: it must outlive the call, which a String bridged to C does not
        // (AddressSanitizer caught that). A StaticString is NUL-terminated and lives as long as the program.
        let name: StaticString = "algorithm-id"  // OSSL_SIGNATURE_PARAM_ALGORITHM_ID
        let namePointer = UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self)
        let length = buffer.withUnsafeMutableBytes { raw -> Int in
            var parameters = [
                OSSL_PARAM_construct_octet_string(namePointer, raw.baseAddress, raw.count),
                OSSL_PARAM_construct_end(),
            ]
            guard EVP_PKEY_CTX_get_params(keyContext, &parameters) == 1 else { return 0 }
            return parameters[0].return_size
        }
        guard length > 0, length <= buffer.count else {
            throw OpenSSLError.drain(.operationFailed, "signature algorithm-id")
        }
        return Array(buffer.prefix(length))
    }
}

/// A DER writer for definite-length encodings: each constructed value is written into its own buffer and
/// then prefixed with its tag and length.
struct DERWriter {
    private var bytes: [UInt8] = []

    /// Appends pre-encoded DER.
    mutating func raw(_ encoded: [UInt8]) { bytes.append(contentsOf: encoded) }

    /// Appends one element: `tag`, length, `contents`.
    mutating func append(_ tag: UInt8, _ contents: [UInt8]) {
        header(tag, contents.count)
        bytes.append(contentsOf: contents)
    }

    /// Appends a constructed element whose contents `body` writes.
    mutating func constructed(_ tag: UInt8, _ body: (inout DERWriter) -> Void) {
        var inner = DERWriter()
        body(&inner)
        append(tag, inner.bytes)
    }

    /// An Extension (RFC 5280 §4.1): extnID, critical (only when TRUE: DEFAULT FALSE), extnValue.
    mutating func extensionField(oid: [UInt8], critical: Bool, value: [UInt8]) {
        constructed(0x30) {
            $0.append(0x06, oid)
            if critical { $0.append(0x01, [0xFF]) }
            $0.append(0x04, value)
        }
    }

    /// A Time (RFC 5280 §4.1.2.5): UTCTime through 2049, GeneralizedTime from 2050, whole seconds, Z.
    mutating func time(_ date: Date) {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let year = Int(parts.tm_year) + 1900
        var text: [UInt8] = []
        text.reserveCapacity(15)
        func digits(_ value: Int, _ width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            while divisor > 0 {
                text.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
                divisor /= 10
            }
        }
        let utc = (1950..<2050).contains(year)
        digits(utc ? year % 100 : year, utc ? 2 : 4)
        for value in [
            Int(parts.tm_mon) + 1, Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec),
        ] {
            digits(value, 2)
        }
        text.append(UInt8(ascii: "Z"))
        append(utc ? 0x17 : 0x18, text)
    }

    /// The written bytes wrapped in one element with `tag`.
    func finish(tag: UInt8) -> [UInt8] {
        var outer = DERWriter()
        outer.append(tag, bytes)
        return outer.bytes
    }

    private mutating func header(_ tag: UInt8, _ length: Int) {
        bytes.append(tag)
        if length < 0x80 {
            bytes.append(UInt8(length))
        } else {
            let octets = (Int.bitWidth - length.leadingZeroBitCount + 7) / 8
            bytes.append(0x80 | UInt8(octets))
            for index in stride(from: octets - 1, through: 0, by: -1) {
                bytes.append(UInt8(truncatingIfNeeded: length >> (index * 8)))
            }
        }
    }
}
