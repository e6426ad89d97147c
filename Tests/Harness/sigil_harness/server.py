"""`sigil serve` over HTTPS: the process, problem+json and issuance assertions."""
from __future__ import annotations

import json
import re
import ssl
import subprocess
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import requests
from cryptography import x509

from .ledger import LEDGER, _shorten
from .process import _LineReader, clean_env, describe_process, stop_process

# --- `sigil serve` over HTTPS -----------------------------------------------------------------------
# Helpers for the server tests (test_server_*.py, test_audit_*.py): a `sigil serve` process, problem+json
# assertions, tokens minted with PyJWT, small local HTTP servers (JWKS / OIDC discovery, a fake
# TokenReview API) and PostgreSQL databases and clusters. Nothing here sleeps for timing: waits are
# condition variables or bounded polls with a deadline.

PROBLEM_JSON = "application/problem+json"
LISTENING = re.compile(r"^sigil listening on (?P<url>https://127\.0\.0\.1:\d+)$")
GRPC_LISTENING = re.compile(r"^sigil listening on grpcs://(?P<target>127\.0\.0\.1:\d+) \(Istio CA\)$")


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
        self.grpc_target = ""  # host:port of Istio's CA API, with --grpc-listen
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
        self.process = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=clean_env(self.env),  # only the flags of the test configure the server
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
        if "--grpc-listen" in self.args:
            grpc = self._stdout.wait_for(GRPC_LISTENING.match, timeout)
            if not grpc:
                self.stop()
                raise AssertionError(f"sigil serve did not print its grpcs:// line within {timeout}s:\n{self.describe()}")
            self.grpc_target = grpc["target"]
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
        return describe_process(self.command, self.process, [("stdout", self.stdout[-4000:]),
                                                             ("stderr", self.stderr[-6000:])])

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
