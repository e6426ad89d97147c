"""Attacker text never reaches the logs or the audit log raw, and a flood of refusals cannot fill the disk
(issue 16, finding 5), against the real binary over HTTPS."""
from __future__ import annotations

import re

from sigil_harness import (
    assert_problem,
    audit_records,
    b64url,
    python_csr,
    token_parts,
    wait_until,
)

# Every line sigil serve writes on stderr is one swift-log line: a timestamp, a level and the label.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} (trace|debug|info|notice|warning|error|critical) sigil: ")
MAX_RECORD_BYTES = 8192  # AuditEvent.maxEncodedBytes


def hostile_token() -> str:
    """A JWT whose header `alg` is 10,000 bytes with a newline, a forged log line and terminal escapes."""
    forged = "\n2026-01-01T00:00:00+0000 notice sigil: [SigilServer] issued sigil.identity=spiffe://cluster.local/ns/kube-system/sa/admin\n"
    alg = "\x1b[2J\x1b]0;pwned\x07" + forged + "A" * 10_000
    header = b64url(('{"alg":' + __import__("json").dumps(alg) + ',"kid":"x"}').encode())
    return header + "." + b64url(b'{"sub":"x"}') + ".c2ln"


def test_a_hostile_token_header_is_neither_logged_nor_recorded_raw(sigil, start_server, tmp_path):
    server = start_server(tmp_path / "pki", "--log-level", "debug")
    token = hostile_token()
    assert_problem(server.post_csr(python_csr()[0], token), 401, "token_invalid", forbidden=token_parts(token))
    wait_until(lambda: "request refused" in server.stderr, timeout=10, what="the refusal's log line")

    for line in server.stderr.splitlines():
        assert LOG_LINE.match(line), f"a line on stderr that sigil did not write as a log line: {line[:200]!r}"
        assert "\x1b" not in line and "\x07" not in line, f"a terminal control character reached the log: {line[:200]!r}"
    assert "AAAAAAAAAA" not in server.stderr and "pwned" not in server.stderr

    (denial,) = [r for r in audit_records(sigil, "--data-dir", server.data_dir) if r["action"] == "deny"]
    assert denial["code"] == "token_invalid"
    assert "pwned" not in denial["reason"] and "AAAAAAAAAA" not in denial["reason"], denial
    exported = sigil.ok("audit", "export", "--data-dir", server.data_dir).stdout
    assert max(len(line.encode()) for line in exported.splitlines()) <= MAX_RECORD_BYTES
    listed = sigil.ok("audit", "list", "--data-dir", server.data_dir).stdout
    assert "\x1b" not in listed and "\x07" not in listed


def test_a_flood_of_unauthenticated_refusals_is_audited_within_the_budget_and_summarised(sigil, start_server, tmp_path):
    server = start_server(tmp_path / "pki", "--audit-denial-budget", "5")
    csr = python_csr()[0]
    flood = 100
    for n in range(flood):
        token = f"not-a-jwt-{n}"
        assert_problem(server.post_csr(csr, token), 401, "token_invalid")

    def summary():
        records = audit_records(sigil, "--data-dir", server.data_dir)
        return [r for r in records if r["action"] == "deny_summary"] and records

    records = wait_until(summary, timeout=30, interval=0.5, what="the deny_summary record")
    individual = [r for r in records if r["action"] == "deny" and r.get("code") == "token_invalid"]
    summaries = [r for r in records if r["action"] == "deny_summary"]
    counted = sum(int(m) for r in summaries for m in re.findall(r"token_invalid=(\d+)", r["reason"]))
    assert len(individual) < flood / 2, f"{len(individual)} of {flood} refusals written one by one"
    assert len(individual) + counted == flood, (len(individual), counted, summaries)
    metrics = server.metrics()
    assert metrics[("sigil_audit_denials_suppressed_total", ())] == counted
    assert sigil.run("audit", "verify", "--data-dir", server.data_dir).returncode == 0
