"""Small local HTTPS servers on 127.0.0.1 (JWKS, OIDC discovery, a fake TokenReview API) and their test CA."""
from __future__ import annotations

import json
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .ledger import LEDGER
from .tokens import TokenIssuer

# --- small local HTTPS servers (127.0.0.1 only) -----------------------------------------------------


class TestCA:
    """A throw-away CA made with Python `cryptography` for the local HTTPS fakes (JWKS, OIDC discovery,
    TokenReview): Sigil trusts it through --token-jwks-ca / --token-review-ca. Test-only: its key never
    leaves this process's temporary directory."""

    _shared: "TestCA | None" = None

    def __init__(self):
        import datetime

        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import NameOID

        self.directory = Path(tempfile.mkdtemp(prefix="sigil-test-ca."))
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sigil test fakes CA")])
        ca = (
            x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        import ipaddress

        server = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_file = self.directory / "ca.pem"
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert_file = self.directory / "server.pem"
        self.cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
        self.key_file = self.directory / "server.key"
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        self.key_file.write_bytes(key_pem)
        LEDGER.private_key(key_pem.decode(), "TestCA server key")

    @classmethod
    def shared(cls) -> "TestCA":
        if cls._shared is None:
            cls._shared = TestCA()
        return cls._shared

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


class LocalHTTPServer:
    """A ThreadingHTTPServer on 127.0.0.1 in a thread, over HTTPS with `TestCA.shared()` (`ca_file`) unless
    tls=False. `routes` maps GET paths to (status, JSON-able body, extra headers) and may change while it
    runs; `post` is called for POSTs as post(path, headers, body bytes) -> (status, JSON-able body). Every
    request is recorded in `requests` as (method, path, headers, body)."""

    def __init__(self, post: Callable[[str, dict, bytes], tuple[int, object]] | None = None, tls: bool = True):
        self.routes: dict[str, tuple[int, object, dict]] = {}
        self.post = post
        self.requests: list[tuple[str, str, dict, bytes]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _answer(self, status: int, body: object, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                owner._record("GET", self.path, dict(self.headers), b"")
                with owner._lock:
                    status, body, headers = owner.routes.get(self.path, (404, {"error": "not found"}, {}))
                self._answer(status, body, headers)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner._record("POST", self.path, dict(self.headers), body)
                if owner.post is None:
                    self._answer(405, {"error": "no POST here"})
                else:
                    self._answer(*owner.post(self.path, dict(self.headers), body))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.ca_file = TestCA.shared().ca_file if tls else None
        if tls:
            self.server.socket = TestCA.shared().server_context().wrap_socket(self.server.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def _record(self, method: str, path: str, headers: dict, body: bytes) -> None:
        with self._lock:
            self.requests.append((method, path, headers, body))

    def set_route(self, path: str, body: object, status: int = 200, headers: dict | None = None) -> None:
        with self._lock:
            self.routes[path] = (status, body, headers or {})

    def set_redirect(self, path: str, location: str) -> None:
        self.set_route(path, {"moved": location}, status=302, headers={"Location": location})

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return sum(1 for m, p, _, _ in self.requests if m == method and p == path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


JWKS_PATH = "/openid/v1/jwks"


def serve_oidc_issuer(issuer_server: LocalHTTPServer, token_issuer: TokenIssuer) -> None:
    """Publishes the OIDC discovery document and the JWKS, as a Kubernetes API server does."""
    issuer_server.set_route(
        "/.well-known/openid-configuration",
        {
            "issuer": token_issuer.issuer,
            "jwks_uri": issuer_server.url + JWKS_PATH,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        },
    )
    issuer_server.set_route(JWKS_PATH, token_issuer.jwks())
