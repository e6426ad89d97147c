import Foundation
import SigilAPIModels
import SigilCore
import SigilCrypto

// The wire types of SigilAPIModels made from SigilCore's domain values: one place where the API's shapes meet
// the CA's (the server answers with them; `sigil inspect`, `sigil bundle` and `sigil issue` print them).

extension IssuanceResponse {
    /// The answer for `issued`, with the current trust bundle roots as PEM.
    public init(_ issued: IssuedCertificate, trustBundle: [String]) {
        self.init(
            spiffeID: issued.spiffeID.description, serial: issued.serial.hex,
            notBefore: Timestamp.seconds(issued.notBefore),
            notAfter: Timestamp.seconds(issued.notAfter), renewAfter: Timestamp.seconds(issued.renewAfter),
            chain: issued.chainPEM,
            trustBundle: trustBundle)
    }

    /// The JSON body, keys sorted, written directly: JSONEncoder was 3 % of the server's CPU. It decodes to an
    /// equal value (tested).
    public var json: [UInt8] {
        var writer = JSONObjectWriter()
        writer.field(CodingKeys.chain.rawValue, chain)
        writer.field(CodingKeys.notAfter.rawValue, notAfter)
        writer.field(CodingKeys.notBefore.rawValue, notBefore)
        writer.field(CodingKeys.renewAfter.rawValue, renewAfter)
        writer.field(CodingKeys.serial.rawValue, serial)
        writer.field(CodingKeys.spiffeID.rawValue, spiffeID)
        writer.field(CodingKeys.trustBundle.rawValue, trustBundle)
        return writer.finish()
    }
}

extension AuthorityView {
    /// `record` as the API shows it, with its live certificate count and time left where the caller knows them.
    public init(_ record: AuthorityRecord, liveCertificates: Int? = nil, now: Date? = nil) {
        let certificate = record.certificate
        self.init(
            id: record.id, role: record.role.rawValue, state: record.state.rawValue, parentID: record.parentID,
            upstream: record.isUpstream,
            subject: certificate.subject.description, serial: certificate.serial.hex,
            keyType: certificate.publicKey.algorithm.description,
            sha256Fingerprint: certificate.sha256Fingerprint, publicKeySHA256: certificate.publicKey.sha256Fingerprint,
            subjectKeyID: hexString(certificate.subjectKeyIdentifier ?? []),
            notBefore: Timestamp.seconds(record.notBefore),
            notAfter: Timestamp.seconds(record.notAfter), keyStored: record.hasKey, liveCertificates: liveCertificates,
            secondsLeft: now.map { max(0, Int64(record.notAfter.timeIntervalSince($0))) })
    }

    /// Views of every authority in `authorities`, with live counts from `counts` (per issuing authority id).
    public static func all(
        _ authorities: AuthoritySet, liveCounts counts: [String: Int]? = nil, now: Date? = nil
    ) -> [AuthorityView] {
        authorities.records.map { record in
            let live = counts.map { counts in
                let issuing =
                    record.role == .intermediate
                    ? [record.id] : authorities.records.filter { $0.parentID == record.id }.map(\.id)
                return issuing.reduce(0) { $0 + (counts[$1] ?? 0) }
            }
            return AuthorityView(record, liveCertificates: live, now: now)
        }
    }
}

extension SPIFFEBundle {
    /// The bundle of `roots`: one `x509-svid` JWK per root (SPIFFE Trust Domain and Bundle §4.2).
    public init(roots: [Certificate], sequence: Int64, refreshHint: Duration) {
        self.init(
            keys: roots.map { root in
                let parameters = root.jwkPublicParameters
                return Key(
                    use: "x509-svid", kty: root.publicKey.algorithm.jwkKeyType, crv: parameters["crv"],
                    x: parameters["x"],
                    y: parameters["y"], n: parameters["n"], e: parameters["e"],
                    x5c: [Data(root.der).base64EncodedString()])
            }, spiffeSequence: sequence, spiffeRefreshHint: refreshHint.wholeSeconds)
    }

    /// The roots as PEM, in order (`/v1/bundle.pem`, `pki/bundle.pem`).
    public static func pem(_ roots: [Certificate]) -> String { roots.map(\.pem).joined() }
}

extension BlastRadiusReport {
    init(_ radius: BlastRadius) {
        self.init(
            authorityIDs: radius.authorityIDs, liveCertificates: radius.liveCertificates, identities: radius.identities)
    }
}

extension AdminRotateResponse {
    init(_ outcome: RotationOutcome) {
        self.init(
            role: outcome.role, dryRun: outcome.dryRun, replaced: outcome.replaced, tainted: outcome.tainted,
            activated: outcome.activated,
            blastRadius: BlastRadiusReport(outcome.blastRadius))
    }
}

extension AdminTaintResponse {
    init(_ outcome: TaintOutcome) {
        self.init(
            authorityID: outcome.authorityID, role: outcome.role, dryRun: outcome.dryRun,
            previousState: outcome.previousState,
            blastRadius: BlastRadiusReport(outcome.blastRadius))
    }
}

extension AdminRevokedCertificate {
    init(_ revocation: CertificateRevocation) {
        self.init(
            serial: revocation.serial, spiffeID: revocation.spiffeID, authorityID: revocation.authorityID,
            notAfter: Timestamp.seconds(revocation.notAfter), inCRL: revocation.inCRL, expired: revocation.expired)
    }
}
