"""Helpers shared by the integration tests (fixtures that use them live in conftest.py)."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECK_SVID = Path(__file__).resolve().parent / "conformance" / "check-svid.py"

TRUST_DOMAIN = "cluster.local"
WEB_ID = f"spiffe://{TRUST_DOMAIN}/ns/default/sa/web"
OTHER_ID = f"spiffe://{TRUST_DOMAIN}/ns/default/sa/other"

# `openssl req -newkey` arguments per key type of the acceptance list (and one that must be refused).
OPENSSL_NEWKEY = {
    "ec-p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "ec-p384": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
    "rsa-2048": ["-newkey", "rsa:2048"],
    "ed25519": ["-newkey", "ed25519"],
    "rsa-1024": ["-newkey", "rsa:1024"],
}
LEAF_KEY_TYPES = ["ec-p256", "ec-p384", "rsa-2048", "ed25519"]

# One line on stderr: `Error: <stable_code>: <message>`.
ERROR_LINE = re.compile(r"^Error: (?P<code>[a-z][a-z0-9_]*): \S")
CRASH_MARKERS = ("Traceback", "Fatal error", "Stack dump", "Backtrace", "💣", "Current stack trace", "SIGSEGV")


@dataclass
class Result:
    """A finished command, printable in full for assertion messages."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.args)}\n"
            f"exit {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}"
            f"--- stderr ---\n{self.stderr}"
        )


def stop_process(process: subprocess.Popen, timeout: float = 15) -> int:
    """SIGTERM, wait up to `timeout` s, then SIGKILL. Returns the exit status (negative: killed by a signal)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
    return process.returncode


def run(args: list[str], *, timeout: float = 60, umask: int | None = None, cwd: Path | None = None) -> Result:
    """Runs a command to completion and captures its output as text. A `sigil` command's output, and
    the files it names, go to the secrets ledger."""
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    completed = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    if _is_sigil(args):
        LEDGER.sigil_command([str(a) for a in args], completed.stdout, completed.stderr, cwd)
    return Result([str(a) for a in args], completed.returncode, completed.stdout, completed.stderr)


class Sigil:
    """Runs the real `sigil` binary."""

    def __init__(self, binary: Path):
        self.binary = binary

    def run(self, *args, **kwargs) -> Result:
        return run([self.binary, *args], **kwargs)

    def ok(self, *args, **kwargs) -> Result:
        """Runs sigil and fails the test, showing everything it printed, unless it exits 0."""
        result = self.run(*args, **kwargs)
        assert result.returncode == 0, f"sigil failed:\n{result}"
        return result


def assert_one_line_failure(result: Result) -> str:
    """Asserts what DESIGN.md wants of every failing command: non-zero exit, nothing on stdout,
    exactly one line on stderr starting `Error: `, and no crash or stack trace. Returns the line."""
    assert result.returncode != 0, f"expected a failure:\n{result}"
    assert result.stdout == "", f"a failing command printed on stdout:\n{result}"
    for marker in CRASH_MARKERS:
        assert marker not in result.stderr, f"crash marker {marker!r} on stderr:\n{result}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}:\n{result}"
    assert lines[0].startswith("Error: "), f"stderr does not start with 'Error: ':\n{result}"
    return lines[0]


def assert_clean_failure(result: Result, code: str | set[str] | None = None) -> str:
    """assert_one_line_failure, and the line is `Error: <stable_code>: <message>` with the code
    expected (any code if None). Returns the code."""
    line = assert_one_line_failure(result)
    match = ERROR_LINE.match(line)
    assert match, f"stderr is not 'Error: <code>: <message>':\n{result}"
    if code is not None:
        wanted = {code} if isinstance(code, str) else code
        assert match["code"] in wanted, f"expected code {sorted(wanted)}, got {match['code']}:\n{result}"
    return match["code"]


@dataclass
class CSR:
    path: Path
    key: Path


def make_csr(
    directory: Path,
    name: str,
    key_type: str = "ec-p256",
    sans: list[str] | None = None,
    extensions: list[str] | None = None,
    subject: str = "/O=sigil-test",
) -> CSR:
    """Makes a key and a PEM CSR with the `openssl` command, as a workload would.
    sans: subjectAltName entries like `URI:spiffe://…`, `IP:10.0.0.1`; default: the web identity."""
    sans = [f"URI:{WEB_ID}"] if sans is None else sans
    csr, key = directory / f"{name}.csr", directory / f"{name}.key"
    args = ["openssl", "req", "-new", *OPENSSL_NEWKEY[key_type], "-nodes", "-keyout", key, "-subj", subject]
    if sans:
        args += ["-addext", "subjectAltName=" + ",".join(sans)]
    for extension in extensions or []:
        args += ["-addext", extension]
    result = run(args + ["-out", csr])
    assert result.returncode == 0, f"openssl could not make the CSR:\n{result}"
    LEDGER.private_key(key.read_text(), f"make_csr {key}")
    return CSR(csr, key)


def with_corrupted_signature(csr: Path, out_pem: Path, out_der: Path) -> None:
    """Writes the CSR with one bit of its signature flipped, as PEM and as DER. The request still
    parses; only the proof of possession is wrong."""
    request = x509.load_pem_x509_csr(csr.read_bytes())
    der = bytearray(request.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the signature BIT STRING is the last field of a PKCS#10 request
    out_der.write_bytes(bytes(der))
    body = "\n".join(textwrap.wrap(base64.b64encode(bytes(der)).decode(), 64))
    out_pem.write_text(f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n")
    corrupted = x509.load_der_x509_csr(bytes(der))
    assert not corrupted.is_signature_valid, "flipping a signature bit left a valid signature"


def load_certs(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def sha256_hex(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def make_upstream_ca(directory: Path, days: int = 30, ca: bool = True) -> tuple[Path, Path]:
    """An upstream CA made with `openssl` (the "plugged-in CA" case): self-signed, cA=true,
    keyUsage critical keyCertSign+cRLSign, SKI. With ca=False: an end-entity certificate instead."""
    cert, key = directory / "upstream.pem", directory / "upstream.key"
    args = [
        "openssl", "req", "-x509", "-new", *OPENSSL_NEWKEY["ec-p256"], "-nodes",
        "-keyout", key, "-out", cert, "-days", str(days),
        "-subj", "/O=Upstream Test CA/CN=Upstream Root",
        "-addext", "subjectKeyIdentifier=hash",
    ]
    if ca:
        args += ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    else:
        args += ["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "keyUsage=critical,digitalSignature"]
    result = run(args)
    assert result.returncode == 0, f"openssl could not make the upstream CA:\n{result}"
    LEDGER.private_key(key.read_text(), f"make_upstream_ca {key}")
    return cert, key


# --- `sigil serve` over HTTPS -----------------------------------------------------------------------
# Helpers for the server tests (test_server_*.py, test_audit_*.py): a `sigil serve` process, problem+json
# assertions, tokens minted with PyJWT, small local HTTP servers (JWKS / OIDC discovery, a fake
# TokenReview API) and PostgreSQL databases and clusters. Nothing here sleeps for timing: waits are
# condition variables or bounded polls with a deadline.

PROBLEM_JSON = "application/problem+json"
LISTENING = re.compile(r"^sigil listening on (?P<url>https://127\.0\.0\.1:\d+)$")


def wait_until(condition: Callable[[], object], timeout: float, interval: float = 0.1, what: str = "condition"):
    """Polls `condition` until it returns something truthy (returned) or `timeout` seconds pass
    (AssertionError). Between polls it waits on an Event, never longer than `interval`."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = condition()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        pause.wait(min(interval, remaining))


