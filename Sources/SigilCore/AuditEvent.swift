import Foundation
import SigilCrypto

/// What happened, for the audit chain.
public enum AuditAction: String, Sendable, Codable, CaseIterable {
    case issue, deny, renew
    case initialize = "init"
    case prepare, activate, retire, rotate, taint, revoke
    case adminStatus = "admin_status"
    case adminRotate = "admin_rotate"
    case adminRevoke = "admin_revoke"
    case adminTaint = "admin_taint"
    /// An operator minted a one-time trust console login (`sigil admin console-login`).
    case adminConsoleLogin = "admin_console_login"
    case start, stop
    case keyImport = "key_import"
    /// The sealed private key of an authority that no longer signs was erased (its certificate stays).
    case eraseKey = "erase_key"
    /// The chain was re-linked under the keyed link (a one-time store migration).
    case relink
    /// Unauthenticated denials over the audit budget, counted instead of recorded one by one.
    case denySummary = "deny_summary"
    /// A stored row failed its integrity check and was ignored.
    case integrity
    /// An operator exchanged a one-time login of `sigil admin console-login` for a trust console session.
    case consoleLogin = "console_login"
    case consoleLogout = "console_logout"
    /// An operator exported audit records from the trust console.
    case consoleExport = "console_export"
}

public enum AuditOutcome: String, Sendable, Codable {
    case success, failure
}

/// One security-relevant action. Never holds a token, key or CSR body: tokens appear only as an HMAC
/// under the deployment's audit key.
public struct AuditEvent: Sendable, Equatable, Codable {
    public var time: Date
    /// Who acted: `spiffe://…` (token or certificate identity), `admin:<uid>`, `operator:cli`, `system`, or
    /// `anonymous` when authentication failed.
    public var actor: String
    public var action: AuditAction
    public var outcome: AuditOutcome
    /// Stable error code on failure.
    public var code: String?
    /// Why: the operator's reason for admin verbs, the refusal reason for denials.
    public var reason: String?
    public var subject: String?
    public var serial: String?
    public var authorityID: String?
    public var publicKeySHA256: String?
    public var requestID: String?
    public var clientAddress: String?
    /// HMAC-SHA256 of the bearer token under the audit key, hex.
    public var tokenHMAC: String?

    public init(
        time: Date, actor: String, action: AuditAction, outcome: AuditOutcome = .success, code: String? = nil,
        reason: String? = nil,
        subject: String? = nil, serial: String? = nil, authorityID: String? = nil, publicKeySHA256: String? = nil,
        requestID: String? = nil, clientAddress: String? = nil, tokenHMAC: String? = nil
    ) {
        self.time = time
        self.actor = actor
        self.action = action
        self.outcome = outcome
        self.code = code
        self.reason = reason
        self.subject = subject
        self.serial = serial
        self.authorityID = authorityID
        self.publicKeySHA256 = publicKeySHA256
        self.requestID = requestID
        self.clientAddress = clientAddress
        self.tokenHMAC = tokenHMAC
    }
}

/// An event in the chain: its sequence number, the previous record's link and its own.
///
/// A link is an HMAC-SHA-256 under the deployment's audit chain key (`AuditChainKey`, derived from the
/// audit key that the key-encryption key seals) over the record's canonical encoding, which includes the
/// previous link. Whoever can write the database but lacks the KEK can neither edit a record nor recompute
/// the links after it.
public struct AuditRecord: Sendable, Equatable {
    public static let genesisHash = String(repeating: "0", count: 64)

    public let sequence: Int64
    public let event: AuditEvent
    /// The previous record's link (`genesisHash` for the first record).
    public let previousHash: String
    /// This record's link.
    public let hash: String

    public init(sequence: Int64, event: AuditEvent, previousHash: String, hash: String) {
        self.sequence = sequence
        self.event = event
        self.previousHash = previousHash
        self.hash = hash
    }

    /// Chains `event` (cut to the record size limits) after a record with link `previousHash` at `sequence`.
    public static func chained(
        _ event: AuditEvent, sequence: Int64, previousHash: String, key: AuditChainKey
    ) -> AuditRecord {
        let event = event.bounded()
        return AuditRecord(
            sequence: sequence, event: event, previousHash: previousHash,
            hash: key.link(canonicalEncoding(event, sequence: sequence, previousHash: previousHash)))
    }

