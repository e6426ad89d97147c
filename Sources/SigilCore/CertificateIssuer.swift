import Foundation
import SigilCrypto

/// A request for a leaf: the CSR and the identity the caller has proven (from a token, a client
/// certificate, or an operator's `sigil issue --spiffe-id`).
public struct IssuanceRequest: Sendable {
    public let csr: CertificateSigningRequest
    public let identity: SPIFFEID
    /// Requested lifetime; nil means the policy default.
    public let ttl: Duration?

    public init(csr: CertificateSigningRequest, identity: SPIFFEID, ttl: Duration? = nil) {
        self.csr = csr
        self.identity = identity
        self.ttl = ttl
    }
}

/// A leaf that passed the self-check, with what a client needs alongside it.
public struct IssuedCertificate: Sendable {
    public let certificate: Certificate
    /// Intermediates from the issuer up to (excluding) the root.
    public let chain: [Certificate]
    public let spiffeID: SPIFFEID
    public let authorityID: String
    /// When the holder should renew: half of the lifetime.
    public let renewAfter: Date
    public let publicKey: PublicKeyInfo

    public var serial: SerialNumber { certificate.serial }
    public var notBefore: Date { certificate.notBefore }
    public var notAfter: Date { certificate.notAfter }

    /// Leaf then intermediates, as PEM blocks.
    public var chainPEM: [String] { ([certificate] + chain).map(\.pem) }

    /// The inventory row for this certificate; `authenticatedAt` defaults to the issuance (a token issuance).
    public func inventoryRecord(issuedAt: Date, authenticatedAt: Date? = nil) -> InventoryRecord {
        InventoryRecord(
            serial: serial, spiffeID: spiffeID, authorityID: authorityID, notBefore: notBefore, notAfter: notAfter,
            publicKeySHA256: publicKey.sha256Fingerprint, issuedAt: issuedAt, authenticatedAt: authenticatedAt)
    }
}

/// Issuance with no I/O: validate the request → fill the leaf profile → sign → self-check.
public struct CertificateIssuer: Sendable {
    public let policy: IssuancePolicy

    public init(policy: IssuancePolicy) { self.policy = policy }

    /// Checks `request` against the policy for an issuer of `trustDomain` that expires at `issuerNotAfter`.
    public func evaluate(
        _ request: IssuanceRequest, trustDomain: TrustDomain, issuerNotAfter: Date, at now: Date
    ) -> PolicyDecision {
        let csr = request.csr
        guard request.identity.trustDomain == trustDomain else {
            return .denied(
                CAError(.identityMismatch, reason: "\(request.identity) is outside trust domain \(trustDomain)"))
        }
        guard request.identity.isWorkload else {
            return .denied(CAError(.invalidSPIFFEID, reason: "a workload ID needs a path: \(request.identity)"))
        }
        guard csr.version == 0 else { return .denied(.csrInvalid(reason: "CSR version \(csr.version) is not v1 (0)")) }
        // The key before the signature: a key OpenSSL cannot use fails the signature check too, and the
        // caller should hear that the key is the problem.
        guard let key = csr.publicKey else {
            return .denied(CAError(.keyNotAllowed, reason: "CSR public key cannot be decoded"))
        }
        guard policy.allowedKeys.contains(key.algorithm) else {
            return .denied(CAError(.keyNotAllowed, reason: "key type \(key.algorithm) is not allowed"))
        }
        if let weakness = csr.publicKeyWeakness { return .denied(CAError(.keyNotAllowed, reason: weakness)) }
        guard csr.verifySignature() else {
            return .denied(
                CAError(.csrSignatureInvalid, reason: "CSR signature does not verify (no proof of possession)"))
        }
        let extensions = csr.requestedExtensions
        if extensions.malformed { return .denied(.csrInvalid(reason: "CSR carries an undecodable extension")) }
        if extensions.requestsCA { return .denied(.policyViolation(reason: "CSR asks for a CA certificate")) }
        guard policy.admits(request.identity) else {
            return .denied(.policyViolation(reason: "\(request.identity) may not obtain certificates"))
        }

        var extra: [GeneralName] = []
        var uris: [String] = []
        let allowedDNS = Set(policy.allowedDNSNames(for: request.identity))
        for name in extensions.subjectAlternativeNames {
            switch name {
            case .uri(let uri): uris.append(uri)
            case .dns(let dns) where allowedDNS.contains(dns.lowercased()):
                if !extra.contains(.dns(dns.lowercased())) { extra.append(.dns(dns.lowercased())) }
            default:
                return .denied(
                    .policyViolation(
                        reason: "SAN \(SafeText.excerpt("\(name)")) is not allowed for \(request.identity)"))
            }
        }
        // X509-SVID §2: exactly one URI SAN. A CSR may omit it (the identity comes from the token) but
        // must not ask for any other.
        if uris.count > 1 {
            return .denied(CAError(.identityMismatch, reason: "CSR asks for \(uris.count) URI SANs"))
        }
        if let uri = uris.first, uri != request.identity.description {
            return .denied(CAError(.identityMismatch, reason: "CSR URI SAN does not match the caller's identity"))
        }

        let ttl = request.ttl ?? policy.defaultTTL
        let maxTTL = policy.maxTTL(for: request.identity)
        guard ttl >= policy.minTTL, ttl <= maxTTL else {
            return .denied(
                CAError(
                    .ttlOutOfRange,
                    reason: "TTL \(ttl.wholeSeconds)s outside \(policy.minTTL.wholeSeconds)…\(maxTTL.wholeSeconds)s"))
        }
        let notAfter = (now + ttl).truncatedToSecond
        guard notAfter <= issuerNotAfter else {
            return .denied(
                CAError(
                    .ttlOutOfRange,
                    reason: "TTL \(ttl.wholeSeconds)s would outlive the signing authority (never silently cut)"))
        }
        return .allowed(subjectAlternativeNames: extra)
    }

