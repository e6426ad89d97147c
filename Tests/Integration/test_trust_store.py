"""What a writer of the database without the key-encryption key can no longer do (issue 16, findings 6 and 7):
rewrite the audit chain so that `sigil audit verify` still passes, cut its newest records unnoticed once a
head is anchored, or slip an authority into the trust bundle. The store is changed with Python's sqlite3,
as an operator with file access (or a restored backup) would."""
from __future__ import annotations

import datetime
import hashlib
import json
import sqlite3

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sigil_harness import assert_audit_broken_at, audit_records, issue_and_deny, wait_until
from trust_support import admin, execute

CANONICAL_FIELDS = {
    "action": "action", "actor": "actor", "authority": "authority_id", "client": "client_address", "code": "code",
    "key_sha256": "key_sha256", "outcome": "outcome", "reason": "reason", "request_id": "request_id", "serial": "serial",
    "subject": "subject", "time_us": "time_us", "token_hmac": "token_hmac",
}


def sha256_link(row: dict, previous: str) -> str:
    """The unkeyed link of the chain format before the keyed HMAC: SHA-256 of the canonical JSON (sorted keys, no
    spaces, nulls written). Anyone can compute it; that was the weakness."""
    canonical = {key: row[column] for key, column in CANONICAL_FIELDS.items()}
    canonical.update(prev=previous, seq=row["seq"])
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def test_a_chain_edited_and_relinked_without_the_key_fails_verify(sigil, start_server, tmp_path):
    server = start_server(tmp_path / "pki")
    issue_and_deny(sigil, server, tmp_path)
    assert server.stop() == 0
    database = server.data_dir / "sigil.db"
    connection = sqlite3.connect(database)
    connection.row_factory = sqlite3.Row
    rows = [dict(r) for r in connection.execute("SELECT * FROM audit ORDER BY seq")]
    target = next(r for r in rows if r["action"] == "issue")
    target["subject"] = "spiffe://cluster.local/ns/kube-system/sa/admin"
    previous = rows[target["seq"] - 2]["hash"] if target["seq"] > 1 else "0" * 64
    for row in rows[target["seq"] - 1:]:
        row["prev_hash"], row["hash"] = previous, sha256_link(row, previous)
        connection.execute(
            "UPDATE audit SET subject = ?, prev_hash = ?, hash = ? WHERE seq = ?", (row["subject"], row["prev_hash"], row["hash"], row["seq"]))
        previous = row["hash"]
    connection.commit()
    connection.close()
    assert_audit_broken_at(sigil.run("audit", "verify", "--data-dir", server.data_dir), target["seq"])


def test_an_anchored_head_detects_records_cut_from_the_end(sigil, start_server, tmp_path):
    server = start_server(tmp_path / "pki")
    issue_and_deny(sigil, server, tmp_path)
    assert server.stop() == 0
    head_file = tmp_path / "head.json"
    head_file.write_text(sigil.ok("audit", "head", "--data-dir", server.data_dir, "--json").stdout)
    head = json.loads(head_file.read_text())
    assert set(head) == {"seq", "link", "time"} and len(head["link"]) == 64, head
    assert sigil.ok("audit", "verify", "--data-dir", server.data_dir, "--head", head_file).stdout.startswith("audit chain OK")

    # The newest records removed: the chain that is left is intact, only the anchor shows the cut.
    execute(server.data_dir / "sigil.db", "DELETE FROM audit WHERE seq > ?", head["seq"] - 2)
    sigil.ok("audit", "verify", "--data-dir", server.data_dir)
    cut = sigil.run("audit", "verify", "--data-dir", server.data_dir, "--head", head_file)
    assert cut.returncode != 0 and "audit_chain_broken" in cut.stderr and "removed from its end" in cut.stderr, cut


def forged_root(tmp_path) -> x509.Certificate:
    """A CA certificate made by the attacker, shaped like one of Sigil's roots."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sigil"), x509.NameAttribute(NameOID.COMMON_NAME, "Sigil Root forged")])
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def test_an_authority_row_inserted_behind_sigils_back_is_not_trusted(sigil, start_server, tmp_path):
    server = start_server(tmp_path / "pki")
    certificate = forged_root(tmp_path)
    forged_id = "root-" + hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()[:16]
    execute(
        server.data_dir / "sigil.db",
        "INSERT INTO authorities (id, role, state, certificate, parent_id, is_upstream, sealed_key, created_at, updated_at)"
        " VALUES (?, 'root', 'prepared', ?, NULL, 1, NULL, strftime('%s','now'), strftime('%s','now'))",
        forged_id, certificate.public_bytes(serialization.Encoding.DER))
    # The admin status re-reads the store at once (otherwise within the refresh interval).
    for _ in range(2):
        assert admin(sigil, server, "status").returncode == 0

    served = server.get("/v1/bundle.pem").text
    assert certificate.public_bytes(serialization.Encoding.PEM).decode() not in served
    assert forged_id not in server.get("/v1/authorities").text
    wait_until(lambda: "fails its integrity check" in server.stderr, timeout=10, what="the log line about the rejected row")
    records = [r for r in audit_records(sigil, "--data-dir", server.data_dir) if r["action"] == "integrity"]
    assert [(r["authority_id"], r["outcome"]) for r in records] == [(forged_id, "failure")], "audited once, not on every reload"
    assert server.metrics()[("sigil_authority_rows_rejected", ())] == 1
