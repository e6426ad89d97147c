"""Rate limits and connection limits of `sigil serve`: 429 rate_limited with Retry-After per client address and
per identity, refusals audited once a minute per key (not once per request), limits that can be turned off,
bad limit settings refused at start, and connections closed when a request does not arrive in time."""
from __future__ import annotations

import socket
import ssl
import time

import pytest
import requests

from sigil_harness import WEB_ID, assert_issued, assert_problem, audit_records, dev_token, python_csr, token_parts


def rate_limited(sigil, data_dir) -> list[dict]:
    return [r for r in audit_records(sigil, "--data-dir", data_dir) if r.get("code") == "rate_limited"]


def test_client_over_its_burst_gets_429_with_retry_after_and_one_audit_record(sigil, start_server, tmp_path):
    # 0.01/s: no token refills during the test, so the count of successes is exact.
    server = start_server(tmp_path / "pki", "--rate-limit-client", "0.01", "--rate-limit-client-burst", "3")
    token = dev_token(sigil, server.data_dir)
    csr, _ = python_csr()
    for _ in range(3):
        assert_issued(server.post_csr(csr, token), WEB_ID)
    refusals = [server.post_csr(csr, token) for _ in range(5)]
    for response in refusals:
        assert_problem(response, 429, "rate_limited", forbidden=token_parts(token))
        # One token refills in 100 s at 0.01/s.
        assert 1 <= int(response.headers["Retry-After"]) <= 100, response.headers
    # Unauthenticated requests count against the client too: the limit comes before any parsing.
    assert_problem(server.request("POST", "/v1/certificates", data="{}"), 429, "rate_limited")
    # So do the read endpoints: every route is limited per client (a CRL or readiness probe must not be free).
    for path in ("/v1/bundle", "/v1/crl", "/readyz", "/metrics"):
        assert_problem(server.get(path), 429, "rate_limited")
    # Another client address is another bucket.
    metrics = server.metrics(source="127.0.0.2")
    assert metrics[("sigil_certificates_denied_total", (("reason", "rate_limited"),))] == 10
    records = rate_limited(sigil, server.data_dir)
    assert len(records) == 1, records
    assert records[0]["client_address"] == "127.0.0.1"


def test_identity_limit_is_per_identity(sigil, start_server, tmp_path):
    server = start_server(
        tmp_path / "pki", "--rate-limit-identity", "0.01", "--rate-limit-identity-burst", "2", "--rate-limit-client", "0"
    )
    web = dev_token(sigil, server.data_dir, "default", "web")
    other = dev_token(sigil, server.data_dir, "default", "other")
    web_csr, _ = python_csr()
    for _ in range(2):
        assert_issued(server.post_csr(web_csr, web), WEB_ID)
    response = assert_problem(server.post_csr(web_csr, web), 429, "rate_limited", forbidden=token_parts(web))
    assert response["code"] == "rate_limited"
    other_id = WEB_ID.replace("/sa/web", "/sa/other")
    assert_issued(server.post_csr(python_csr(spiffe_id=other_id)[0], other), other_id)
    [record] = rate_limited(sigil, server.data_dir)
    assert record["actor"] == WEB_ID


def test_limits_can_be_turned_off(sigil, start_server, tmp_path):
    server = start_server(tmp_path / "pki", "--rate-limit-client", "0", "--rate-limit-identity", "0")
    token = dev_token(sigil, server.data_dir)
    csr, _ = python_csr()
    with requests.Session() as session:
        for _ in range(30):
            assert server.post_csr(csr, token, session=session).status_code == 201


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rate-limit-client", "-1"], "--rate-limit-client"),
        (["--rate-limit-client", "lots"], "--rate-limit-client"),
        (["--rate-limit-identity", "5", "--rate-limit-identity-burst", "0"], "burst"),
        (["--request-timeout", "0s"], "--request-timeout"),
        (["--idle-timeout", "soon"], "--idle-timeout"),
    ],
    ids=["negative-rate", "not-a-number", "zero-burst", "zero-timeout", "bad-duration"],
)
def test_bad_limit_settings_are_refused_at_start(sigil, tmp_path, args, message):
    result = sigil.run("serve", "--data-dir", tmp_path / "pki", "--listen", "127.0.0.1:0", *args, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr, result


def tls_connection(server) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(server.bundle))
    host, port = server.url.removeprefix("https://").rsplit(":", 1)
    return context.wrap_socket(socket.create_connection((host, int(port)), timeout=30), server_hostname=host)


def closed_after(connection: ssl.SSLSocket) -> float:
    """Seconds until the server closes the connection (reads until EOF, discarding any response)."""
    started = time.monotonic()
    try:
        while connection.recv(4096):
            pass
    except (ConnectionError, ssl.SSLError):
        pass
    return time.monotonic() - started


def test_a_connection_that_sends_nothing_or_half_a_request_is_closed(start_server, tmp_path):
    server = start_server(tmp_path / "pki", "--request-timeout", "1s")
    silent = tls_connection(server)
    half_head = tls_connection(server)
    half_head.sendall(b"POST /v1/certificates HTTP/1.1\r\nHost: localhost\r\n")
    half_body = tls_connection(server)
    half_body.sendall(
        b"POST /v1/certificates HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"
    )
    for connection in (silent, half_head, half_body):
        with connection:
            assert closed_after(connection) < 10
    # A client that sends its request in time is unaffected.
    assert server.get("/healthz").status_code == 200