class _LineReader:
    """Collects the lines of one pipe in a thread; waiters are woken by a condition variable."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self.closed = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._condition:
                self.lines.append(line.rstrip("\n"))
                self._condition.notify_all()
        with self._condition:
            self.closed = True
            self._condition.notify_all()

    def wait_for(self, predicate: Callable[[str], object], timeout: float):
        """The first value predicate(line) that is truthy, or None when the pipe closed or time ran out."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._condition:
            while True:
                for line in self.lines[seen:]:
                    value = predicate(line)
                    if value:
                        return value
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if self.closed or remaining <= 0:
                    return None
                self._condition.wait(remaining)

    def text(self) -> str:
        with self._condition:
            return "".join(line + "\n" for line in self.lines)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class SigilServer:
    """One `sigil serve --data-dir D --listen 127.0.0.1:0 …` process. start() returns once it printed
    its `sigil listening on https://…` line; stop() sends SIGTERM, waits, and SIGKILLs as a last resort.
    Every request goes over real HTTPS, verified against D/bundle.pem."""

    def __init__(self, binary: Path, data_dir: Path, *args, env: dict[str, str] | None = None):
        self.binary = binary
        self.data_dir = Path(data_dir)
        self.args = [str(a) for a in args]
        self.env = env
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.returncode: int | None = None
        self._stdout: _LineReader | None = None
        self._stderr: _LineReader | None = None
        self._stores: list[str] = []

    @property
    def command(self) -> list[str]:
        return [str(self.binary), "serve", "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0", *self.args]

    @property
    def bundle(self) -> Path:
        return self.data_dir / "bundle.pem"

    def start(self, timeout: float = 60) -> "SigilServer":
        env = dict(os.environ)
        for key in [k for k in env if k.startswith("SIGIL_")]:
            del env[key]  # only the flags of the test configure the server
        env.update(self.env or {})
        self.process = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self._stdout, self._stderr = _LineReader(self.process.stdout), _LineReader(self.process.stderr)
        label = _shorten("$ " + " ".join(["sigil", *self.command[1:]]))
        LEDGER.output(f"{label} (stdout)", self._stdout.text)  # read at the scan: everything it ever printed
        LEDGER.output(f"{label} (stderr)", self._stderr.text)
        self._stores = LEDGER.sigil_files(self.command[1:], label)
        match = self._stdout.wait_for(LISTENING.match, timeout)
        if not match:
            self.stop()
            raise AssertionError(f"sigil serve did not print its listening line within {timeout}s:\n{self.describe()}")
        self.url = match["url"]
        return self

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, wait up to `timeout` s, then SIGKILL. Returns the exit status (negative: killed)."""
        if self.process is None:
            return 0
        stop_process(self.process, timeout)
        for reader in (self._stdout, self._stderr):
            reader.join(10)
        self.returncode = self.process.returncode
        LEDGER.data_dir(self.data_dir, "sigil serve")  # made by the server, if it started on an empty one
        for store in self._stores:  # its database is dropped at teardown, before the scan
            LEDGER.snapshot_postgres_audit(store, "sigil serve")
        self._stores = []
        return self.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def stdout(self) -> str:
        return self._stdout.text() if self._stdout else ""

    @property
    def stderr(self) -> str:
        return self._stderr.text() if self._stderr else ""

    def wait_for_stdout(self, predicate: Callable[[str], object], timeout: float):
        return self._stdout.wait_for(predicate, timeout)

    def describe(self) -> str:
        status = self.process.poll() if self.process else None
        return (
            f"$ {' '.join(self.command)}\n"
            f"{'running' if status is None else f'exit {status}'}\n"
            f"--- stdout ---\n{self.stdout[-4000:]}--- stderr ---\n{self.stderr[-6000:]}"
        )

    # HTTP

    def request(self, method: str, path: str, *, session: requests.Session | None = None, **kwargs) -> requests.Response:
        """One HTTPS request to the server, checked against bundle.pem; a fresh connection unless a
        session is given. Fails the test on any 5xx the caller did not ask for (allow_5xx=True)."""
        allow_5xx = kwargs.pop("allow_5xx", False)
        for name, value in (kwargs.get("headers") or {}).items():
            if name.lower() == "authorization" and isinstance(value, str) and value[:7].lower() == "bearer ":
                LEDGER.token(value[7:], "a bearer token sent to sigil serve")
        kwargs.setdefault("timeout", 30)
        kwargs.setdefault("verify", str(self.bundle))
        response = (session or requests).request(method, self.url + path, **kwargs)
        if session is None and getattr(response.raw, "_pool", None) is not None:
            # The body is read. Close the throw-away pool's socket now, not when the Response is collected
            # (a failed test keeps it alive in its traceback): an open idle TLS connection holds up the
            # server's graceful shutdown by NIOSSL's 5 s close_notify wait.
            response.raw._pool.close()
        if not allow_5xx:
            assert response.status_code < 500, f"server error:\n{describe_response(response)}\n{self.describe()}"
        return response

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post_csr(
        self, csr_pem: str | None, token: str | None = None, ttl_seconds: int | None = None, **kwargs
    ) -> requests.Response:
        """POST /v1/certificates with {"csr": …, "ttl_seconds"?: …} and a bearer token (if any)."""
        body: dict = {"csr": csr_pem}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.request("POST", "/v1/certificates", data=json.dumps(body), headers=headers, **kwargs)

    def get_from(self, source: str, path: str) -> tuple[int, str]:
        """GET `path` over a connection from the loopback address `source` (another client to the rate limits,
        which key on the client address). Returns (status, body)."""
        import http.client

        context = ssl.create_default_context(cafile=str(self.bundle))
        parts = urlsplit(self.url)
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, source_address=(source, 0), context=context, timeout=30)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def metrics(self, source: str | None = None) -> dict[tuple[str, tuple], float]:
        """GET /metrics parsed by prometheus_client: {(sample name, sorted labels): value}; from the loopback
        address `source` if given (a client the rate limits have not seen)."""
        from prometheus_client.parser import text_string_to_metric_families

        if source is None:
            response = self.get("/metrics")
            assert response.status_code == 200, describe_response(response)
            text = response.text
        else:
            status, text = self.get_from(source, "/metrics")
            assert status == 200, text
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples


def describe_response(response: requests.Response) -> str:
    request = response.request
    headers = "".join(f"{k}: {v}\n" for k, v in response.headers.items())
    return f"{request.method} {request.url} -> {response.status_code}\n{headers}\n{response.text[:3000]}"


def assert_problem(response: requests.Response, status: int, code: str, forbidden: tuple[str, ...] = ()) -> dict:
    """Asserts an RFC 9457 problem response with Sigil's stable code, and that none of `forbidden`
    (tokens, their parts) appears anywhere in it. Returns the problem document."""
    described = describe_response(response)
    assert response.status_code == status, f"expected HTTP {status} {code}:\n{described}"
    assert response.headers.get("Content-Type", "").split(";")[0].strip() == PROBLEM_JSON, described
    problem = response.json()
    assert problem.get("code") == code, f"expected code {code}:\n{described}"
    assert problem.get("status") == status, described
    for field in ("type", "title", "detail", "request_id"):
        assert isinstance(problem.get(field), str) and problem[field], f"problem without {field}:\n{described}"
    assert "chain" not in problem and "BEGIN CERTIFICATE" not in response.text, described
    raw = response.text + "".join(f"{k}: {v}\n" for k, v in response.headers.items())
    for secret in forbidden:
        assert secret not in raw, f"the response echoes a secret ({secret[:12]}…):\n{described}"
    return problem


def assert_issued(response: requests.Response, spiffe_id: str) -> dict:
    """Asserts a 201 issuance response for `spiffe_id` and returns its JSON body."""
    described = describe_response(response)
    assert response.status_code == 201, f"expected 201:\n{described}"
    body = response.json()
    assert body["spiffe_id"] == spiffe_id, described
    for field in ("serial", "not_before", "not_after", "renew_after"):
        assert isinstance(body.get(field), str) and body[field], described
    assert len(body["chain"]) >= 2 and len(body["trust_bundle"]) >= 1, described
    leaf = x509.load_pem_x509_certificate(body["chain"][0].encode())
    assert format(leaf.serial_number, "x") == body["serial"].lower().lstrip("0"), described
    uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    assert uris == [spiffe_id], described
    return body


def token_parts(token: str) -> tuple[str, ...]:
    """The token, its payload and its signature (the header is public): none of them may ever appear in
    a response, a log line, an audit record or an export."""
    return (token, *[part for part in token.split(".")[1:] if len(part) >= 16])


def write_pem_chain(path: Path, pems: list[str]) -> Path:
    path.write_text("".join(p if p.endswith("\n") else p + "\n" for p in pems))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- tokens minted by a third-party library (PyJWT) -------------------------------------------------


class TokenIssuer:
    """A Kubernetes-like service-account token issuer: RSA/EC signing keys with kids, a JWKS of their
    public halves, and projected-token-shaped JWTs signed by PyJWT."""

    def __init__(self, issuer: str):
        self.issuer = issuer
        self.keys: dict[str, tuple[object, str]] = {}  # kid -> (private key, default alg)
        self.published: list[str] = []  # kids in the served JWKS

    def add_key(self, kid: str, kind: str, publish: bool = True) -> str:
        if kind[:2] in ("RS", "PS"):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif kind in ("ES256", "ES384"):
            key = ec.generate_private_key(ec.SECP256R1() if kind == "ES256" else ec.SECP384R1())
        else:
            raise ValueError(kind)
        self.keys[kid] = (key, kind)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        LEDGER.private_key(pem.decode(), f"TokenIssuer signing key {kid}")
        if publish:
            self.published.append(kid)
        return kid

    def jwks(self) -> dict:
        keys = []
        for kid in self.published:
            key, alg = self.keys[kid]
            algorithm = jwt.algorithms.ECAlgorithm if alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
            jwk = algorithm.to_jwk(key.public_key(), as_dict=True)
            jwk.update(kid=kid, use="sig", alg=alg)
            keys.append(jwk)
        return {"keys": keys}

    def claims(
        self, namespace: str = "default", service_account: str = "web", audience=("sigil",), ttl: int = 600, now: int | None = None
    ) -> dict:
        now = int(time.time()) if now is None else now
        return {
            "iss": self.issuer,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "aud": list(audience),
            "exp": now + ttl,
            "iat": now,
            "nbf": now,
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": service_account, "uid": str(uuid.uuid4())},
                "pod": {"name": f"{service_account}-{secrets.token_hex(3)}", "uid": str(uuid.uuid4())},
            },
        }

    def sign(self, claims: dict, kid: str, alg: str | None = None, headers: dict | None = None) -> str:
        key, default_alg = self.keys[kid]
        token = jwt.encode(claims, key, algorithm=alg or default_alg, headers={"kid": kid, **(headers or {})})
        LEDGER.token(token, f"TokenIssuer token ({kid})")
        return token

    def token(self, kid: str, **claim_args) -> str:
        return self.sign(self.claims(**claim_args), kid)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(header: dict, claims: dict) -> str:
    """header.payload (base64url JSON), to sign by hand for the attacks PyJWT refuses to make."""
    return b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())


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


# --- PostgreSQL -------------------------------------------------------------------------------------

POSTGRES_ENV = "SIGIL_TEST_POSTGRES_URL"


def postgres_bindir() -> Path:
    dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not dirs or not (dirs[-1] / "initdb").exists():
        raise AssertionError("no PostgreSQL server under /usr/lib/postgresql (Debian package postgresql)")
    return dirs[-1]


def with_database(url: str, database: str, sslmode: bool = False) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, "sslmode=disable" if sslmode else "", ""))


class PostgresDatabase:
    """A fresh database on an existing server (created from `server_url`, dropped by drop())."""

    def __init__(self, server_url: str, name: str | None = None, template: str | None = None):
        self.server_url = server_url
        self.name = name or f"sigil_it_{secrets.token_hex(6)}"
        create = f'CREATE DATABASE "{self.name}"' + (f' TEMPLATE "{template}"' if template else "")
        result = psql(server_url, create)
        assert result.returncode == 0, f"could not create database {self.name}:\n{result}"

    @property
    def url(self) -> str:
        """For sigil: postgres://user@host:port/NAME?sslmode=disable."""
        return with_database(self.server_url, self.name, sslmode=True)

    @property
    def psql_url(self) -> str:
        return with_database(self.server_url, self.name)

    def psql(self, sql: str) -> Result:
        return psql(self.psql_url, sql)

    def execute(self, sql: str) -> str:
        """Runs SQL with psql (unaligned, tuples only) and returns its stdout; fails the test on error."""
        result = self.psql(sql)
        assert result.returncode == 0, f"psql failed:\n{result}"
        return result.stdout

    def query(self, sql: str) -> list[list[str]]:
        result = self.psql(sql)
        assert result.returncode == 0, f"psql failed:\n{result}"
        return [line.split("|") for line in result.stdout.splitlines() if line]

    def clone(self) -> "PostgresDatabase":
        """A copy (CREATE DATABASE … TEMPLATE this); nobody may be connected to this one."""
        return PostgresDatabase(self.server_url, template=self.name)

    def drop(self) -> None:
        psql(self.server_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def psql(url: str, sql: str, timeout: float = 60) -> Result:
    return run(["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-A", "-t", "-c", sql], timeout=timeout)


class PostgresCluster:
    """A throw-away PostgreSQL cluster of the test's own (initdb into a temp dir owned by `postgres`
    when running as root, 127.0.0.1 on a free port, trust auth), so stopping it disturbs nobody."""

    def __init__(self):
        self.bindir = postgres_bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="sigil-it-pg."))
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.port = 0
        result = self._pg(
            "initdb", "-D", self.dir / "data", "-U", "sigil", "--auth=trust", "--no-locale", "--encoding=UTF8", "--no-sync"
        )
        assert result.returncode == 0, f"initdb failed:\n{result}"

    def _pg(self, tool: str, *args, timeout: float = 120) -> Result:
        return run([*self.run_as, self.bindir / tool, *args], timeout=timeout, cwd=self.dir)

    @property
    def server_url(self) -> str:
        return f"postgres://sigil@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """pg_ctl start -w (waits until the server accepts connections); the same port on restarts."""
        attempts = 1 if self.port else 5
        for _ in range(attempts):
            port = self.port or free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={self.dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            result = self._pg("pg_ctl", "-D", self.dir / "data", "-l", self.dir / "server.log", "-w", "-t", "60", "-o", options, "start")
            if result.returncode == 0:
                self.port = port
                return
        log = (self.dir / "server.log").read_text(errors="replace") if (self.dir / "server.log").exists() else ""
        raise AssertionError(f"PostgreSQL did not start:\n{result}\n{log[-3000:]}")

    def stop(self, mode: str = "fast") -> None:
        result = self._pg("pg_ctl", "-D", self.dir / "data", "-m", mode, "-w", "-t", "60", "stop")
        assert result.returncode == 0, f"pg_ctl stop failed:\n{result}"

    def destroy(self) -> None:
        if (self.dir / "data" / "postmaster.pid").exists():
            if self._pg("pg_ctl", "-D", self.dir / "data", "-m", "fast", "-w", "-t", "30", "stop").returncode != 0:
                self._pg("pg_ctl", "-D", self.dir / "data", "-m", "immediate", "-w", "-t", "30", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


# --- CSRs made in-process (python `cryptography`), for tests that need many -------------------------


def python_csr(
    sans: list[x509.GeneralName] | None = None, key_type: str = "ec-p256", spiffe_id: str | None = WEB_ID
) -> tuple[str, str]:
    """(CSR PEM, PKCS#8 key PEM). SANs: the URI SAN `spiffe_id` (if any) plus `sans`."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    if key_type == "ec-p256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif key_type.startswith("rsa-"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    else:
        raise ValueError(key_type)
    names = ([x509.UniformResourceIdentifier(spiffe_id)] if spiffe_id else []) + list(sans or [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigil-test")])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    LEDGER.private_key(key_pem, "python_csr")
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key_pem


# --- audit --------------------------------------------------------------------------------------------

AUDIT_BROKEN = re.compile(r"^Error: audit_chain_broken: record (?P<seq>\d+)\b")


def dev_token(sigil: "Sigil", data_dir: Path, namespace: str = "default", service_account: str = "web", *extra) -> str:
    return sigil.ok(
        "dev", "token", "--data-dir", data_dir, "--namespace", namespace, "--service-account", service_account, *extra
    ).stdout.strip()


@dataclass
class AuditScenario:
    """What a run of issuances and refusals should leave in the audit chain."""

    issued: dict[str, dict]  # serial -> issuance response body
    denied: dict[str, str]  # request_id -> code
    tokens: list[str]  # every bearer token sent (none may appear in any record, log or export)
    renewed: list[str]  # serials issued by mTLS renewal


def issue_and_deny(sigil: "Sigil", server: SigilServer, tmp_path: Path, store: tuple[str, ...] = ()) -> AuditScenario:
    """Against a local-mode server: two issuances by token, one renewal by mTLS, and six refusals with
    different codes."""
    web = dev_token(sigil, server.data_dir, "default", "web", *store)
    api = dev_token(sigil, server.data_dir, "payments", "api", *store)
    wrong_audience = dev_token(sigil, server.data_dir, "default", "web", "--audience", "vault", *store)
    garbage = "eyJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(40) + "." + secrets.token_urlsafe(40)
    scenario = AuditScenario({}, {}, [web, api, wrong_audience, garbage], [])

    csr, key = python_csr()
    body = assert_issued(server.post_csr(csr, web), WEB_ID)
    scenario.issued[body["serial"]] = body
    body = assert_issued(server.post_csr(python_csr(spiffe_id=None)[0], api), "spiffe://cluster.local/ns/payments/sa/api")
    scenario.issued[body["serial"]] = body

    chain = write_pem_chain(tmp_path / "audit-svid.pem", scenario.issued[next(iter(scenario.issued))]["chain"])
    key_file = tmp_path / "audit-svid.key"
    key_file.write_text(key)
    body = assert_issued(server.post_csr(python_csr()[0], cert=(str(chain), str(key_file))), WEB_ID)
    scenario.issued[body["serial"]] = body
    scenario.renewed.append(body["serial"])

    refusals = [
        (dict(csr_pem=python_csr()[0], token=None), 401, "unauthenticated"),
        (dict(csr_pem=python_csr()[0], token=wrong_audience), 401, "audience_mismatch"),
        (dict(csr_pem=python_csr()[0], token=garbage), 401, "token_invalid"),
        (dict(csr_pem=python_csr(spiffe_id=OTHER_ID)[0], token=web), 403, "identity_mismatch"),
        (dict(csr_pem="not a csr", token=web), 400, "csr_invalid"),
        (dict(csr_pem=python_csr()[0], token=web, ttl_seconds=30 * 86_400), 400, "ttl_out_of_range"),
    ]
    for request, status, code in refusals:
        problem = assert_problem(server.post_csr(**request), status, code, forbidden=tuple(scenario.tokens))
        scenario.denied[problem["request_id"]] = code
    return scenario


def audit_records(sigil: "Sigil", *store_args) -> list[dict]:
    result = sigil.ok("audit", "list", *store_args, "--json", "--limit", "100000")
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_audit_broken_at(result: Result, expected: int | set[int]) -> int:
    """`sigil audit verify` failed with one line naming the first bad record; returns its number."""
    line = assert_one_line_failure(result)
    match = AUDIT_BROKEN.match(line)
    assert match, f"expected 'Error: audit_chain_broken: record N: …':\n{result}"
    wanted = {expected} if isinstance(expected, int) else expected
    assert int(match["seq"]) in wanted, f"expected record {sorted(wanted)} to be named:\n{result}"
    return int(match["seq"])


def assert_no_token_in(text: str, tokens: list[str], where: str) -> None:
    for token in tokens:
        for part in token_parts(token):
            assert part not in text, f"{where} contains a bearer token (or part of one: {part[:16]}…)"


# Tampering with the audit table, the same SQL for `sqlite3` and `psql`. Each case takes something with
# execute(sql) -> stdout (one value per line, unaligned) and returns the record number `sigil audit
# verify` must name (or the set of acceptable numbers).


def _scalar(db, sql: str) -> int:
    return int(db.execute(sql).strip())


def _first_issue(db) -> int:
    return _scalar(db, "SELECT min(seq) FROM audit WHERE action = 'issue'")


def _tamper_edit_subject(db):
    seq = _first_issue(db)
    db.execute(f"UPDATE audit SET subject = 'spiffe://cluster.local/ns/default/sa/evil' WHERE seq = {seq}")
    return seq


def _tamper_edit_outcome(db):
    seq = _scalar(db, "SELECT min(seq) FROM audit WHERE action = 'deny'")
    db.execute(f"UPDATE audit SET outcome = 'success', code = NULL WHERE seq = {seq}")
    return seq


def _tamper_edit_time(db):
    seq = _first_issue(db)
    db.execute(f"UPDATE audit SET time_us = time_us + 1 WHERE seq = {seq}")
    return seq


def _tamper_edit_last(db):
    """The newest record has no successor whose prev_hash would notice: its own hash must."""
    seq = _scalar(db, "SELECT max(seq) FROM audit")
    db.execute(f"UPDATE audit SET reason = 'nothing to see' WHERE seq = {seq}")
    return seq


def _tamper_delete(db):
    seq = _first_issue(db)
    db.execute(f"DELETE FROM audit WHERE seq = {seq}")
    return {seq, seq + 1}  # noticed at the record after the gap, or named as the missing one


def _tamper_delete_and_renumber(db):
    """Closes the gap so the sequence looks continuous: the hash links must still break."""
    seq = _first_issue(db)
    db.execute(
        f"DELETE FROM audit WHERE seq = {seq}; UPDATE audit SET seq = -seq WHERE seq > {seq};"
        " UPDATE audit SET seq = -seq - 1 WHERE seq < 0;"
    )
    return seq


def _tamper_swap(db):
    seq = _first_issue(db)
    db.execute(
        f"UPDATE audit SET seq = -1 WHERE seq = {seq}; UPDATE audit SET seq = {seq} WHERE seq = {seq + 1};"
        f" UPDATE audit SET seq = {seq + 1} WHERE seq = -1;"
    )
    return seq


def _tamper_append_forged(db):
    seq = _scalar(db, "SELECT max(seq) FROM audit")
    db.execute(
        "INSERT INTO audit (seq, time_us, actor, action, outcome, subject, serial, prev_hash, hash)"
        " SELECT seq + 1, time_us + 1, actor, 'issue', 'success', 'spiffe://cluster.local/ns/default/sa/evil',"
        f" '00112233445566778899aabbccddeeff', hash, '{'ab' * 32}' FROM audit WHERE seq = {seq}"
    )
    return seq + 1


TAMPERING = {
    "edit-subject": _tamper_edit_subject,
    "edit-outcome": _tamper_edit_outcome,
    "edit-time": _tamper_edit_time,
    "edit-last-record": _tamper_edit_last,
    "delete": _tamper_delete,
    "delete-and-renumber": _tamper_delete_and_renumber,
    "swap": _tamper_swap,
    "append-forged": _tamper_append_forged,
}


# --- the secrets ledger -------------------------------------------------------------------------------
# Every secret the suite makes, and everything sigil printed or recorded while it ran, so that one scan at
# the end of the session (conftest.py's last item) can grep all of sigil's output for token and key
# material. The helpers above register as they go: run() (every `sigil` command), SigilServer (its
# stdout/stderr, the bearer tokens sent to it, its data dir, audit sink and store), TokenIssuer, make_csr,
# python_csr and make_upstream_ca. conftest.py adds rotation_support's background processes.

SCAN_WINDOW = 16  # shortest secret fragment looked for, and the length of the index key
_SECRET_RUN = re.compile(r"[A-Za-z0-9+/_=-]{%d,}" % SCAN_WINDOW)  # where a base64(url)/hex fragment can be
_JWT_SHAPED = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# A PEM private-key BEGIN/END line (spelt in two pieces: the repository's key scan flags the marker in source).
_KEY_MARKER = re.compile(r"-----(?:BEGIN|END) [A-Z0-9 ]*PRIVATE" + r" KEY-----")


@dataclass(frozen=True)
class Finding:
    """One line of sigil output holding something it must never print."""

    where: str
    line: int
    what: str
    text: str  # the line, each secret in it cut to its first characters

    def __str__(self) -> str:
        return f"{self.where}:{self.line}: {self.what}\n    {self.text}"


def _flag_values(args: list[str], flag: str) -> list[str]:
    values = []
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith(flag + "="):
            values.append(arg[len(flag) + 1 :])
    return values


def _is_sigil(args: list) -> bool:
    return bool(args) and Path(str(args[0])).name == "sigil"


class SecretLedger:
    """Secrets (as the fragments to look for: JWT payloads and signatures, opaque tokens, the base64 lines
    of private keys, key-encryption keys in hex and base64) and outputs (texts, files read at scan time,
    live process output), then scan() -> [Finding].

    A data dir is read at scan time (or, for one about to be deleted, by snapshot_data_dir): its `kek`
    and `dev-issuer.key` join the secrets and the rows of its SQLite audit table join the outputs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._needles: dict[str, str] = {}  # fragment -> what it is
        self._outputs: dict[str, Callable[[], str | None]] = {}
        self._snapshots: set[tuple[str, int]] = set()  # (name, hash) of texts already kept
        self._data_dirs: dict[Path, str] = {}  # read at scan time: path -> who used it
        self._snapshotted_dirs: set[Path] = set()
        self._scanned: dict[str, int] = {}  # output name -> hash of the text last scanned
        self._gaps: dict[str, None] = {}
        self.stats = ""

    @property
    def gaps(self) -> list[str]:
        """What could not be read (reported with the scan's summary, not failed)."""
        return list(self._gaps)

    def _gap(self, text: str) -> None:
        self._gaps.setdefault(text, None)

    # secrets

    def _add(self, needle: str, what: str) -> None:
        if len(needle) >= SCAN_WINDOW:
            with self._lock:
                self._needles.setdefault(needle, what)

    def token(self, token: str, origin: str) -> None:
        """A bearer token: a JWT's payload and signature (its header is public), or an opaque token whole."""
        token = token.strip()
        parts = token.split(".")
        if len(parts) >= 2:
            for label, part in zip(("payload", "signature"), parts[1:3]):
                self._add(part, f"{label} of {origin}")
        elif len(token) >= 20 and len(set(token)) >= 10:  # not junk like "aaaa…" sent to test limits
            self._add(token, origin)

    def private_key(self, pem: str, origin: str) -> None:
        for line in pem.splitlines():
            line = line.strip()
            if line and not line.startswith("-----") and ":" not in line:
                self._add(line, f"private key: {origin}")

    def raw_secret(self, value: bytes, origin: str) -> None:
        """Binary key material, as it would appear printed: hex and base64."""
        for form in (value.hex(), base64.b64encode(value).decode().rstrip("="), b64url(value)):
            self._add(form, origin)

    @property
    def output_names(self) -> list[str]:
        with self._lock:
            return list(self._outputs)

    @property
    def data_dirs(self) -> list[Path]:
        """Data dirs to read at scan time."""
        with self._lock:
            return list(self._data_dirs)

    def knows(self, text: str) -> bool:
        """Whether some registered fragment occurs in `text` (for the ledger's own tests)."""
        return any(needle in text for needle in self._needles)

    # outputs

    def output(self, name: str, source: str | Path | Callable[[], str | None]) -> None:
        """Text to scan: a string (kept once per distinct content), a file (read at scan time) or a
        callable (called at scan time, e.g. a live process's output)."""
        if isinstance(source, str):
            if not source:
                return
            key = (name, hash(source))
            with self._lock:
                if key in self._snapshots:
                    return
                self._snapshots.add(key)
            getter: Callable[[], str | None] = lambda: source  # noqa: E731
        elif isinstance(source, Path):
            getter = lambda: source.read_text(errors="replace") if source.exists() else None  # noqa: E731
        else:
            getter = source
        with self._lock:
            unique, n = name, 1
            while unique in self._outputs:
                n += 1
                unique = f"{name} #{n}"
            self._outputs[unique] = getter

    def data_dir(self, path: Path, origin: str) -> None:
        """A data dir to read at scan time; ignored unless it exists (a refused command made none)."""
        path = Path(path).resolve()
        if path.is_dir():
            with self._lock:
                self._data_dirs.setdefault(path, origin)

    def snapshot_data_dir(self, path: Path, origin: str) -> None:
        """Reads a data dir now (its owner deletes it before the session ends)."""
        path = Path(path).resolve()
        audit = self._read_data_dir(path)
        if audit:
            self.output(f"audit table of {path}/sigil.db (read when {origin} stopped)", audit)
        with self._lock:
            self._snapshotted_dirs.add(path)

    def _read_data_dir(self, path: Path) -> str | None:
        """Registers the data dir's own secrets; returns its audit records, one JSON object a line."""
        import sqlite3

        if (path / "kek").is_file():
            self.raw_secret((path / "kek").read_bytes(), f"key-encryption key {path}/kek")
        if (path / "dev-issuer.key").is_file():
            self.private_key((path / "dev-issuer.key").read_text(errors="replace"), f"{path}/dev-issuer.key")
        database = path / "sigil.db"
        if not database.is_file():
            return None
        try:
            connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
            try:
                connection.row_factory = sqlite3.Row
                rows = connection.execute("SELECT * FROM audit ORDER BY seq").fetchall()
            finally:
                connection.close()
        except sqlite3.Error as error:
            self._gap(f"audit table of {database}: {error}")
            return None
        return "".join(json.dumps(dict(row), default=str) + "\n" for row in rows)

    def snapshot_postgres_audit(self, url: str, origin: str) -> None:
        """Reads a PostgreSQL store's audit table now (its database is dropped before the session ends)."""
        sql = "SELECT row_to_json(a)::text FROM audit a ORDER BY seq"
        try:
            completed = subprocess.run(
                ["psql", url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
                env={**os.environ, "PGCONNECT_TIMEOUT": "3"},
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            self._gap(f"audit table of {url}: {error}")
            return
        if completed.returncode != 0:
            self._gap(f"audit table of {url} (when {origin} stopped): {completed.stderr.strip()[:200]}")
            return
        self.output(f"audit table of {url} (read when {origin} stopped)", completed.stdout)

    # sigil processes

    def sigil_command(self, args: list[str], stdout: str, stderr: str, cwd: Path | None = None) -> None:
        """A finished `sigil …` command: its output, and the files its flags name."""
        command = [str(a) for a in args[1:]]
        label = _shorten("$ sigil " + " ".join(command))
        if command[:2] == ["dev", "token"]:
            # Printing a token on stdout is what `sigil dev token` is for (README: TOKEN=$(sigil dev token …)):
            # that stdout is registered as a secret, and is the one output not scanned. Its stderr is.
            if stdout.strip():
                self.token(stdout, f"token from {label}")
        else:
            self.output(f"{label} (stdout)", stdout)
        self.output(f"{label} (stderr)", stderr)
        self.sigil_files(command, label, cwd=cwd, now=False)

    def sigil_files(self, command: list[str], label: str, cwd: Path | None = None, now: bool = False) -> list[str]:
        """Registers what a sigil command line names: data dir, audit sink, TokenReview credential, an
        agent's key. now=True reads what may be deleted soon at once. Returns its postgres:// stores."""
        base = Path(cwd) if cwd else Path.cwd()
        settings: dict = {}
        for config in _flag_values(command, "--config"):
            try:
                settings.update(json.loads((base / config).read_text()))
            except (OSError, ValueError):
                pass

        def paths(flag: str, key: str) -> list[Path]:
            values = _flag_values(command, flag) + ([str(settings[key])] if isinstance(settings.get(key), str) else [])
            return [base / value for value in values]

        for directory in paths("--data-dir", "data_dir"):
            if now:
                self.snapshot_data_dir(directory, label)
            else:
                self.data_dir(directory, label)
        for sink in paths("--audit-sink", "audit_sink"):
            if sink.name != "stdout":  # `--audit-sink stdout` is part of the process's stdout
                self.output(f"audit sink {sink}", sink.read_text(errors="replace") if now and sink.exists() else sink)
        for credential in paths("--token-review-credential", "token_review_credential"):
            if credential.is_file():
                self.token(credential.read_text(errors="replace"), f"TokenReview credential {credential}")
        for out_dir in _flag_values(command, "--out-dir"):
            key = base / out_dir / "svid.key"
            if key.is_file():
                self.private_key(key.read_text(errors="replace"), f"agent key {key}")
        return [s for s in _flag_values(command, "--store") + [str(settings.get("store", ""))] if s.startswith("postgres")]

    def sigil_process_stopped(self, args: list[str], stdout: str, stderr: str) -> None:
        """A background `sigil serve|agent` whose files are about to be deleted: read everything now."""
        command = [str(a) for a in args[1:]]
        label = _shorten("$ sigil " + " ".join(command))
        self.output(f"{label} (stdout)", stdout)
        self.output(f"{label} (stderr)", stderr)
        for store in self.sigil_files(command, label, now=True):
            self.snapshot_postgres_audit(store, label)

    # the scan

    def _texts(self) -> list[tuple[str, str]]:
        with self._lock:
            directories = [(p, o) for p, o in self._data_dirs.items()]
            snapshotted = set(self._snapshotted_dirs)
        for path, origin in directories:
            if path.is_dir():
                audit = self._read_data_dir(path)
                if audit:
                    self.output(f"audit table of {path}/sigil.db", audit)
            elif path not in snapshotted:
                self._gap(f"data dir {path} ({origin}) was gone before the scan")
        with self._lock:
            outputs = list(self._outputs.items())
        texts = []
        for name, getter in outputs:
            try:
                text = getter()
            except OSError as error:
                self._gap(f"{name}: {error}")
                continue
            if text:
                texts.append((name, text))
        return texts

    def scan(self, only_changed: bool = False) -> list[Finding]:
        """Every line of every output against every secret, JWT-shaped strings and the PEM private-key
        marker. only_changed: skip outputs whose text is what an earlier scan saw."""
        started = time.monotonic()
        texts = self._texts()  # first: reading the data dirs registers their keys
        with self._lock:
            needles = dict(self._needles)
        index: dict[str, list[str]] = {}
        for needle in needles:
            index.setdefault(needle[:SCAN_WINDOW], []).append(needle)
        findings: list[Finding] = []
        size = 0
        for name, text in texts:
            digest = hash(text)
            if only_changed and self._scanned.get(name) == digest:
                continue
            self._scanned[name] = digest
            size += len(text)
            findings += _scan_text(name, text, index, needles)
        if not only_changed:
            self.stats = (
                f"{len(texts)} outputs ({size / 1e6:.1f} MB) against {len(needles)} secret fragments"
                f" in {time.monotonic() - started:.1f} s"
            )
        return findings


def _scan_text(name: str, text: str, index: dict[str, list[str]], needles: dict[str, str]) -> list[Finding]:
    findings = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.replace("\\/", "/")  # JSON may escape "/", which base64 uses
        found: list[tuple[str, str]] = []  # (what, the secret text to cut short in the report)
        for run_match in _SECRET_RUN.finditer(line):
            start, end = run_match.span()
            for position in range(start, end - SCAN_WINDOW + 1):
                for needle in index.get(line[position : position + SCAN_WINDOW], ()):
                    if line.startswith(needle, position):
                        found.append((needles[needle], needle))
        for match in _JWT_SHAPED.finditer(line):
            found.append(("a JWT-shaped string", match.group()))
        for match in _KEY_MARKER.finditer(line):
            found.append(("a PEM private key marker", ""))
        if found:
            shown, where = line, name  # a command line may hold the secret too
            for _, secret in found:
                if secret:
                    cut = f"{secret[:8]}…[{len(secret)} chars]"
                    shown, where = shown.replace(secret, cut), where.replace(secret, cut)
            shown = shown if len(shown) <= 400 else shown[:400] + "…"
            for what in dict.fromkeys(what for what, _ in found):
                findings.append(Finding(where, number, what, shown))
    return findings


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


LEDGER = SecretLedger()
