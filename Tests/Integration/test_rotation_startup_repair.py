"""Start-up repair: a server that comes back after its active intermediate expired (or finds none active)
activates a fresh one before it serves, says so in its log and audit chain, and issues certificates that
pass the conformance checker at once."""
from __future__ import annotations

import datetime
import sqlite3

from cryptography import x509

from rotation_support import Rig, Server, audit_records, check_svid, conformant, find_records, rig, wait_until  # noqa: F401
from sigil_harness import WEB_ID, sha256_hex

# The shortest intermediate the configuration rules allow (default leaf TTL x 6 <= intermediate), so that
# the test waits about a minute for it to expire while the server is down.
SHORT_INTERMEDIATE = {
    "authority": {"root_ttl": "30m", "intermediate_ttl": "1m"},
    "policy": {"default_ttl": "10s", "min_ttl": "10s", "max_ttl": "10s", "backdate": "5s"},
}


def active(status: dict, role: str) -> dict:
    found = [a for a in status["authorities"] if a["role"] == role and a["state"] == "active"]
    assert len(found) == 1, f"expected one active {role}: {status}"
    return found[0]


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def stop(server: Server) -> None:
    assert server.stop() == 0, f"sigil serve did not exit 0 on SIGTERM:\n{server.describe()}"


def assert_serves_a_fresh_intermediate(rig: Rig, server: Server, old: dict) -> dict:
    """The restarted server says it repaired, is ready, and issues under a new, unexpired intermediate."""
    repair_lines = [line for line in server.stderr().splitlines() if "repair" in line.lower()]
    assert any("intermediate" in line for line in repair_lines), f"the server did not say it repaired the intermediate:\n{server.describe()}"
    status = server.status()
    new = active(status, "intermediate")
    assert new["id"] != old["id"], f"{old['id']} is still the active intermediate: {status}"
    assert parse_time(new["not_after"]) > datetime.datetime.now(datetime.timezone.utc)
    assert {a["id"]: a["state"] for a in status["authorities"]}.get(old["id"]) != "active"
    ready = server.get("/readyz")
    assert ready.status_code == 200, ready.text

    out = rig.path(f"{server.name}-once")
    once = rig.sigil.run(
        "agent", "--once", "--server", server.url, "--token-file", rig.token(server.data_dir, "web"), "--out-dir", out,
        "--ca-bundle", server.bundle, "--timeout", "20s", timeout=60,
    )
    assert once.returncode == 0, f"agent --once failed after the repair:\n{once}\n{server.describe()}"
    report = check_svid(out / "svid.pem", out / "bundle.pem", out / "svid.key", WEB_ID)
    assert conformant(report), f"check-svid.py did not pass:\n{report}"
    issuer = x509.load_pem_x509_certificates((out / "svid.pem").read_bytes())[1]
    assert sha256_hex(issuer) == new["sha256_fingerprint"], "the certificate is not issued by the repaired intermediate"

    records = audit_records(rig.sigil, server.data_dir)
    assert find_records(records, action="rotate", outcome="success", authority_id=new["id"], reason_has="repair"), (
        f"no audit record of the repair of the intermediate ({new['id']})"
    )
    verify = rig.sigil.run("audit", "verify", "--data-dir", server.data_dir)
    assert verify.returncode == 0, f"sigil audit verify failed:\n{verify}"
    return new


def test_start_up_replaces_an_expired_intermediate(rig: Rig):
    config = rig.config(SHORT_INTERMEDIATE)
    first = rig.serve("--config", config, name="first")
    old = active(first.status(), "intermediate")
    stop(first)

    expires = parse_time(old["not_after"])
    wait_until(
        lambda: datetime.datetime.now(datetime.timezone.utc) > expires + datetime.timedelta(seconds=1),
        120, f"the intermediate {old['id']} to expire while the server is down", interval=1.0,
    )
    restarted = rig.serve("--config", config, name="restarted", data_dir=first.data_dir)
    assert_serves_a_fresh_intermediate(rig, restarted, old)


def test_start_up_repairs_a_missing_active_intermediate(rig: Rig):
    first = rig.serve(name="first")
    old = active(first.status(), "intermediate")
    stop(first)

    # No active intermediate left: the row edited behind Sigil's back (this edits the SQLite store directly;
    # the schema is Sigil's own). Its MAC no longer matches, so the row is ignored as well: either way the
    # server finds no active intermediate and must make one before it serves.
    with sqlite3.connect(first.data_dir / "sigil.db") as db:
        changed = db.execute("UPDATE authorities SET state = 'retired' WHERE id = ? AND state = 'active'", (old["id"],)).rowcount
    assert changed == 1, "could not retire the active intermediate in the store (schema changed?)"

    restarted = rig.serve(name="restarted", data_dir=first.data_dir)
    assert_serves_a_fresh_intermediate(rig, restarted, old)
    records = audit_records(rig.sigil, restarted.data_dir)
    assert find_records(records, action="integrity", outcome="failure", authority_id=old["id"]), "the edited row was not reported"
