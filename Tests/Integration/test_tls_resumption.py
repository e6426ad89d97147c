"""TLS session resumption on the HTTPS listener (issue 19), driven by Python's ssl module (OpenSSL) over real
TLS 1.3 against the real binary: a resumed connection is served; a ticket from before the server rotated its
ticket keys (they rotate with the server certificate, here by a break-glass intermediate rotation) is declined
and the client gets a full handshake instead of an error; renewal by mTLS on a resumed session still checks the
client certificate against live state (a revoked certificate is refused on a resumed session as on a new one).
The agent's client offering its session is covered in test_agent_tls_resumption below."""
from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path

import pytest

from sigil_harness import WEB_ID, assert_issued, dev_token, python_csr, wait_until, write_pem_chain
from rotation_support import rig  # noqa: F401 (fixture)
from trust_support import admin


class Answer:
    def __init__(self, status: int, body: bytes, session: ssl.SSLSession | None, reused: bool, peer: bytes):
        self.status, self.body, self.session, self.reused, self.peer = status, body, session, reused, peer

    def json(self) -> dict:
        return json.loads(self.body)


_CONTEXTS: dict[tuple, ssl.SSLContext] = {}


def _context(bundle: Path, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    """One context per trust and client certificate: Python resumes a session only in the context that made it."""
    key = (str(bundle), cert)
    if key not in _CONTEXTS:
        context = ssl.create_default_context(cafile=str(bundle))
        if cert:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        _CONTEXTS[key] = context
    return _CONTEXTS[key]


def https(server, method: str, path: str, *, body: bytes = b"", headers: dict | None = None,
          session: ssl.SSLSession | None = None, cert: tuple[Path, Path] | None = None) -> Answer:
    """One request on a new TLS connection (verified against the server's bundle and name), offering `session`."""
    context = _context(server.bundle, cert)
    host, port = server.url.removeprefix("https://").split(":")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname=host, session=session) as tls:
            tls.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            head, _, payload = data.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            return Answer(status, payload, tls.session, tls.session_reused, tls.getpeercert(binary_form=True))


def issue(server, csr: str, token: str | None = None, **kwargs) -> Answer:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return https(server, "POST", "/v1/certificates", body=json.dumps({"csr": csr}).encode(), headers=headers, **kwargs)


@pytest.fixture
def server(start_server, tmp_path):
    return start_server(tmp_path / "pki")


def test_resumed_connection_is_served(sigil, server):
    first = https(server, "GET", "/v1/bundle.pem")
    assert first.status == 200 and not first.reused
    assert first.session is not None and first.session.has_ticket, "the server issued no session ticket"

    again = https(server, "GET", "/v1/bundle.pem", session=first.session)
    assert again.reused, "the server declined a fresh ticket"
    assert again.status == 200 and again.body == first.body

    # An issuance on a resumed connection: the token is checked as on any other.
    token = dev_token(sigil, server.data_dir, "default", "web")
    issued = issue(server, python_csr()[0], token, session=again.session or first.session)
    assert issued.reused and issued.status == 201, issued.body
    assert issued.json()["spiffe_id"] == WEB_ID
    assert issue(server, python_csr()[0], "not-a-token", session=first.session).status == 401


def test_ticket_from_before_a_key_rotation_gets_a_full_handshake(sigil, server):
    before = https(server, "GET", "/v1/bundle.pem")
    assert https(server, "GET", "/v1/bundle.pem", session=before.session).reused

    # A new active intermediate renews the server certificate, and with it the TLS context and its ticket keys.
    rotated = admin(sigil, server, "rotate", "intermediate", "--reason", "ticket key rotation test")
    assert rotated.returncode == 0, rotated
    wait_until(lambda: https(server, "GET", "/v1/bundle.pem").peer != before.peer, timeout=30,
               what="the server certificate to be renewed after the rotation")

    after = https(server, "GET", "/v1/bundle.pem", session=before.session)
    assert not after.reused, "a ticket sealed before the rotation was still accepted"
    assert after.status == 200, "the declined ticket must fall back to a full handshake, not fail"
    assert after.peer != before.peer
    assert https(server, "GET", "/v1/bundle.pem", session=after.session).reused, "the new ticket keys work"


def test_mtls_renewal_on_a_resumed_session_checks_the_certificate(sigil, server, tmp_path):
    token = dev_token(sigil, server.data_dir, "default", "web")
    csr, key = python_csr()
    body = assert_issued(server.post_csr(csr, token), WEB_ID)
    key_file = tmp_path / "svid.key"
    key_file.write_text(key)
    cert = (write_pem_chain(tmp_path / "svid.pem", body["chain"]), key_file)

    full = issue(server, python_csr()[0], cert=cert)
    assert full.status == 201 and not full.reused, full.body
    resumed = issue(server, python_csr()[0], cert=cert, session=full.session)
    assert resumed.reused, "the mTLS session was not resumed"
    assert resumed.status == 201 and resumed.json()["spiffe_id"] == WEB_ID, resumed.body

    # The certificate of the resumed session is revoked: the route refuses it although TLS resumed.
    revoked = admin(sigil, server, "revoke", body["serial"], "--reason", "stolen after the handshake")
    assert revoked.returncode == 0, revoked
    refused = issue(server, python_csr()[0], cert=cert, session=resumed.session or full.session)
    assert refused.reused, "the test must exercise a resumed session"
    assert refused.status == 401 and json.loads(refused.body)["code"] == "unauthenticated", refused.body
    fresh = issue(server, python_csr()[0], cert=cert)
    assert not fresh.reused and fresh.status == 401


def test_agent_resumes_its_session(rig):
    """The agent's requests after its first offer the session it got: its debug log says which resumed."""
    server = rig.serve()
    agent = rig.agent(server, rig.token(server.data_dir), "--poll-interval", "1s", "--log-level", "debug")

    def answered() -> list[str]:
        return [line for line in agent.stderr().splitlines() if "request answered" in line]

    wait_until(lambda: len(answered()) >= 3, timeout=30, what="three answered requests in the agent's log",
               describe=rig.describe)
    first, *later = answered()[:3]
    assert "sigil.tls_resumed=false" in first, first
    assert all("sigil.tls_resumed=true" in line for line in later), later
    agent.wait_for_first()