    /// The unkeyed SHA-256 link of stores made before the keyed chain; only re-linking reads it.
    public static func legacyHash(_ event: AuditEvent, sequence: Int64, previousHash: String) -> String {
        hexString(Digest.sha256(canonicalEncoding(event, sequence: sequence, previousHash: previousHash)))
    }

    /// The canonical encoding the link covers: sorted-key JSON of every field, time in whole microseconds.
    public static func canonicalEncoding(_ event: AuditEvent, sequence: Int64, previousHash: String) -> [UInt8] {
        // Keys in sorted order, no whitespace, nulls written: the same record always encodes to the same bytes.
        var writer = JSONObjectWriter()
        writer.field("action", event.action.rawValue)
        writer.field("actor", event.actor)
        writer.field("authority", event.authorityID)
        writer.field("client", event.clientAddress)
        writer.field("code", event.code)
        writer.field("key_sha256", event.publicKeySHA256)
        writer.field("outcome", event.outcome.rawValue)
        writer.field("prev", previousHash)
        writer.field("reason", event.reason)
        writer.field("request_id", event.requestID)
        writer.field("seq", sequence)
        writer.field("serial", event.serial)
        writer.field("subject", event.subject)
        writer.field("time_us", event.time.microsecondsSince1970)
        writer.field("token_hmac", event.tokenHMAC)
        return writer.finish()
    }

    /// The record as one JSON line (for `sigil audit export` and the streaming sink); absent fields are omitted.
    public var jsonLine: String {
        var writer = JSONObjectWriter(writeNulls: false)
        writer.field("action", event.action.rawValue)
        writer.field("actor", event.actor)
        writer.field("authority_id", event.authorityID)
        writer.field("client_address", event.clientAddress)
        writer.field("code", event.code)
        writer.field("hash", hash)
        writer.field("outcome", event.outcome.rawValue)
        writer.field("prev_hash", previousHash)
        writer.field("public_key_sha256", event.publicKeySHA256)
        writer.field("reason", event.reason)
        writer.field("request_id", event.requestID)
        writer.field("seq", sequence)
        writer.field("serial", event.serial)
        writer.field("subject", event.subject)
        writer.field("time", AuditRecord.timestamp(event.time))
        writer.field("token_hmac", event.tokenHMAC)
        return String(decoding: writer.finish(), as: UTF8.self)
    }

    /// RFC 3339 UTC with microseconds.
    public static func timestamp(_ date: Date) -> String { Timestamp.microseconds(date) }
}

/// The key that links the audit chain: HMAC-SHA-256 under a key derived from the deployment's audit key
/// (32 random bytes kept in the store sealed by the key-encryption key). Derived, not the audit key itself,
/// so token HMACs and chain links never share a key.
public struct AuditChainKey: Sendable {
    private let mac: HMACSHA256

    /// Derives the chain key from `auditKey`: HMAC-SHA-256(auditKey, "sigil audit chain v1").
    public init(auditKey: [UInt8]) {
        mac = HMACSHA256(key: HMACSHA256(key: auditKey).authenticate(Array("sigil audit chain v1".utf8)))
    }

    /// The hex link of `canonical` (a record's canonical encoding).
    public func link(_ canonical: [UInt8]) -> String { hexString(mac.authenticate(canonical)) }
}

extension AuditEvent {
    /// The most bytes each text field of a stored record may hold (UTF-8, after escaping).
    public static let fieldLimits = (reason: 512, actor: 512, subject: 512, short: 128)
    /// The largest canonical encoding of a record. The ten text fields hold at most 2,432 bytes with no
    /// control character left (`bounded` escapes them), so JSON escaping at most doubles them (`"` and `\`);
    /// keys, sequence, time and the previous link add under 400 bytes.
    public static let maxEncodedBytes = 8192

