import Foundation
import SigilCore

/// The SQL dialects of the two backends. The statements of `StoreSchema` and `StoreSQL` are written once with
/// `?` placeholders and `{TYPE}` names; each backend renders them for its engine.
enum SQLDialect: Sendable {
    case sqlite, postgres

    /// `template` with its `{TYPE}` names replaced by this dialect's column types.
    func render(_ template: String) -> String {
        let types: [(String, String)] =
            switch self {
            case .sqlite:
                [
                    ("{BLOB}", "BLOB"), ("{REAL}", "REAL"), ("{BOOL}", "INTEGER"), ("{INT64}", "INTEGER"),
                    ("{FALSE}", "0"),
                ]
            case .postgres:
                [
                    ("{BLOB}", "BYTEA"), ("{REAL}", "DOUBLE PRECISION"), ("{BOOL}", "BOOLEAN"), ("{INT64}", "BIGINT"),
                    ("{FALSE}", "FALSE"),
                ]
            }
        return types.reduce(template) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
    }

    /// `sql` with its `?` placeholders numbered `$1`, `$2`… for PostgreSQL (statements here never hold a `?`
    /// inside a literal).
    func placeholders(_ sql: String) -> String {
        guard self == .postgres else { return sql }
        var result = ""
        var number = 0
        for character in sql {
            if character == "?" {
                number += 1
                result += "$\(number)"
            } else {
                result.append(character)
            }
        }
        return result
    }
}

/// The store's schema, once for both backends: migrations in order, each a list of statements applied in one
/// transaction. A migration never changes once released; a new one is appended.
enum StoreSchema {
    struct Migration: Sendable {
        let name: String
        let statements: [String]

        func statements(in dialect: SQLDialect) -> [String] { statements.map(dialect.render) }
    }

    static let migrations: [Migration] = [
        Migration(
            name: "v1-authorities-inventory",
            statements: [
                """
                CREATE TABLE authorities (
                    id TEXT PRIMARY KEY,
                    role TEXT NOT NULL CHECK (role IN ('root', 'intermediate')),
                    state TEXT NOT NULL CHECK (state IN ('prepared', 'active', 'retired', 'tainted', 'revoked')),
                    certificate {BLOB} NOT NULL,
                    parent_id TEXT REFERENCES authorities(id),
                    is_upstream {BOOL} NOT NULL DEFAULT {FALSE},
                    sealed_key {BLOB},
                    created_at {REAL} NOT NULL,
                    updated_at {REAL} NOT NULL
                )
                """,
                // At most one active authority per role, enforced by the database itself.
                "CREATE UNIQUE INDEX authorities_one_active ON authorities(role) WHERE state = 'active'",
                """
                CREATE TABLE certificates (
                    serial TEXT PRIMARY KEY,
                    spiffe_id TEXT NOT NULL,
                    authority_id TEXT NOT NULL REFERENCES authorities(id),
                    not_before {REAL} NOT NULL,
                    not_after {REAL} NOT NULL,
                    key_sha256 TEXT NOT NULL,
                    issued_at {REAL} NOT NULL,
                    revoked_at {REAL}
                )
                """,
                "CREATE INDEX certificates_by_identity ON certificates(spiffe_id, not_after)",
                "CREATE INDEX certificates_by_authority ON certificates(authority_id, not_after)",
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value {INT64} NOT NULL)",
                "INSERT INTO meta (key, value) VALUES ('bundle_sequence', 0)",
                "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            ]),
        Migration(
            name: "v2-audit",
            statements: [
                """
                CREATE TABLE audit (
                    seq {INT64} PRIMARY KEY,
                    time_us {INT64} NOT NULL,
                    actor TEXT NOT NULL,
                    action TEXT NOT NULL,
                    outcome TEXT NOT NULL,
                    code TEXT,
                    reason TEXT,
                    subject TEXT,
                    serial TEXT,
                    authority_id TEXT,
                    key_sha256 TEXT,
                    request_id TEXT,
                    client_address TEXT,
                    token_hmac TEXT,
                    prev_hash TEXT NOT NULL,
                    hash TEXT NOT NULL
                )
                """,
                "CREATE INDEX audit_by_time ON audit(time_us)",
                "CREATE INDEX audit_by_subject ON audit(subject)",
                "CREATE INDEX audit_by_serial ON audit(serial)",
            ]),
        Migration(
            name: "v3-leases",
            statements: [
                "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at {REAL} NOT NULL)"
            ]),
        // An index on (spiffe_id, not_after) put every issuance at its identity's own spot: with 1,000 identities
        // one more dirty page per issuance in each commit, the WAL and each checkpoint, for a lookup no issuance
        // makes. An identity's live certificates are read through certificates_by_authority.
        Migration(name: "v4-no-identity-index", statements: ["DROP INDEX IF EXISTS certificates_by_identity"]),
        // Trust hardening: authority rows carry a MAC and, once their key is erased, their final CRL; certificates
        // record when their identity was last proven with a token (NULL: at issuance); revoked certificates are
        // found per authority without reading its live range.
        Migration(
            name: "v5-trust",
            statements: [
                "ALTER TABLE authorities ADD COLUMN mac TEXT",
                "ALTER TABLE authorities ADD COLUMN final_crl {BLOB}",
                "ALTER TABLE certificates ADD COLUMN authenticated_at {REAL}",
                "CREATE INDEX certificates_revoked ON certificates(authority_id) WHERE revoked_at IS NOT NULL",
            ]),
        // The trust console's timeline reads the taint and revoke records: a partial index holds only those (no
        // cost to an issuance), so the timeline does not scan the whole audit log.
        Migration(
            name: "v6-authority-events",
            statements: [
                "CREATE INDEX audit_authority_events ON audit(action, seq) WHERE action = 'taint' OR action = 'revoke'"
            ]),
    ]
}
