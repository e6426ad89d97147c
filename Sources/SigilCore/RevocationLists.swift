import Foundation
import SigilCrypto

/// The CRLs of Sigil's authorities, produced with no I/O.
///
/// - An authority that holds its key (active or prepared) signs a CRL of what it issued and was revoked: a
///   root lists its revoked intermediates, an intermediate its revoked leaves that have not expired. It is
///   signed again only when that list changes or half of its validity has passed, and is served from memory.
/// - When an authority's key is erased (retired, tainted, revoked), it signs a final CRL first, valid until the
///   authority itself expires; the store keeps it and it is served unchanged from then on. A leaf revoked
///   after its intermediate lost its key cannot be added to a CRL any more (it still cannot renew); the
///   runbook says what to do then.
public enum RevocationLists {
    /// How long a CRL signed by a live authority is valid (`nextUpdate - thisUpdate`). Default 24 h.
    public static let validity: Duration = .seconds(86_400)
    /// `thisUpdate` is backdated like certificates, for relying parties whose clock is a little behind.
    public static let backdate: Duration = .seconds(30)

    /// The revocation entries `authority` would list, given the revoked certificates it issued (`revokedLeaves`,
    /// for an intermediate) and all authorities (for a root: its revoked intermediates).
    public static func entries(
        for authority: AuthorityRecord, in authorities: AuthoritySet, revokedLeaves: [InventoryRecord]
    ) -> [CertificateRevocationList.Entry] {
        switch authority.role {
        case .root:
            return authorities.records.filter {
                $0.role == .intermediate && $0.state == .revoked && $0.parentID == authority.id
            }
            .map { .init(serial: $0.certificate.serial, revokedAt: $0.updatedAt) }
        case .intermediate:
            return revokedLeaves.compactMap { leaf in leaf.revokedAt.map { .init(serial: leaf.serial, revokedAt: $0) } }
        }
    }

    /// Signs `authority`'s CRL of `entries` at `now`. A final CRL is valid until the authority expires; a
    /// regular one for `validity`, never past the authority's own `notAfter`.
    public static func sign(
        _ entries: [CertificateRevocationList.Entry], by authority: AuthorityRecord, key: PrivateKey, final: Bool,
        at now: Date
    ) throws -> CertificateRevocationList {
        let thisUpdate = (now - backdate).truncatedToSecond
        let nextUpdate = final ? authority.notAfter : min(authority.notAfter, (now + validity).truncatedToSecond)
        return try CertificateRevocationList.sign(
            entries: entries.sorted { $0.serial.hex < $1.serial.hex },
            // Microseconds: a CRL number must grow with every CRL an issuer signs (RFC 5280 §5.2.3), even two
            // in one second.
            number: UInt64(max(0, now.microsecondsSince1970)), thisUpdate: max(thisUpdate, authority.notBefore),
            nextUpdate: max(nextUpdate, thisUpdate + .seconds(1)),
            issuer: SigningIdentity(certificate: authority.certificate, key: key))
    }

    /// Whether `crl`, signed for `entries`, can still be served at `now` rather than signed again: same entries,
    /// and less than half of its validity gone.
    public static func isCurrent(
        _ crl: CertificateRevocationList, for entries: [CertificateRevocationList.Entry], at now: Date
    ) -> Bool {
        guard Set(crl.entries.map(\.serial)) == Set(entries.map(\.serial)), let next = crl.nextUpdate else {
            return false
        }
        let half = crl.thisUpdate.addingTimeInterval(next.timeIntervalSince(crl.thisUpdate) / 2)
        return now < half
    }
}
