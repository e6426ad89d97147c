"""Operational hardening (issue 16, findings 8, 10, 11 and the disk-full check): unauthenticated reads cost no
private-key operation and are rate limited, secret files are read only when they are what they claim,
local mode stays on loopback, an unreachable store says why, and a full disk fails closed and recovers."""
from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import time

import pytest

from sigil_harness import (
    LEDGER,
    WEB_ID,
    assert_issued,
    assert_one_line_failure,
    assert_problem,
    audit_records,
    dev_token,
    free_port,
    python_csr,
    run,
)


def test_a_crl_flood_signs_nothing_and_is_rate_limited(sigil, start_server, tmp_path):
    """1,500 parallel GET /v1/crl from one client: the CRL comes from memory (every answer the same bytes: a
    CRL signed per request would differ in number and signature), and the client's burst runs out (a limit
    of 20/s with a burst of 200 here, so that it does on a loaded machine too)."""
    server = start_server(tmp_path / "pki", "--rate-limit-client", "20", "--rate-limit-client-burst", "200")
    session_pool = concurrent.futures.ThreadPoolExecutor(max_workers=32)
    try:
        answers = list(session_pool.map(lambda _: server.get("/v1/crl"), range(1500)))
    finally:
        session_pool.shutdown()
    statuses = {a.status_code for a in answers}
    assert statuses <= {200, 429}, statuses
    bodies = {a.content for a in answers if a.status_code == 200}
    assert len(bodies) == 1, f"{len(bodies)} different CRLs: signed per request"
    assert sum(a.status_code == 429 for a in answers) >= 500, "the per-client limit did not apply to /v1/crl"
    assert [r for r in audit_records(sigil, "--data-dir", server.data_dir) if r.get("code") == "rate_limited"]


@pytest.mark.parametrize("what", ["kek-symlink", "kek-other-owner", "dev-issuer-key-symlink"])
def test_secret_files_are_read_only_when_private_regular_files_of_ours(sigil, tmp_path, what):
    data_dir = tmp_path / "pki"
    sigil.ok("init", "--data-dir", data_dir)
    if what == "dev-issuer-key-symlink":
        # A link where local mode's development issuer key belongs, to a real private key file.
        key = data_dir / "dev-issuer.key"
        real = tmp_path / "elsewhere.key"
        run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", real])
        os.chmod(real, 0o600)
        key.symlink_to(real)
    elif what == "kek-symlink":
        kek = data_dir / "kek"
        moved = tmp_path / "kek-elsewhere"
        shutil.move(kek, moved)
        kek.symlink_to(moved)
    else:
        os.chown(data_dir / "kek", 65534, 65534)
    result = sigil.run("serve", "--data-dir", data_dir, "--listen", "127.0.0.1:0", timeout=30)
    line = assert_one_line_failure(result)
    expected = "owned by uid 65534" if what == "kek-other-owner" else "symbolic link"
    assert "insecure" in line and expected in line, line


def test_local_mode_stays_on_loopback_unless_asked(sigil, tmp_path):
    # Refused before anything is bound: no traffic reaches the address.
    result = sigil.run("serve", "--data-dir", tmp_path / "pki", "--listen", "0.0.0.0:0", timeout=30)
    line = assert_one_line_failure(result)
    assert "configuration_invalid" in line and "--local-mode" in line, line
    assert not (tmp_path / "pki").exists(), "nothing is created before the refusal"


def test_an_unreachable_store_says_why_on_every_attempt_and_gives_up(sigil, tmp_path):
    url = f"postgres://sigil@127.0.0.1:{free_port()}/sigil?sslmode=disable"
    started = time.monotonic()
    result = sigil.run("serve", "--data-dir", tmp_path / "pki", "--listen", "127.0.0.1:0", "--store", url,
                       "--store-connect-timeout", "3s", timeout=60)
    took = time.monotonic() - started
    assert result.returncode != 0 and took < 20, (took, result)
    attempts = [line for line in result.stderr.splitlines() if "PostgreSQL store not reachable; retrying" in line]
    assert len(attempts) >= 2 and all("refused" in line.lower() for line in attempts), result.stderr
    final = result.stderr.splitlines()[-1]
    assert final.startswith("Error: store_unavailable:") and "unreachable after" in final and "refused" in final.lower(), final

    listed = sigil.run("audit", "list", "--data-dir", tmp_path / "pki", "--store", url, "--store-connect-timeout", "2s", timeout=60)
    assert listed.returncode != 0 and listed.stdout == ""
    assert listed.stderr.splitlines()[-1].startswith("Error: store_unavailable:") and "refused" in listed.stderr.lower(), listed


def test_a_store_without_tls_is_refused_when_the_url_asks_for_verification(sigil, tmp_path, postgres_server_url):
    url = postgres_server_url.split("?")[0] + "?sslmode=verify-full"
    sigil.ok("init", "--data-dir", tmp_path / "pki")  # a key-encryption key to open the store with
    result = sigil.run("audit", "list", "--data-dir", tmp_path / "pki", "--store", url, "--store-connect-timeout", "1s", timeout=60)
    assert result.returncode != 0
    assert "does not offer TLS" in result.stderr.splitlines()[-1], result


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB tmpfs for the data directory (mount needs root; where it is refused the test says so)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", mount_point], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill ({mounted.stderr.strip()}): the disk-full check needs root")
    yield mount_point
    if (mount_point / "pki").exists():
        LEDGER.snapshot_data_dir(mount_point / "pki", "the disk-full test")  # scanned at the end, after the unmount
    subprocess.run(["umount", "-l", mount_point], check=False)


def test_a_full_disk_fails_closed_and_recovers(sigil, start_server, small_disk):
    server = start_server(small_disk / "pki")
    token = dev_token(sigil, server.data_dir)
    csr = python_csr()[0]
    received = [assert_issued(server.post_csr(csr, token), WEB_ID)["serial"]]
    filler = small_disk / "filler"
    with open(filler, "wb") as out:  # fill every byte left
        try:
            while True:
                out.write(b"\0" * (1 << 20))
                out.flush()
        except OSError:
            pass
    refused = None
    for _ in range(200):  # SQLite may still have room in pages it holds; the WAL has to grow soon
        response = server.post_csr(csr, token, allow_5xx=True)
        if response.status_code == 201:
            received.append(response.json()["serial"])
            continue
        refused = response
        break
    assert refused is not None, "the disk never filled up"
    assert_problem(refused, 503, "audit_unavailable")
    assert server.get("/healthz").status_code == 200

    filler.unlink()
    received.append(assert_issued(server.post_csr(csr, token), WEB_ID)["serial"])
    assert server.stop() == 0
    sigil.ok("audit", "verify", "--data-dir", server.data_dir)
    recorded = {r.get("serial") for r in audit_records(sigil, "--data-dir", server.data_dir) if r["action"] == "issue"}
    assert set(received) <= recorded, "a certificate left without its audit record"
