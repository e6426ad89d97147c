#!/usr/bin/env python3
"""The trust console on a large store (scripts/bench): every page's server render time (its `Server-Timing`
header) with N live certificates and N audit records of the last hour in the store.

Usage: console_load.py SIGIL_BIN WORK_DIR OUT_JSON [--certificates 100000] [--requests 20]

Initialises a data dir, seeds `certificates` live certificates (10,000 identities in 100 namespaces, expiring over
the next hour, under the active intermediate) and as many audit records of the last hour (issues and one denial
in ten) with sqlite3 (Python's), starts `sigil serve`, signs in with `sigil admin console-login`, and requests
each page `requests` times over one keep-alive connection. The seeded audit rows carry random links: the chain does
not verify across them (the audit page says so), which costs the page nothing (verification runs in the background).
Writes {pages: {name: {p50_ms, max_ms, bytes}}, …} to OUT_JSON."""
from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Tests" / "Harness"))
from sigil_harness import SigilServer  # noqa: E402

PAGES = ["chain", "timeline", "workloads", "activity", "audit", "audit?action=deny"]


def seed(db: Path, rows: int) -> None:
    now = time.time()
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA synchronous = OFF")
    with connection:
        authority = connection.execute(
            "SELECT id FROM authorities WHERE role = 'intermediate' AND state = 'active'").fetchone()[0]
        seq = connection.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()[0]
        identity = lambda i: f"spiffe://cluster.local/ns/seed-{i % 100}/sa/sa-{i % 10000}"
        connection.executemany(
            "INSERT INTO certificates (serial, spiffe_id, authority_id, not_before, not_after, key_sha256, issued_at, "
            "revoked_at) VALUES (lower(hex(randomblob(16))), ?, ?, ?, ?, lower(hex(randomblob(32))), ?, NULL)",
            ((identity(i), authority, now - 30 - i * 0.01, now + 3600 - i * 0.01 * 3600 / (rows * 0.01 + 1),
              now - i * 0.01) for i in range(rows)))
        connection.executemany(
            "INSERT INTO audit (seq, time_us, actor, action, outcome, code, reason, subject, serial, authority_id, "
            "key_sha256, request_id, client_address, token_hmac, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, "
            "lower(hex(randomblob(16))), ?, lower(hex(randomblob(32))), lower(hex(randomblob(16))), '127.0.0.1', "
            "lower(hex(randomblob(32))), lower(hex(randomblob(32))), lower(hex(randomblob(32))))",
            ((seq + 1 + i, int((now - 3500 + i * 3400 / rows) * 1_000_000), identity(i),
              "deny" if i % 10 == 0 else "issue", "failure" if i % 10 == 0 else "success",
              "token_expired" if i % 10 == 0 else None, identity(i), authority) for i in range(rows)))
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sigil", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--certificates", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / "pki"
    subprocess.run([str(args.sigil), "init", "--data-dir", str(data)], check=True, capture_output=True)
    started = time.monotonic()
    seed(data / "sigil.db", args.certificates)
    seeded_s = time.monotonic() - started
    server = SigilServer(
        args.sigil, data, "--log-level", "warning", "--rate-limit-client", "1000000", "--rate-limit-client-burst",
        "1000000").start()
    try:
        url = server.url.replace("127.0.0.1", "localhost")  # the name on the server's certificate
        login = subprocess.run([str(args.sigil), "admin", "console-login", "--socket", str(data / "admin.sock")],
                               check=True, capture_output=True, text=True).stdout.strip()
        session = requests.Session()
        bundle = str(data / "bundle.pem")  # per request: REQUESTS_CA_BUNDLE would override a session's verify
        answer = session.post(url + "/ui/session", json={"token": login.split("token=")[1]}, timeout=30, verify=bundle)
        answer.raise_for_status()
        pages = {}
        for page in PAGES:
            times, size = [], 0
            for _ in range(args.requests):
                response = session.get(f"{url}/ui/{page}", timeout=60, allow_redirects=False, verify=bundle)
                assert response.status_code == 200, (page, response.status_code)
                times.append(float(response.headers["Server-Timing"].split("dur=")[1]))
                size = len(response.content)
            pages[page] = {"p50_ms": statistics.median(times), "max_ms": max(times), "bytes": size}
    finally:
        server.stop()
    result = {"certificates": args.certificates, "audit_records": args.certificates, "seed_s": round(seeded_s, 1),
              "requests_per_page": args.requests, "pages": pages,
              "worst_p50_ms": max(p["p50_ms"] for p in pages.values())}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
