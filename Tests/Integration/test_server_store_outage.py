"""Fail closed when the store is gone (issue 4): the module runs its own throw-away PostgreSQL cluster
(so stopping it disturbs no other test), stops it under a running `sigil serve --store postgres://…`,
and checks that issuance answers 503 audit_unavailable with no certificate, /readyz turns unready,
and service resumes once PostgreSQL is back, with an intact audit chain.

The outage is run once by a module fixture that records what it saw; the tests judge the record."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from sigil_harness import (
    PostgresCluster,
    WEB_ID,
    assert_issued,
    assert_problem,
    audit_records,
    dev_token,
    psql,
    python_csr,
    wait_until,
    with_database,
)

# A client waits at most this long for an answer during the outage (longer than any sane agent would).
OUTAGE_TIMEOUT = 150


@dataclass
class Timed:
    response: requests.Response | None
    seconds: float
    error: Exception | None = None


@dataclass
class Outage:
    server: object
    store: str
    tokens: list[str]
    delivered: set[str] = field(default_factory=set)
    during: dict[str, Timed] = field(default_factory=dict)
    recovered: dict | None = None
    recovered_error: Exception | None = None
    ready_again: bool = False
    exit_status: int | None = None
    verify: object = None  # Result of `sigil audit verify` after the server stopped
    records: list[dict] = field(default_factory=list)


def timed(call) -> Timed:
    started = time.monotonic()
    try:
        return Timed(call(), time.monotonic() - started)
    except requests.RequestException as error:
        return Timed(None, time.monotonic() - started, error)


@pytest.fixture(scope="module")
def outage(sigil, module_servers, tmp_path_factory) -> Outage:
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql (Debian package postgresql)")
    cluster = PostgresCluster()
    try:
        cluster.start()
        result = psql(cluster.server_url, "CREATE DATABASE sigil")
        assert result.returncode == 0, result
        store = with_database(cluster.server_url, "sigil", sslmode=True)
        server = module_servers(tmp_path_factory.mktemp("outage") / "pki", "--store", store)
        tokens = [dev_token(sigil, server.data_dir, "default", "web", "--store", store) for _ in range(2)]
        run = Outage(server, store, tokens)
        csr = python_csr()[0]
        run.delivered.add(assert_issued(server.post_csr(csr, tokens[0]), WEB_ID)["serial"])
        assert server.get("/readyz").status_code == 200

        cluster.stop()
        post = lambda token: server.post_csr(csr, token, allow_5xx=True, timeout=OUTAGE_TIMEOUT)  # noqa: E731
        # The first issuance and the first readiness probe after the outage start together: both are timed.
        with ThreadPoolExecutor(max_workers=2) as pool:
            first = pool.submit(timed, lambda: post(tokens[0]))
            probe = pool.submit(timed, lambda: server.get("/readyz", allow_5xx=True, timeout=OUTAGE_TIMEOUT))
            run.during["cached token"], run.during["readyz"] = first.result(), probe.result()
        run.during["fresh token"] = timed(lambda: post(tokens[1]))
        run.during["no token"] = timed(lambda: post(None))
        run.during["healthz"] = timed(lambda: server.get("/healthz", timeout=OUTAGE_TIMEOUT))

        cluster.start()

        def issued():
            response = server.post_csr(csr, tokens[1], allow_5xx=True)
            return response.json() if response.status_code == 201 else None

        try:
            run.recovered = wait_until(issued, timeout=90, interval=0.5, what="issuance after PostgreSQL came back")
            run.delivered.add(run.recovered["serial"])
            run.ready_again = bool(
                wait_until(lambda: server.get("/readyz", allow_5xx=True).status_code == 200, timeout=30, what="/readyz")
            )
        except AssertionError as error:
            run.recovered_error = error
        run.exit_status = server.stop()
        store_args = ("--data-dir", server.data_dir, "--store", store)
        run.verify = sigil.run("audit", "verify", *store_args)
        run.records = audit_records(sigil, *store_args)
        return run
    finally:
        cluster.destroy()


def test_issuance_fails_closed_while_the_store_is_down(outage):
    for name in ("cached token", "fresh token"):
        seen = outage.during[name]
        assert seen.response is not None, f"{name}: no answer within {OUTAGE_TIMEOUT}s: {seen.error}"
        assert_problem(seen.response, 503, "audit_unavailable", forbidden=tuple(outage.tokens))
        assert "chain" not in seen.response.json()


def test_refusals_are_not_answered_unaudited(outage):
    """A request that would be refused cannot be audited either: 503, not a silent 401."""
    seen = outage.during["no token"]
    assert seen.response is not None, seen.error
    assert_problem(seen.response, 503, "audit_unavailable")


def test_readyz_turns_unready_and_healthz_stays_live(outage):
    ready, health = outage.during["readyz"], outage.during["healthz"]
    assert ready.response is not None, ready.error
    assert ready.response.status_code == 503, ready.response.text
    assert health.response is not None and health.response.status_code == 200


def test_service_resumes_when_the_store_is_back(outage):
    assert outage.recovered_error is None, f"{outage.recovered_error}\n{outage.server.describe()}"
    assert outage.recovered["spiffe_id"] == WEB_ID
    assert outage.ready_again


def test_audit_chain_is_intact_after_the_outage(outage):
    assert outage.exit_status == 0, outage.server.describe()
    assert outage.verify.returncode == 0, outage.verify
    recorded = {r["serial"] for r in outage.records if r["action"] == "issue"}
    assert recorded == outage.delivered, f"issued serials in the audit {recorded} != delivered {outage.delivered}"
    assert [r["action"] for r in outage.records][-1] == "stop"


def test_store_outage_is_answered_promptly(outage):
    slow = {name: round(outage.during[name].seconds, 1) for name in ("cached token", "readyz") if outage.during[name].seconds >= 10}
    assert not slow, f"seconds to the first answer after PostgreSQL stopped: {slow}"
