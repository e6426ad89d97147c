"""The audit chain on the embedded SQLite store (issue 4): every issuance, renewal and refusal over
HTTP is in `sigil audit list` with its serial, subject, authority, outcome and code; `sigil audit
verify` passes, and fails naming the record when one is edited, deleted, swapped or forged with the
`sqlite3` command; the JSON-lines sink and `sigil audit export` parse line by line and hold no token."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sigil_harness import (
    TAMPERING,
    assert_audit_broken_at,
    assert_no_token_in,
    audit_records,
    issue_and_deny,
    run,
)

HEX_DIGITS = set("0123456789abcdef")


@pytest.fixture(scope="module")
def audited(sigil, module_servers, tmp_path_factory):
    """A local-mode server with a JSON-lines sink, after issue_and_deny, then stopped gracefully.
    Returns (server, scenario, sink file, active intermediate id)."""
    if shutil.which("sqlite3") is None:
        pytest.skip("the SQLite tampering tests need the `sqlite3` command")
    directory = tmp_path_factory.mktemp("audit")
    sink = directory / "audit.jsonl"
    server = module_servers(directory / "pki", "--audit-sink", sink)
    intermediate = next(
        a["id"] for a in server.get("/v1/authorities").json()["authorities"] if a["role"] == "intermediate" and a["state"] == "active"
    )
    scenario = issue_and_deny(sigil, server, directory)
    assert server.stop() == 0, server.describe()
    return server, scenario, sink, intermediate


def test_every_issuance_is_audited_with_serial_subject_and_authority(sigil, audited):
    server, scenario, _, intermediate = audited
    records = {r.get("serial"): r for r in audit_records(sigil, "--data-dir", server.data_dir) if r.get("serial")}
    for serial, body in scenario.issued.items():
        record = records.get(serial)
        assert record, f"no audit record for serial {serial}"
        assert record["action"] == ("renew" if serial in scenario.renewed else "issue"), record
        assert record["outcome"] == "success" and record.get("code") is None, record
        assert record["subject"] == body["spiffe_id"] and record["actor"] == body["spiffe_id"], record
        assert record["authority_id"] == intermediate, record
        assert record["client_address"] == "127.0.0.1", record
        leaf = x509.load_pem_x509_certificate(body["chain"][0].encode())
        spki = leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        assert record["public_key_sha256"] == hashlib.sha256(spki).hexdigest(), record
        if serial not in scenario.renewed:
            assert len(record["token_hmac"]) == 64 and set(record["token_hmac"]) <= HEX_DIGITS, record
            # An HMAC under the deployment's audit key, not a bare hash anyone could recompute.
            assert record["token_hmac"] not in {hashlib.sha256(t.encode()).hexdigest() for t in scenario.tokens}, record


def test_every_refusal_is_audited_with_its_code(sigil, audited):
    server, scenario, _, _ = audited
    records = {r.get("request_id"): r for r in audit_records(sigil, "--data-dir", server.data_dir) if r.get("request_id")}
    for request_id, code in scenario.denied.items():
        record = records.get(request_id)
        assert record, f"no audit record for refused request {request_id} ({code})"
        assert record["action"] == "deny" and record["outcome"] == "failure" and record["code"] == code, record
        assert "serial" not in record, record


def test_list_filters_by_serial_and_outcome(sigil, audited):
    server, scenario, _, _ = audited
    serial = next(iter(scenario.issued))
    (record,) = audit_records(sigil, "--data-dir", server.data_dir, "--serial", serial)
    assert record["serial"] == serial
    failures = audit_records(sigil, "--data-dir", server.data_dir, "--outcome", "failure")
    assert {r["request_id"] for r in failures} >= set(scenario.denied)
    assert all(r["outcome"] == "failure" for r in failures)
    text = sigil.ok("audit", "list", "--data-dir", server.data_dir).stdout
    for serial in scenario.issued:
        assert serial in text
    for code in scenario.denied.values():
        assert code in text


def test_chain_verifies_and_server_life_is_recorded(sigil, audited):
    server, _, _, _ = audited
    result = sigil.ok("audit", "verify", "--data-dir", server.data_dir)
    assert "OK" in result.stdout, result
    records = audit_records(sigil, "--data-dir", server.data_dir)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    for previous, record in zip(records, records[1:]):
        assert record["prev_hash"] == previous["hash"], record
    actions = [r["action"] for r in records]
    assert "start" in actions and actions[-1] == "stop", actions


def test_sink_and_export_are_json_lines_without_tokens(sigil, audited):
    server, scenario, sink, _ = audited
    exported = sigil.ok("audit", "export", "--data-dir", server.data_dir).stdout
    export_records = [json.loads(line) for line in exported.splitlines()]
    sink_text = sink.read_text()
    sink_records = [json.loads(line) for line in sink_text.splitlines()]

    assert export_records == audit_records(sigil, "--data-dir", server.data_dir)
    by_seq = {r["seq"]: r for r in export_records}
    for record in sink_records:
        assert by_seq.get(record["seq"]) == record, f"the sink's record differs from the store's: {record}"
    streamed = {r.get("serial") for r in sink_records} | {r.get("request_id") for r in sink_records}
    assert set(scenario.issued) <= streamed and set(scenario.denied) <= streamed, "the sink missed records"

    for text, where in [
        (exported, "audit export"),
        (sink_text, "the audit sink"),
        (server.stderr, "the server log"),
        (server.stdout, "the server stdout"),
        (sigil.ok("audit", "list", "--data-dir", server.data_dir).stdout, "audit list"),
        (run(["sqlite3", server.data_dir / "sigil.db", ".dump"]).stdout, "the SQLite store"),
    ]:
        assert_no_token_in(text, scenario.tokens, where)


def test_audit_sink_to_stdout(start_server, tmp_path):
    """--audit-sink stdout: after the listening line, stdout carries one JSON record per line."""

    def record(action):
        def match(line):
            if line.startswith("sigil listening on"):
                return None
            parsed = json.loads(line)  # every other stdout line is a JSON record
            return parsed if parsed["action"] == action else None

        return match

    server = start_server(tmp_path / "pki", "--audit-sink", "stdout")
    assert server.wait_for_stdout(record("start"), 10), server.describe()
    server.post_csr("x", None)
    denial = server.wait_for_stdout(record("deny"), 10)
    assert denial and denial["code"] == "unauthenticated", server.describe()


# --- tampering -----------------------------------------------------------------------------------


class SQLiteAudit:
    """The `sqlite3` command on a copy of the store: what an attacker with file access would use."""

    def __init__(self, db):
        self.db = db

    def execute(self, sql: str) -> str:
        result = run(["sqlite3", self.db, sql])
        assert result.returncode == 0, result
        return result.stdout


@pytest.mark.parametrize("case", TAMPERING)
def test_verify_names_the_tampered_record(sigil, audited, tmp_path, case):
    server, _, _, _ = audited
    copy = tmp_path / "pki"
    shutil.copytree(server.data_dir, copy)
    expected = TAMPERING[case](SQLiteAudit(copy / "sigil.db"))
    assert_audit_broken_at(sigil.run("audit", "verify", "--data-dir", copy), expected)
    # The original is untouched and still verifies.
    sigil.ok("audit", "verify", "--data-dir", server.data_dir)
