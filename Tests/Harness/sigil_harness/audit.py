"""The audit chain as the tests read and tamper with it."""
from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path


from .pki import OTHER_ID, WEB_ID, python_csr
from .process import Result, Sigil, assert_one_line_failure
from .server import SigilServer, assert_issued, assert_problem, token_parts, write_pem_chain
from .tokens import dev_token

# --- audit --------------------------------------------------------------------------------------------

AUDIT_BROKEN = re.compile(r"^Error: audit_chain_broken: record (?P<seq>\d+)\b")


@dataclass
class AuditScenario:
    """What a run of issuances and refusals should leave in the audit chain."""

    issued: dict[str, dict]  # serial -> issuance response body
    denied: dict[str, str]  # request_id -> code
    tokens: list[str]  # every bearer token sent (none may appear in any record, log or export)
    renewed: list[str]  # serials issued by mTLS renewal


def issue_and_deny(sigil: "Sigil", server: SigilServer, tmp_path: Path, store: tuple[str, ...] = ()) -> AuditScenario:
    """Against a local-mode server: two issuances by token, one renewal by mTLS, and six refusals with
    different codes."""
    web = dev_token(sigil, server.data_dir, "default", "web", *store)
    api = dev_token(sigil, server.data_dir, "payments", "api", *store)
    wrong_audience = dev_token(sigil, server.data_dir, "default", "web", "--audience", "vault", *store)
    garbage = "eyJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(40) + "." + secrets.token_urlsafe(40)
    scenario = AuditScenario({}, {}, [web, api, wrong_audience, garbage], [])

    csr, key = python_csr()
    body = assert_issued(server.post_csr(csr, web), WEB_ID)
    scenario.issued[body["serial"]] = body
    body = assert_issued(server.post_csr(python_csr(spiffe_id=None)[0], api), "spiffe://cluster.local/ns/payments/sa/api")
    scenario.issued[body["serial"]] = body

    chain = write_pem_chain(tmp_path / "audit-svid.pem", scenario.issued[next(iter(scenario.issued))]["chain"])
    key_file = tmp_path / "audit-svid.key"
    key_file.write_text(key)
    body = assert_issued(server.post_csr(python_csr()[0], cert=(str(chain), str(key_file))), WEB_ID)
    scenario.issued[body["serial"]] = body
    scenario.renewed.append(body["serial"])

    refusals = [
        (dict(csr_pem=python_csr()[0], token=None), 401, "unauthenticated"),
        (dict(csr_pem=python_csr()[0], token=wrong_audience), 401, "audience_mismatch"),
        (dict(csr_pem=python_csr()[0], token=garbage), 401, "token_invalid"),
        (dict(csr_pem=python_csr(spiffe_id=OTHER_ID)[0], token=web), 403, "identity_mismatch"),
        (dict(csr_pem="not a csr", token=web), 400, "csr_invalid"),
        (dict(csr_pem=python_csr()[0], token=web, ttl_seconds=30 * 86_400), 400, "ttl_out_of_range"),
    ]
    for request, status, code in refusals:
        problem = assert_problem(server.post_csr(**request), status, code, forbidden=tuple(scenario.tokens))
        scenario.denied[problem["request_id"]] = code
    return scenario


def audit_records(sigil: "Sigil", *store_args) -> list[dict]:
    result = sigil.ok("audit", "list", *store_args, "--json", "--limit", "100000")
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_audit_broken_at(result: Result, expected: int | set[int]) -> int:
    """`sigil audit verify` failed with one line naming the first bad record; returns its number."""
    line = assert_one_line_failure(result)
    match = AUDIT_BROKEN.match(line)
    assert match, f"expected 'Error: audit_chain_broken: record N: …':\n{result}"
    wanted = {expected} if isinstance(expected, int) else expected
    assert int(match["seq"]) in wanted, f"expected record {sorted(wanted)} to be named:\n{result}"
    return int(match["seq"])


def assert_no_token_in(text: str, tokens: list[str], where: str) -> None:
    for token in tokens:
        for part in token_parts(token):
            assert part not in text, f"{where} contains a bearer token (or part of one: {part[:16]}…)"


# Tampering with the audit table, the same SQL for `sqlite3` and `psql`. Each case takes something with
# execute(sql) -> stdout (one value per line, unaligned) and returns the record number `sigil audit
# verify` must name (or the set of acceptable numbers).


def _scalar(db, sql: str) -> int:
    return int(db.execute(sql).strip())


_FIRST_ISSUE = "SELECT min(seq) FROM audit WHERE action = 'issue'"


def _first_issue(db) -> int:
    return _scalar(db, _FIRST_ISSUE)


def _edit(record: str, assignment: str):
    """A case that edits one record in place: `record` selects its seq, `assignment` is the SET clause."""

    def tamper(db):
        seq = _scalar(db, record)
        db.execute(f"UPDATE audit SET {assignment} WHERE seq = {seq}")
        return seq

    return tamper


def _tamper_delete(db):
    seq = _first_issue(db)
    db.execute(f"DELETE FROM audit WHERE seq = {seq}")
    return {seq, seq + 1}  # noticed at the record after the gap, or named as the missing one


def _tamper_delete_and_renumber(db):
    """Closes the gap so the sequence looks continuous: the hash links must still break."""
    seq = _first_issue(db)
    db.execute(
        f"DELETE FROM audit WHERE seq = {seq}; UPDATE audit SET seq = -seq WHERE seq > {seq};"
        " UPDATE audit SET seq = -seq - 1 WHERE seq < 0;"
    )
    return seq


def _tamper_swap(db):
    seq = _first_issue(db)
    db.execute(
        f"UPDATE audit SET seq = -1 WHERE seq = {seq}; UPDATE audit SET seq = {seq} WHERE seq = {seq + 1};"
        f" UPDATE audit SET seq = {seq + 1} WHERE seq = -1;"
    )
    return seq


def _tamper_append_forged(db):
    seq = _scalar(db, "SELECT max(seq) FROM audit")
    db.execute(
        "INSERT INTO audit (seq, time_us, actor, action, outcome, subject, serial, prev_hash, hash)"
        " SELECT seq + 1, time_us + 1, actor, 'issue', 'success', 'spiffe://cluster.local/ns/default/sa/evil',"
        f" '00112233445566778899aabbccddeeff', hash, '{'ab' * 32}' FROM audit WHERE seq = {seq}"
    )
    return seq + 1


TAMPERING = {
    "edit-subject": _edit(_FIRST_ISSUE, "subject = 'spiffe://cluster.local/ns/default/sa/evil'"),
    "edit-outcome": _edit("SELECT min(seq) FROM audit WHERE action = 'deny'", "outcome = 'success', code = NULL"),
    "edit-time": _edit(_FIRST_ISSUE, "time_us = time_us + 1"),
    # The newest record has no successor whose prev_hash would notice: its own link must.
    "edit-last-record": _edit("SELECT max(seq) FROM audit", "reason = 'nothing to see'"),
    "delete": _tamper_delete,
    "delete-and-renumber": _tamper_delete_and_renumber,
    "swap": _tamper_swap,
    "append-forged": _tamper_append_forged,
}
