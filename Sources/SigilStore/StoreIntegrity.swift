import Foundation
import SigilCore
import SigilCrypto

/// Authenticates authority rows: an HMAC-SHA-256, under a key derived from the key-encryption key, over every
/// field that decides what an authority may do. A row written by someone without the KEK (an `upstream` root
/// inserted into PostgreSQL, a retired intermediate set back to active) fails the check, and the store then
/// reports it as rejected instead of returning it.
struct AuthorityIntegrity: Sendable {
    private let mac: HMACSHA256

    init(kek: KeyEncryptionKey) {
        mac = HMACSHA256(key: HMACSHA256(key: kek.bytes).authenticate(Array("sigil authority rows v1".utf8)))
    }

    /// The fields a row's MAC covers, as the store holds them.
    struct Fields {
        var id: String
        var role: String
        var state: String
        var certificate: [UInt8]
        var parentID: String?
        var isUpstream: Bool
        var hasKey: Bool
        var finalCRL: [UInt8]?
    }

    /// The hex MAC of `fields`: each field length-prefixed (8 bytes, big-endian) so no two rows encode alike.
    func tag(_ fields: Fields) -> String {
        var message: [UInt8] = Array("sigil-authority-row-v1".utf8)
        func append(_ bytes: [UInt8]?) {
            guard let bytes else {
                message.append(0)
                return
            }
            message.append(1)
            withUnsafeBytes(of: UInt64(bytes.count).bigEndian) { message.append(contentsOf: $0) }
            message.append(contentsOf: bytes)
        }
        append(Array(fields.id.utf8))
        append(Array(fields.role.utf8))
        append(Array(fields.state.utf8))
        append(fields.certificate)
        append(fields.parentID.map { Array($0.utf8) })
        append([fields.isUpstream ? 1 : 0])
        append([fields.hasKey ? 1 : 0])
        append(fields.finalCRL)
        return hexString(mac.authenticate(message))
    }

    /// Whether `tag` is the MAC of `fields` (compared in constant time).
    func check(_ fields: Fields, tag: String?) -> Bool {
        guard let tag else { return false }
        let expected = Array(self.tag(fields).utf8)
        let given = Array(tag.utf8)
        guard expected.count == given.count else { return false }
        return zip(expected, given).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    /// Decrypts a row's key after checking the row's MAC, and that the key belongs to its certificate.
    func openKey(_ sealed: Data?, fields: Fields, mac: String?, kek: KeyEncryptionKey) throws -> PrivateKey {
        guard check(fields, tag: mac) else {
            throw StorageError(
                .corrupt, reason: "authority \(fields.id) fails its integrity check: its key is not used")
        }
        guard let sealed else { throw StorageError(.notFound, reason: "no key stored for authority \(fields.id)") }
        let der = try kek.open(Array(sealed), context: fields.id)
        let key: PrivateKey
        let certificate: Certificate
        do {
            key = try PrivateKey(pkcs8DER: der)
            certificate = try Certificate(der: fields.certificate)
        } catch {
            throw StorageError(.corrupt, reason: "stored key or certificate of \(fields.id) does not decode")
        }
        guard (try? key.publicKey().der) == certificate.publicKey.der else {
            throw StorageError(.corrupt, reason: "stored key of \(fields.id) does not match its certificate")
        }
        return key
    }

    /// The record for an authentic row, or why it was rejected.
    func record(
        _ fields: Fields, tag: String?, createdAt: Date, updatedAt: Date
    ) -> Result<AuthorityRecord, RejectedAuthority> {
        guard check(fields, tag: tag) else {
            return .failure(RejectedAuthority(id: fields.id, reason: "authority row fails its integrity check (MAC)"))
        }
        guard let role = AuthorityRole(rawValue: fields.role), let state = AuthorityState(rawValue: fields.state) else {
            return .failure(RejectedAuthority(id: fields.id, reason: "authority row with unknown role or state"))
        }
        do {
            return .success(
                AuthorityRecord(
                    id: fields.id, role: role, state: state, certificate: try Certificate(der: fields.certificate),
                    parentID: fields.parentID, isUpstream: fields.isUpstream, createdAt: createdAt,
                    updatedAt: updatedAt,
                    hasKey: fields.hasKey, finalCRL: fields.finalCRL))
        } catch {
            return .failure(RejectedAuthority(id: fields.id, reason: "authority certificate does not parse"))
        }
    }
}

/// Settings the stores keep about their own format (in the `settings` table).
enum StoreFormat {
    /// Set once every authority row carries a MAC; from then on a row without one is rejected.
    static let authorityMACKey = "format.authority_mac"
    /// Set once the audit chain is linked by HMAC (`AuditChainKey`); before, links were plain SHA-256.
    static let auditChainKey = "format.audit_chain"
    static let auditChainKeyed = "hmac-sha256-v1"
    /// The sealed audit key.
    static let auditKey = "audit_key"
}

/// Re-links a chain written with plain SHA-256 links under the keyed link, once, in storage order. The old
/// links are checked while going: where they break is recorded in the re-link record (so the evidence of an
/// earlier edit survives in the new chain) rather than hidden or allowed to stop the CA from starting.
struct AuditRelinker {
    private let key: AuditChainKey
    private var legacy = AuditChainVerifier.legacy()
    private(set) var previous = AuditRecord.genesisHash
    private(set) var count: Int64 = 0
    private(set) var lastSequence: Int64 = 0
    private(set) var oldHead = AuditRecord.genesisHash
    /// The first break of the old chain, if any.
    private(set) var oldBreak: (sequence: Int64, reason: String)?

    init(key: AuditChainKey) { self.key = key }

    /// The new link for the next stored `record` (its sequence and event kept, its links replaced).
    mutating func relink(_ record: AuditRecord) -> AuditRecord {
        if oldBreak == nil, case .broken(let sequence, let reason) = legacy.check(record) {
            oldBreak = (sequence, reason)
        }
        oldHead = record.hash
        let relinked = AuditRecord(
            sequence: record.sequence, event: record.event, previousHash: previous,
            hash: key.link(
                AuditRecord.canonicalEncoding(record.event, sequence: record.sequence, previousHash: previous)))
        previous = relinked.hash
        count += 1
        lastSequence = record.sequence
        return relinked
    }

    /// The record that closes the migration, appended after the re-linked ones.
    func completion(at time: Date) -> AuditEvent {
        var event = AuditEvent(
            time: time, actor: "system", action: .relink,
            reason: "audit chain re-linked under the keyed HMAC: \(count) record(s), previous SHA-256 head \(oldHead)")
        if let oldBreak {
            event.outcome = .failure
            event.code = "audit_chain_broken"
            event.reason! += "; the SHA-256 chain was already broken at record \(oldBreak.sequence): \(oldBreak.reason)"
        }
        return event
    }
}

extension AuthorityIntegrity.Fields {
    /// The fields of `record` as a new row stores them (no final CRL yet).
    init(_ record: AuthorityRecord, hasKey: Bool) {
        self.init(
            id: record.id, role: record.role.rawValue, state: record.state.rawValue,
            certificate: record.certificate.der,
            parentID: record.parentID, isUpstream: record.isUpstream, hasKey: hasKey, finalCRL: nil)
    }
}