    /// This event with control characters escaped (`SafeText`) and every text field cut to its limit (`…` marks
    /// a cut). Attacker-chosen text (a refused token's header, a client certificate's SAN) thus can neither
    /// grow a record without bound nor forge a line where a record is printed.
    public func bounded() -> AuditEvent {
        var event = self
        let limits = Self.fieldLimits
        event.actor = Self.cut(actor, limits.actor)
        event.reason = reason.map { Self.cut($0, limits.reason) }
        event.subject = subject.map { Self.cut($0, limits.subject) }
        event.code = code.map { Self.cut($0, limits.short) }
        event.serial = serial.map { Self.cut($0, limits.short) }
        event.authorityID = authorityID.map { Self.cut($0, limits.short) }
        event.publicKeySHA256 = publicKeySHA256.map { Self.cut($0, limits.short) }
        event.requestID = requestID.map { Self.cut($0, limits.short) }
        event.clientAddress = clientAddress.map { Self.cut($0, limits.short) }
        event.tokenHMAC = tokenHMAC.map { Self.cut($0, limits.short) }
        return event
    }

    private static func cut(_ text: String, _ limit: Int) -> String {
        if text.utf8.count <= limit && SafeText.isPlain(text) { return text }
        return SafeText.excerpt(text, limit: limit)
    }
}

extension Date {
    /// Whole microseconds since 1970 (the audit chain's time resolution).
    public var microsecondsSince1970: Int64 { Int64((timeIntervalSince1970 * 1_000_000).rounded(.down)) }

    public init(microsecondsSince1970 micros: Int64) {
        self.init(timeIntervalSince1970: TimeInterval(micros) / 1_000_000)
    }
}

/// The result of walking the chain.
public enum AuditVerification: Equatable, Sendable {
    case valid(records: Int, lastHash: String)
    /// The first bad record and what is wrong with it.
    case broken(sequence: Int64, reason: String)
}

/// The newest record's position in the chain, exported by `sigil audit head` for anchoring outside the store
/// (a ticket, a transparency log, another system's database): `sigil audit verify --head FILE` later checks
/// that the chain still holds that record with that link, which detects truncation of the newest records.
public struct AuditHead: Sendable, Equatable, Codable {
    public let sequence: Int64
    public let link: String
    /// The record's time, RFC 3339 (informative: `verify --head` checks the sequence and the link).
    public let time: String

    public init(sequence: Int64, link: String, time: String) {
        self.sequence = sequence
        self.link = link
        self.time = time
    }

    public init(_ record: AuditRecord) {
        self.init(sequence: record.sequence, link: record.hash, time: AuditRecord.timestamp(record.event.time))
    }

    enum CodingKeys: String, CodingKey {
        case sequence = "seq"
        case link
        case time
    }

    /// What is wrong with a chain, ending at `lastSequence`, in which `record` is the one found at this head's
    /// sequence (nil: none there): nil when the chain still holds this head with its link.
    public func problem(in record: AuditRecord?, lastSequence: Int64) -> String? {
        guard let record else {
            return sequence > lastSequence
                ? "the chain ends at record \(lastSequence) but the anchored head is record \(sequence): records were removed from its end"
                : "record \(sequence) of the anchored head is missing"
        }
        guard record.hash == link else {
            return "record \(sequence) has link \(record.hash), not the anchored \(link): the chain was rewritten"
        }
        return nil
    }
}

/// Walks audit records in storage order and names the first one that was edited, deleted, inserted or moved.
public struct AuditChainVerifier: Sendable {
    private let key: AuditChainKey?
    private(set) var expectedSequence: Int64 = 1
    private(set) var previousHash = AuditRecord.genesisHash
    public private(set) var count = 0

    /// A verifier of links under `key`.
    public init(key: AuditChainKey) { self.key = key }

    /// A verifier of the unkeyed SHA-256 links of stores made before the keyed chain (re-linking checks the old
    /// chain with it before replacing it).
    public static func legacy() -> AuditChainVerifier { AuditChainVerifier(key: nil) }

    private init(key: AuditChainKey?) { self.key = key }

