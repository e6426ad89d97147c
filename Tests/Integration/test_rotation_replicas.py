"""Two `sigil serve` replicas on one PostgreSQL database (same data dir, so the same key-encryption key;
different ports and admin sockets): a taint issued through replica A's socket reaches an agent that
talks to replica B; a revoke through B reaches A's CRL; both report the same single lease holder, a
crashed holder is replaced once its lease lapses, and a replica whose database vanished still stops on
SIGTERM. Needs $SIGIL_TEST_POSTGRES_URL (skips without it)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from urllib.parse import urlsplit

import pytest

from cryptography import x509

from rotation_support import (  # noqa: F401
    Rig,
    audit_records,
    check_svid,
    conformant,
    find_records,
    POSTGRES_ENV,
    postgres_store,
    rig,
    wait_until,
)
from sigil_harness import WEB_ID, run

# Replicas re-read the store every 10 s; the agent polls every second.
REPLICA_REACTION = 25.0
# The rotation lease lasts 30 s; a survivor retries within its 10 s refresh interval.
LEASE_TAKEOVER = 60.0


def active(status: dict, role: str) -> dict:
    found = [a for a in status["authorities"] if a["role"] == role and a["state"] == "active"]
    assert len(found) == 1, f"expected one active {role}: {json.dumps(status, indent=1)}"
    return found[0]


def states(status: dict) -> dict[str, str]:
    return {a["id"]: a["state"] for a in status["authorities"]}


def start_replicas(rig: Rig, store: str):
    data_dir = rig.path("pki")
    a = rig.serve("--store", store, name="replica-a", data_dir=data_dir)  # initialises the CA
    b = rig.serve("--store", store, name="replica-b", data_dir=data_dir)
    assert a.url != b.url and a.socket != b.socket
    return a, b


def test_a_taint_through_one_replica_reaches_agents_of_the_other(postgres_store: str, rig: Rig):
    a, b = start_replicas(rig, postgres_store)
    ca_bundle = rig.path("ca-bundle.pem")
    shutil.copyfile(a.bundle, ca_bundle)
    agent = rig.agent(b, rig.token(a.data_dir, "web"), "--poll-interval", "1s", name="web", ca_bundle=ca_bundle)
    first = agent.wait_for_first(60)

    status_a, status_b = a.status(), b.status()
    assert status_a.get("lease_holder"), f"no lease holder: {status_a}"
    assert status_a["lease_holder"] == status_b["lease_holder"], "the replicas disagree about the lease holder"
    assert states(status_a) == states(status_b), "the replicas disagree about the authorities"
    old = active(status_a, "intermediate")
    assert first.issuer_fingerprint == old["sha256_fingerprint"]

    tainted_at = time.monotonic()
    a.admin_ok("rotate", "intermediate", "--taint-old", "--reason", "replica drill")
    new = active(a.status(), "intermediate")
    assert new["id"] != old["id"]
    moved = agent.wait_for(
        lambda s: s.issuer_fingerprint == new["sha256_fingerprint"], REPLICA_REACTION,
        "a certificate under the intermediate activated through the other replica",
    )
    reaction = time.monotonic() - tainted_at
    chain, key, bundle = moved.write(rig.path("check"))
    report = check_svid(chain, bundle, key, WEB_ID)
    assert conformant(report), f"check-svid.py did not pass:\n{report}"
    status_b = b.status()
    assert states(status_b)[old["id"]] == "tainted" and active(status_b, "intermediate")["id"] == new["id"], status_b
    assert reaction < REPLICA_REACTION

    # A revoke through B reaches A's CRL within A's refresh interval.
    b.admin_ok("revoke", old["id"], "--reason", "replica drill: revoke through B")
    old_serial = first.intermediate.serial_number
    wait_until(
        lambda: old_serial in {r.serial_number for r in x509.load_der_x509_crl(a.get("/v1/crl").content)},
        REPLICA_REACTION, "replica A's CRL to list the intermediate revoked through replica B", interval=0.5,
    )
    assert states(a.status())[old["id"]] == "revoked"

    status_a, status_b = a.status(), b.status()
    assert status_a["lease_holder"] == status_b["lease_holder"], "the replicas disagree about the lease holder"

    records = audit_records(rig.sigil, a.data_dir, store=postgres_store)
    for expected in (
        dict(action="admin_rotate", outcome="success", reason_has="replica drill", authority_id=new["id"]),
        dict(action="taint", outcome="success", reason="replica drill", authority_id=old["id"]),
        dict(action="activate", outcome="success", reason="replica drill", authority_id=new["id"]),
        dict(action="admin_revoke", outcome="success", reason="replica drill: revoke through B", authority_id=old["id"]),
    ):
        assert find_records(records, **expected), f"no audit record {expected}"
    verify = rig.sigil.run("audit", "verify", "--data-dir", a.data_dir, "--store", postgres_store)
    assert verify.returncode == 0, f"sigil audit verify failed:\n{verify}"


def test_a_crashed_lease_holder_is_replaced(postgres_store: str, rig: Rig):
    a, b = start_replicas(rig, postgres_store)
    holder = wait_until(lambda: a.status().get("lease_holder"), 30, "a lease holder")
    assert holder == b.status().get("lease_holder")
    replicas = {p.pid: p for p in (a, b)}
    holding = [pid for pid in replicas if re.search(rf"(^|\D){pid}(\D|$)", holder)]
    assert len(holding) == 1, f"the lease holder {holder!r} does not name one replica's pid {list(replicas)}"
    crashed = replicas[holding[0]]
    survivor = b if crashed is a else a
    crashed.kill()

    killed_at = time.monotonic()
    new_holder = wait_until(
        lambda: (h := survivor.status().get("lease_holder")) and h != holder and h, LEASE_TAKEOVER,
        "the surviving replica to take the rotation lease", interval=1.0, describe=rig.describe,
    )
    assert str(survivor.pid) in new_holder, f"the new holder {new_holder!r} is not the survivor (pid {survivor.pid})"
    assert time.monotonic() - killed_at < LEASE_TAKEOVER
    # The survivor still serves: a break-glass rotation through it works.
    survivor.admin_ok("rotate", "intermediate", "--reason", "replica drill: after takeover")


def test_a_replica_stops_on_sigterm_after_its_database_is_gone(postgres_store: str, rig: Rig):
    # Before cb55244 (5 s deadline on store operations) it ignored SIGTERM for over a minute here.
    server = rig.serve("--store", postgres_store, name="orphan")
    dropped = _drop_database(postgres_store)
    assert dropped.returncode == 0, f"could not drop the database:\n{dropped}"
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(15)
    except subprocess.TimeoutExpired:
        server.kill()
        pytest.fail(f"sigil serve was still running 15 s after SIGTERM:\n{server.describe()}")
    assert server.process.returncode is not None


def _drop_database(store: str):
    """DROP DATABASE … WITH (FORCE) of a --store URL, through the server's maintenance URL."""
    name = urlsplit(store).path.lstrip("/")
    return run(["psql", os.environ[POSTGRES_ENV], "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", f'DROP DATABASE "{name}" WITH (FORCE)'])
