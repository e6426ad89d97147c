"""Graceful shutdown: SIGTERM (and SIGINT) stop `sigil serve` with exit status 0 within a few seconds,
and the stop is the last record of the audit chain."""
from __future__ import annotations

import signal
import time

import pytest
import requests

from sigil_harness import WEB_ID, assert_issued, audit_records, dev_token, python_csr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_server_cleanly_and_is_audited(sigil, start_server, tmp_path, signum):
    server = start_server(tmp_path / "pki")
    assert_issued(server.post_csr(python_csr()[0], dev_token(sigil, server.data_dir)), WEB_ID)

    started = time.monotonic()
    server.process.send_signal(signum)
    status = server.process.wait(timeout=30)
    elapsed = time.monotonic() - started
    server.stop()  # joins the output readers
    assert status == 0, server.describe()
    assert elapsed < 5, f"shutdown took {elapsed:.1f}s"

    records = audit_records(sigil, "--data-dir", server.data_dir)
    assert records[-1]["action"] == "stop" and records[-1]["outcome"] == "success", records[-1]
    sigil.ok("audit", "verify", "--data-dir", server.data_dir)
    # The port is closed: nothing answers any more.
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/healthz", verify=str(server.bundle), timeout=5)


def test_shutdown_with_an_idle_keep_alive_client(sigil, start_server, tmp_path):
    """A client that keeps its connection open does not hold the server up for long."""
    server = start_server(tmp_path / "pki")
    with requests.Session() as session:
        assert server.get("/healthz", session=session).status_code == 200
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        status = server.process.wait(timeout=30)
        elapsed = time.monotonic() - started
    server.stop()
    assert status == 0, server.describe()
    assert elapsed < 10, f"shutdown with an idle client took {elapsed:.1f}s"
    assert audit_records(sigil, "--data-dir", server.data_dir)[-1]["action"] == "stop"