    /// Checks the next record; returns the problem if it breaks the chain.
    public mutating func check(_ record: AuditRecord) -> AuditVerification? {
        if record.sequence != expectedSequence {
            let what =
                record.sequence > expectedSequence
                ? "sequence jumps from \(expectedSequence - 1) to \(record.sequence): record(s) deleted"
                : "sequence \(record.sequence) repeats or goes back after \(expectedSequence - 1): record inserted or reordered"
            return .broken(sequence: record.sequence, reason: what)
        }
        if record.previousHash != previousHash {
            return .broken(
                sequence: record.sequence,
                reason: "previous link does not match record \(record.sequence - 1): inserted, deleted or reordered")
        }
        let recomputed =
            key.map {
                $0.link(
                    AuditRecord.canonicalEncoding(
                        record.event, sequence: record.sequence, previousHash: record.previousHash))
            }
            ?? AuditRecord.legacyHash(record.event, sequence: record.sequence, previousHash: record.previousHash)
        if recomputed != record.hash {
            return .broken(sequence: record.sequence, reason: "content does not match its link: record edited")
        }
        expectedSequence += 1
        previousHash = record.hash
        count += 1
        return nil
    }

    public var result: AuditVerification { .valid(records: count, lastHash: previousHash) }
}

/// Filters for `sigil audit list`.
public struct AuditQuery: Sendable, Equatable {
    public var since: Date?
    public var until: Date?
    public var subject: String?
    public var serial: String?
    public var action: AuditAction?
    public var outcome: AuditOutcome?
    public var afterSequence: Int64
    public var limit: Int
    /// The newest `limit` matching records, newest first (instead of the oldest, in chain order).
    public var newestFirst: Bool

    public init(
        since: Date? = nil, until: Date? = nil, subject: String? = nil, serial: String? = nil,
        action: AuditAction? = nil,
        outcome: AuditOutcome? = nil, afterSequence: Int64 = 0, limit: Int = 1000, newestFirst: Bool = false
    ) {
        self.newestFirst = newestFirst
        self.since = since
        self.until = until
        self.subject = subject
        self.serial = serial
        self.action = action
        self.outcome = outcome
        self.afterSequence = afterSequence
        self.limit = limit
    }
}

/// Who is asking, as the audit record names them.
public struct Requester: Sendable, Equatable {
    /// `spiffe://…`, `operator:cli`, `admin:<uid>`, or `anonymous` before authentication succeeds.
    public var actor: String
    public var requestID: String?
    public var clientAddress: String?
    /// HMAC-SHA256 of the presented token under the audit key (never the token).
    public var tokenHMAC: String?
    /// Authenticated by a Sigil client certificate: the issuance is a renewal.
    public var isRenewal: Bool
    /// When the identity was last proven with a token: nil when it is proven now (a token issuance); for a
    /// renewal, the presented certificate's, carried into the new one.
    public var authenticatedAt: Date?
    /// For a renewal, the serial of the certificate that authenticated it: the renewal's record names it, so
    /// the certificates descending from a stolen one can be found (`sigil audit list --action renew`).
    public var renewing: SerialNumber?
    /// What the request's records add to their reason (Istio's API: `istio cluster=… ttl_requested=…s
    /// ttl_granted=…s`).
    public var note: String?

    public init(
        actor: String, requestID: String? = nil, clientAddress: String? = nil, tokenHMAC: String? = nil,
        isRenewal: Bool = false,
        authenticatedAt: Date? = nil
    ) {
        self.actor = actor
        self.requestID = requestID
        self.clientAddress = clientAddress
        self.tokenHMAC = tokenHMAC
        self.isRenewal = isRenewal
        self.authenticatedAt = authenticatedAt
    }

    /// Whether authentication has succeeded (refusals before it are not tied to any identity).
    public var isAuthenticated: Bool { actor != "anonymous" }

    /// A success event of `action` by this requester.
    public func event(_ action: AuditAction, at time: Date) -> AuditEvent {
        AuditEvent(
            time: time, actor: actor, action: action, requestID: requestID, clientAddress: clientAddress,
            tokenHMAC: tokenHMAC)
    }

    /// `base` followed by the note, when there is one.
    public func reason(_ base: String?) -> String? {
        guard let note else { return base }
        return base.map { "\($0); \(note)" } ?? note
    }

    /// A denial of this requester's request with `error`'s code and reason.
    public func denial(_ error: CAError, subject: String?, at time: Date) -> AuditEvent {
        var event = event(.deny, at: time)
        event.outcome = .failure
        event.code = error.code.rawValue
        event.reason = reason(error.reason)
        event.subject = subject
        return event
    }
}

