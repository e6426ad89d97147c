import Foundation
import SigilCrypto

/// One authority as the outside sees it: `GET /v1/authorities` (agents poll it for taint), `sigil admin status`
/// and `sigil inspect --json`. Times are RFC 3339 UTC; the counts appear where the caller knows them.
public struct AuthorityView: Codable, Sendable, Equatable {
    public let id: String
    public let role: String
    public let state: String
    public let parent_id: String?
    public let upstream: Bool
    public let subject: String
    public let serial: String
    public let key_type: String
    public let sha256_fingerprint: String
    public let public_key_sha256: String
    /// Hex subjectKeyIdentifier: what a leaf's authorityKeyIdentifier names.
    public let subject_key_id: String
    public let not_before: String
    public let not_after: String
    /// Whether the store still holds its private key: only prepared and active authorities do (a key is erased
    /// when its authority retires, is tainted or revoked). Nil from servers older than this field.
    public let key_stored: Bool?
    /// Live certificates under this authority (for a root: under the intermediates it signed).
    public var live_certificates: Int?
    public var seconds_left: Int64?

    public init(_ record: AuthorityRecord, liveCertificates: Int? = nil, now: Date? = nil) {
        id = record.id
        role = record.role.rawValue
        state = record.state.rawValue
        parent_id = record.parentID
        upstream = record.isUpstream
        subject = record.certificate.subject.description
        serial = record.certificate.serial.hex
        key_type = record.certificate.publicKey.algorithm.description
        sha256_fingerprint = record.certificate.sha256Fingerprint
        public_key_sha256 = record.certificate.publicKey.sha256Fingerprint
        subject_key_id = hexString(record.certificate.subjectKeyIdentifier ?? [])
        not_before = IssuanceResponse.timestamp(record.notBefore)
        not_after = IssuanceResponse.timestamp(record.notAfter)
        key_stored = record.hasKey
        live_certificates = liveCertificates
        seconds_left = now.map { max(0, Int64(record.notAfter.timeIntervalSince($0))) }
    }

    /// Views of every authority in `authorities`, with live counts from `counts` (per issuing authority id).
    public static func all(_ authorities: AuthoritySet, liveCounts counts: [String: Int]? = nil, now: Date? = nil) -> [AuthorityView] {
        authorities.records.map { record in
            let live = counts.map { counts in
                let issuing = record.role == .intermediate ? [record.id] : authorities.records.filter { $0.parentID == record.id }.map(\.id)
                return issuing.reduce(0) { $0 + (counts[$1] ?? 0) }
            }
            return AuthorityView(record, liveCertificates: live, now: now)
        }
    }
}