    /// Issues a leaf for `request`, signed by `authority`.
    /// - Throws: `CAError` with the policy's code when the request is refused; `self_check_failed` if the
    ///   signed certificate does not match its profile (a bug: nothing is returned).
    public func issue(
        _ request: IssuanceRequest, by authority: SigningAuthority, at now: Date
    ) throws -> IssuedCertificate {
        let issuer = authority.record.certificate
        let extra: [GeneralName]
        switch evaluate(request, trustDomain: authority.trustDomain, issuerNotAfter: issuer.notAfter, at: now) {
        case .denied(let error): throw error
        case .allowed(let names): extra = names
        }
        guard let key = request.csr.publicKey else { throw CAError(.keyNotAllowed, reason: "undecodable key") }
        let ttl = request.ttl ?? policy.defaultTTL
        let notBefore = max((now - policy.backdate).truncatedToSecond, issuer.notBefore)
        let notAfter = (now + ttl).truncatedToSecond
        let template = CertificateProfile.leaf(
            serial: try SerialNumber.timeOrdered(at: now), identity: request.identity, extraNames: extra,
            key: key.algorithm,
            notBefore: notBefore, notAfter: notAfter)
        let certificate: Certificate
        do {
            certificate = try CertificateSigner.sign(
                template, subjectKey: .request(request.csr), issuer: authority.identity)
        } catch let error as OpenSSLError {
            throw CAError(.internalError, reason: "signing failed: \(error.reason)")
        }
        let problems = CertificateLint.leafProblems(
            certificate, issuer: issuer, identity: request.identity, extraNames: extra, publicKey: key)
        guard problems.isEmpty else {
            throw CAError(
                .selfCheckFailed, reason: "issued leaf failed self-check: \(problems.joined(separator: "; "))")
        }
        let lifetime = certificate.notAfter.timeIntervalSince(certificate.notBefore)
        return IssuedCertificate(
            certificate: certificate, chain: authority.chain, spiffeID: request.identity,
            authorityID: authority.record.id,
            renewAfter: certificate.notBefore.addingTimeInterval(lifetime / 2), publicKey: key)
    }
}

extension IssuanceRequest {
    /// The body of `POST /v1/certificates` as the server reads it: `{"csr": PEM, "ttl_seconds"?: integer}`
    /// (SigilAPIModels' `IssuanceRequestBody` is what clients write), stricter than a synthesized `Decodable`,
    /// which would take `6e2` as 600. Fuzzed as the server reads it (`sigil-fuzz request`).
    public struct Body: Sendable, Equatable {
        public let csr: String
        public let ttlSeconds: Int?

        public init(csr: String, ttlSeconds: Int? = nil) {
            self.csr = csr
            self.ttlSeconds = ttlSeconds
        }

        /// Reads the body in the same pass that checks it strictly (`StrictJSON`); other members are ignored.
        /// `ttl_seconds` must be an integer literal (`600`, not `6e2` or `600.0`) or null.
        /// - Throws: `CAError` `bad_request` unless `json` is this shape.
        public static func decode(_ json: [UInt8]) throws -> Body {
            let shape = CAError(.badRequest, reason: "body is not {\"csr\": string, \"ttl_seconds\"?: integer}")
            guard let object = try StrictJSON.object(json, code: .badRequest, maxDepth: 8),
                let csr = object.string("csr")
            else {
                throw shape
            }
            if object.isAbsentOrNull("ttl_seconds") { return Body(csr: csr) }
            guard let ttl = object.integer("ttl_seconds") else { throw shape }
            return Body(csr: csr, ttlSeconds: ttl)
        }
    }

    /// The request of `body` (JSON, read with `Body.decode`) for `identity`: the CSR parsed (`csr_invalid`) and
    /// the lifetime checked (`ttl_out_of_range`).
    public init(body json: [UInt8], identity: SPIFFEID) throws {
        try self.init(Body.decode(json), identity: identity)
    }

    /// The request of a decoded `body` for `identity`.
    public init(_ body: Body, identity: SPIFFEID) throws {
        let parsed: CertificateSigningRequest
        do {
            parsed = try CertificateSigningRequest(pem: body.csr)
        } catch {
            throw CAError.csrInvalid(reason: "csr is not a PEM PKCS#10 request")
        }
        var ttl: Duration? = nil
        if let seconds = body.ttlSeconds {
            guard seconds > 0 else { throw CAError(.ttlOutOfRange, reason: "ttl_seconds must be positive") }
            ttl = .seconds(seconds)
        }
        self.init(csr: parsed, identity: identity, ttl: ttl)
    }
}