/// Writes one JSON object field by field with RFC 8259 string escaping. Callers add keys in the order they
/// want them; the audit chain's canonical encoding adds them sorted. Far cheaper than JSONSerialization, whose
/// key sorting through AnyHashable was the largest single cost of an issuance.
public struct JSONObjectWriter {
    private var bytes: [UInt8] = [UInt8(ascii: "{")]
    private var first = true
    private let writeNulls: Bool

    public init(writeNulls: Bool = true) {
        self.writeNulls = writeNulls
        bytes.reserveCapacity(512)
    }

    public mutating func field(_ name: String, _ value: String?) {
        guard let value else {
            if writeNulls {
                key(name)
                bytes.append(contentsOf: "null".utf8)
            }
            return
        }
        key(name)
        string(value)
    }

    public mutating func field(_ name: String, _ value: Int64) {
        key(name)
        bytes.append(contentsOf: String(value).utf8)
    }

    public mutating func field(_ name: String, _ values: [String]) {
        key(name)
        bytes.append(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            string(value)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    public func finish() -> [UInt8] { bytes + [UInt8(ascii: "}")] }

    private mutating func key(_ name: String) {
        if !first { bytes.append(UInt8(ascii: ",")) }
        first = false
        string(name)
        bytes.append(UInt8(ascii: ":"))
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    private mutating func string(_ value: String) {
        let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        bytes.append(quote)
        var value = value
        value.withUTF8 { utf8 in
            // Runs of bytes that need no escape are copied whole (a PEM chain is a few thousand of them).
            var start = 0
            for (index, byte) in utf8.enumerated() where byte == quote || byte == backslash || byte < 0x20 {
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<index]))
                start = index + 1
                if byte >= 0x20 {
                    bytes.append(contentsOf: [backslash, byte])
                } else {
                    bytes.append(contentsOf: "\\u00".utf8)
                    bytes.append(Self.hexDigits[Int(byte >> 4)])
                    bytes.append(Self.hexDigits[Int(byte & 0xf)])
                }
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start...]))
        }
        bytes.append(quote)
    }
}

extension AuditStore {
    /// Calls `body` with every record `query(after)` matches, in chain order, a page at a time (a page shorter
    /// than its query's limit ends the walk); returns the last sequence seen (or `afterSequence`).
    @discardableResult
    public func forEachAuditRecord(
        after afterSequence: Int64 = 0, _ query: (Int64) throws -> AuditQuery, _ body: (AuditRecord) throws -> Void
    ) async throws -> Int64 {
        var after = afterSequence
        while true {
            let request = try query(after)
            let page = try await auditRecords(request)
            for record in page { try body(record) }
            guard let last = page.last else { return after }
            after = last.sequence
            if page.count < max(1, request.limit) { return after }
        }
    }

    /// The newest `count` records `query` matches, oldest first, and the newest one's sequence (0 when none), in
    /// one read.
    public func newestAuditRecords(
        _ query: AuditQuery, count: Int
    ) async throws -> (records: [AuditRecord], lastSequence: Int64) {
        var newest = query
        newest.newestFirst = true
        newest.limit = max(1, count)
        let records = try await auditRecords(newest)
        return (Array(records.prefix(max(0, count)).reversed()), records.first?.sequence ?? 0)
    }

    /// Walks the whole chain from its first record under the store's chain key and names the first record that
    /// breaks it; `body` sees each record before it is checked.
    public func verifyAuditChain(
        pageSize: Int = 5000, _ body: (AuditRecord) throws -> Void = { _ in }
    ) async throws -> AuditVerification {
        var verifier = AuditChainVerifier(key: AuditChainKey(auditKey: try await auditKey()))
        var after: Int64 = 0
        while true {
            let page = try await auditRecords(AuditQuery(afterSequence: after, limit: pageSize))
            for record in page {
                try body(record)
                if let problem = verifier.check(record) { return problem }
            }
            guard page.count == pageSize, let last = page.last else { return verifier.result }
            after = last.sequence
        }
    }
}
