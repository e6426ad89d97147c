"""Helpers for the hostile-input suites (test_hostile_*.py): a `sigil serve` rig in JWKS-file token mode with an
audit JSON-lines sink, refusal assertions that also find the denial audit record, a small DER encoder to build
CSRs no library would make (unknown curves, huge or tiny RSA moduli, broken signatures, odd extensions), and raw
TLS sockets for protocol-level abuse. Nothing here sleeps for timing: waits are bounded polls or socket timeouts."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import ssl
import struct
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from sigil_harness import (
    WEB_ID,
    SigilServer,
    TokenIssuer,
    assert_issued,
    assert_problem,
    describe_response,
    python_csr,
    token_parts,
    wait_until,
)

TOKEN_ISSUER = "https://kubernetes.default.svc.cluster.local"
PUBLISHED_KEYS = [("rsa-a", "RS256"), ("ec-a", "ES256"), ("ec384-a", "ES384"), ("ps-a", "PS256")]

# --- the rig: one server per module -------------------------------------------------------------------


@dataclass
class HostileRig:
    """A running `sigil serve` in JWKS-file mode (`--token-issuer`, `--token-jwks FILE`) with `--audit-sink FILE`,
    the PyJWT issuer whose keys the JWKS publishes, and every bearer token sent so far (none may leak)."""

    server: SigilServer
    issuer: TokenIssuer
    sink: Path
    jwks: Path
    good_csr: str
    sent_tokens: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # request ids of the refusals checked so far

    # tokens

    def token(self, kid: str = "rsa-a", **claims) -> str:
        return self.remember(self.issuer.token(kid, **claims))

    def remember(self, token: str) -> str:
        self.sent_tokens.append(token)
        return token

    # requests

    def post(
        self,
        body: bytes | str,
        token: str | None = None,
        content_type: str | None = "application/json",
        headers: dict | None = None,
        path: str = "/v1/certificates",
        **kwargs,
    ) -> requests.Response:
        """POST raw bytes (the body is sent exactly as given) with a bearer token and content type."""
        all_headers = {}
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        all_headers.update(headers or {})
        data = body.encode() if isinstance(body, str) else body
        return self.server.request("POST", path, data=data, headers=all_headers, allow_5xx=True, **kwargs)

    def post_csr(self, csr_pem: str, token: str | None = None, ttl_seconds: int | None = None) -> requests.Response:
        payload: dict = {"csr": csr_pem}
        if ttl_seconds is not None:
            payload["ttl_seconds"] = ttl_seconds
        return self.post(json.dumps(payload), token if token is not None else self.token())

    # assertions

    def refused(
        self, response: requests.Response, status: int, code: str, *, token: str | None = None, audited: bool = True
    ) -> dict:
        """The response is problem+json with exactly `status` and `code`, echoes no token sent so far, the server is
        alive, and (audited) the denial is in the audit sink under the problem's request id with the same code."""
        assert response.status_code < 500, f"server error:\n{describe_response(response)}\n{self.server.describe()}"
        secrets_ = tuple(part for t in ([token] if token else []) + self.sent_tokens[-3:] for part in token_parts(t))
        problem = assert_problem(response, status, code, forbidden=secrets_)
        assert self.server.running, f"the server died:\n{self.server.describe()}"
        self.refusals.append(problem["request_id"])
        if audited:
            record = self.audit_record(problem["request_id"])
            assert record["action"] == "deny" and record["outcome"] == "failure", record
            assert record["code"] == code, f"audit code {record['code']} != {code}: {record}"
            assert "serial" not in record or record["serial"] is None, record
            if token is not None:  # tied to the token by an HMAC, never by the token itself
                assert len(record.get("token_hmac") or "") == 64, f"no token HMAC in the denial: {record}"
            line = json.dumps(record)
            for part in secrets_:
                assert part not in line, f"the audit record holds a token: {record}"
        return problem

    def audit_records(self) -> list[dict]:
        if not self.sink.exists():
            return []
        text = self.sink.read_text()
        complete = text[: text.rfind("\n") + 1]  # a line still being written is read on the next poll
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def audit_record(self, request_id: str, timeout: float = 5) -> dict:
        def find():
            return next((r for r in self.audit_records() if r.get("request_id") == request_id), None)

        return wait_until(find, timeout, interval=0.02, what=f"the audit record of request {request_id}")

    def assert_serves(self, csr_pem: str | None = None) -> dict:
        """The server is alive and still issues a certificate that chains to its bundle."""
        assert self.server.running, self.server.describe()
        body = assert_issued(self.post_csr(csr_pem or self.good_csr), WEB_ID)
        assert_chain_verifies(body, self.server.bundle)
        return body

    def assert_refusals_distinct(self) -> None:
        """Every refusal so far had its own request id."""
        assert len(set(self.refusals)) == len(self.refusals), "two refusals share a request id"

    def assert_survived(self, sigil) -> None:
        """End of a module: the same process still runs and issues, never answered a 5xx, logged or audited no
        token, gave every refusal its own request id, and its audit chain verifies."""
        assert self.server.running, self.server.describe()
        self.assert_serves()
        statuses = {dict(labels)["code"] for (name, labels) in self.server.metrics() if name == "sigil_http_requests_total"}
        assert statuses and not {s for s in statuses if s.startswith("5")}, sorted(statuses)
        self.assert_no_token_leaked()
        self.assert_refusals_distinct()
        result = sigil.run("audit", "verify", "--data-dir", self.server.data_dir)
        assert result.returncode == 0, result

    def assert_no_token_leaked(self) -> None:
        """No token (or its payload or signature) in the server's log, stdout or the audit sink."""
        texts = {"stderr": self.server.stderr, "stdout": self.server.stdout, "audit sink": self.sink.read_text()}
        for token in self.sent_tokens:
            for part in token_parts(token):
                for where, text in texts.items():
                    assert part not in text, f"the {where} contains a bearer token (part {part[:16]}…)"


def start_rig(module_servers, directory: Path, *extra_args: str, extra_jwks: list[dict] | None = None) -> HostileRig:
    """A server in JWKS-file mode: keys rsa-a (RS256), ec-a (ES256), ec384-a (ES384), ps-a (PS256) published,
    `rogue-rsa`/`rogue-ec` unpublished; `extra_jwks` entries appended verbatim to the JWKS file."""
    directory.mkdir(parents=True, exist_ok=True)
    issuer = TokenIssuer(TOKEN_ISSUER)
    for kid, kind in PUBLISHED_KEYS:
        issuer.add_key(kid, kind)
    issuer.add_key("rogue-rsa", "RS256", publish=False)
    issuer.add_key("rogue-ec", "ES256", publish=False)
    document = issuer.jwks()
    document["keys"].extend(extra_jwks or [])
    jwks = directory / "jwks.json"
    jwks.write_text(json.dumps(document))
    sink = directory / "audit.jsonl"
    server = module_servers(
        directory / "pki", "--token-issuer", issuer.issuer, "--token-jwks", jwks, "--audit-sink", sink, *extra_args
    )
    rig = HostileRig(server, issuer, sink, jwks, python_csr()[0])
    rig.assert_serves()  # the rig itself works before anything hostile happens
    return rig


def assert_chain_verifies(body: dict, bundle: Path) -> None:
    """The issued leaf verifies (signature and validity) under the returned intermediate and bundle root."""
    from cryptography.x509.verification import PolicyBuilder, Store

    leaf, *intermediates = [x509.load_pem_x509_certificate(p.encode()) for p in body["chain"]]
    roots = x509.load_pem_x509_certificates(bundle.read_bytes())
    verifier = PolicyBuilder().store(Store(roots)).build_client_verifier()
    verifier.verify(leaf, intermediates)  # raises on any failure


# --- a minimal DER encoder ----------------------------------------------------------------------------


def der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_length(len(content)) + content


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def set_of(*items: bytes) -> bytes:
    return tlv(0x31, b"".join(sorted(items)))


def integer(value: int) -> bytes:
    length = max(1, (value.bit_length() + 8) // 8) if value >= 0 else (value.bit_length() + 8) // 8
    return tlv(0x02, value.to_bytes(length, "big", signed=True))


def oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray()
    for value in [parts[0] * 40 + parts[1], *parts[2:]]:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        body += bytes(reversed(chunk))
    return tlv(0x06, bytes(body))


def null() -> bytes:
    return b"\x05\x00"


def boolean(value: bool) -> bytes:
    return tlv(0x01, b"\xff" if value else b"\x00")


def bit_string(data: bytes, unused: int = 0) -> bytes:
    return tlv(0x03, bytes([unused]) + data)


def octet_string(data: bytes) -> bytes:
    return tlv(0x04, data)


def utf8_string(text: str) -> bytes:
    return tlv(0x0C, text.encode())


def context(number: int, content: bytes, constructed: bool = False) -> bytes:
    return tlv((0xA0 if constructed else 0x80) | number, content)


OID = {
    "ecPublicKey": "1.2.840.10045.2.1",
    "rsaEncryption": "1.2.840.113549.1.1.1",
    "prime256v1": "1.2.840.10045.3.1.7",
    "ecdsa-with-SHA256": "1.2.840.10045.4.3.2",
    "ecdsa-with-SHA384": "1.2.840.10045.4.3.3",
    "sha256WithRSAEncryption": "1.2.840.113549.1.1.11",
    "md5WithRSAEncryption": "1.2.840.113549.1.1.4",
    "Ed25519": "1.3.101.112",
    "X25519": "1.3.101.110",
    "extensionRequest": "1.2.840.113549.1.9.14",
    "challengePassword": "1.2.840.113549.1.9.7",
    "subjectAltName": "2.5.29.17",
    "basicConstraints": "2.5.29.19",
    "keyUsage": "2.5.29.15",
    "organizationName": "2.5.4.10",
    "commonName": "2.5.4.3",
}


def name(organization: str = "sigil-test") -> bytes:
    return seq(set_of(seq(oid(OID["organizationName"]), utf8_string(organization))))


# GeneralName ([n] IMPLICIT) makers for SAN extensions.
def gn_uri(uri: str | bytes) -> bytes:
    return context(6, uri.encode() if isinstance(uri, str) else uri)


def gn_dns(dns: str) -> bytes:
    return context(2, dns.encode())


def gn_email(email: str) -> bytes:
    return context(1, email.encode())


def gn_ip(packed: bytes) -> bytes:
    return context(7, packed)


def gn_registered_id(dotted: str) -> bytes:
    return context(8, oid(dotted)[2:])


def gn_other_name(type_oid: str, value: bytes) -> bytes:
    return context(0, oid(type_oid) + context(0, value, constructed=True), constructed=True)


def gn_directory_name(organization: str) -> bytes:
    return context(4, name(organization), constructed=True)


def extension(ext_oid: str, value: bytes, critical: bool = False) -> bytes:
    return seq(oid(ext_oid), *([boolean(True)] if critical else []), octet_string(value))


def san_extension(*names: bytes, critical: bool = False) -> bytes:
    return extension(OID["subjectAltName"], seq(*names), critical)


def basic_constraints(ca: bool, pathlen: int | None = None, critical: bool = True) -> bytes:
    body = (boolean(True) if ca else b"") + (integer(pathlen) if pathlen is not None else b"")
    return extension(OID["basicConstraints"], seq(body) if body else seq(), critical)


def extension_request(*extensions: bytes) -> bytes:
    return seq(oid(OID["extensionRequest"]), set_of(seq(*extensions)))


def request_info(spki: bytes, attributes: list[bytes] = (), subject: bytes | None = None, version: int = 0) -> bytes:
    return seq(
        integer(version), subject if subject is not None else name(), spki, context(0, b"".join(attributes), True)
    )


def csr_der(info: bytes, algorithm: bytes, signature: bytes, unused_bits: int = 0) -> bytes:
    return seq(info, algorithm, bit_string(signature, unused_bits))


def pem(der: bytes, label: str = "CERTIFICATE REQUEST") -> str:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


def alg_id(name_or_oid: str, params: bytes | None = None) -> bytes:
    return seq(oid(OID.get(name_or_oid, name_or_oid)), *([params] if params is not None else []))


# --- keys and signers ---------------------------------------------------------------------------------


@dataclass
class Signer:
    """An SPKI and a way to sign the CertificationRequestInfo, with the signature AlgorithmIdentifier to use."""

    spki: bytes
    algorithm: bytes
    sign: object  # sign(data: bytes) -> bytes


def spki_of(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def ec_signer(curve: ec.EllipticCurve = None, digest=None) -> Signer:
    key = ec.generate_private_key(curve or ec.SECP256R1())
    digest = digest or hashes.SHA256()
    algorithm = alg_id("ecdsa-with-SHA384" if isinstance(digest, hashes.SHA384) else "ecdsa-with-SHA256")
    return Signer(spki_of(key.public_key()), algorithm, lambda data: key.sign(data, ec.ECDSA(digest)))


def rsa_key_signer(key: rsa.RSAPrivateKey) -> Signer:
    return Signer(
        spki_of(key.public_key()),
        alg_id("sha256WithRSAEncryption", null()),
        lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256()),
    )


def ed25519_signer() -> Signer:
    key = ed25519.Ed25519PrivateKey.generate()
    return Signer(spki_of(key.public_key()), alg_id("Ed25519"), key.sign)


def ed448_signer() -> Signer:
    key = ed448.Ed448PrivateKey.generate()
    return Signer(spki_of(key.public_key()), alg_id("1.3.101.113"), key.sign)


_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def rsa_spki(n: int, e: int) -> bytes:
    return seq(alg_id("rsaEncryption", null()), bit_string(seq(integer(n), integer(e))))


def raw_rsa_signer(n: int, e: int, d: int, primes: list[int] | None = None) -> Signer:
    """PKCS#1 v1.5 / SHA-256 by hand, for moduli and exponents no library will generate (multi-prime, 16 kbit, e=1).
    With the prime factors given, signs by the CRT (a 24-kbit modular exponentiation in Python takes a minute)."""
    size = (n.bit_length() + 7) // 8

    def power(m: int) -> int:
        if not primes:
            return pow(m, d, n)
        total = 0
        for p in primes:
            others = n // p
            total += pow(m % p, d % (p - 1), p) * others * pow(others % p, -1, p)
        return total % n

    def sign(data: bytes) -> bytes:
        digest_info = _SHA256_DIGEST_INFO + hashlib.sha256(data).digest()
        encoded = b"\x00\x01" + b"\xff" * (size - len(digest_info) - 3) + b"\x00" + digest_info
        return power(int.from_bytes(encoded, "big")).to_bytes(size, "big")

    return Signer(rsa_spki(n, e), alg_id("sha256WithRSAEncryption", null()), sign)


def _is_probable_prime(n: int, rounds: int = 24) -> bool:
    if n < 4:
        return n in (2, 3)
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def random_prime(bits: int, e: int = 65537) -> int:
    while True:
        candidate = secrets.randbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if (candidate - 1) % e != 0 and _is_probable_prime(candidate):
            return candidate


def multiprime_rsa_signer(bits: int, e: int = 65537, prime_bits: int = 256) -> Signer:
    """An RSA key of exactly `bits` bits made of many small primes: fast to make at any size. The signature is a
    real PKCS#1 v1.5 signature under (n, e), so only the key size can be what the server objects to."""
    from math import gcd, lcm

    while True:
        primes = [random_prime(prime_bits, e) for _ in range(max(1, bits // prime_bits - 1))]
        rest = 1
        for p in primes:
            rest *= p
        last_bits = bits - rest.bit_length()
        if last_bits < 16:
            continue
        for extra in (0, 1):
            last = random_prime(last_bits + extra, e)
            if last in primes:
                continue
            n = rest * last
            if n.bit_length() == bits:
                carmichael = lcm(*[p - 1 for p in primes + [last]])
                if gcd(e, carmichael) == 1:
                    return raw_rsa_signer(n, e, pow(e, -1, carmichael), primes + [last])


def build_csr(
    signer: Signer,
    sans: list[bytes] | None = None,
    extensions: list[bytes] = (),
    *,
    attributes: list[bytes] | None = None,
    subject: bytes | None = None,
    version: int = 0,
) -> bytes:
    """DER CSR: subject O=sigil-test, the signer's key, an extensionRequest with SAN (default: the web URI) and
    `extensions`, signed by the signer."""
    sans = [gn_uri(WEB_ID)] if sans is None else sans
    exts = ([san_extension(*sans)] if sans else []) + list(extensions)
    attrs = attributes if attributes is not None else ([extension_request(*exts)] if exts else [])
    info = request_info(signer.spki, attrs, subject, version)
    return csr_der(info, signer.algorithm, signer.sign(info))


def split_csr(der: bytes) -> tuple[bytes, bytes, bytes]:
    """(CertificationRequestInfo, signatureAlgorithm, signature BIT STRING) TLVs of a DER CSR."""

    def read(buf: bytes, at: int) -> tuple[bytes, int]:
        length = buf[at + 1]
        header = 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(buf[at + 2 : at + 2 + count], "big")
            header += count
        end = at + header + length
        return buf[at:end], end

    at = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    info, at = read(der, at)
    algorithm, at = read(der, at)
    signature, at = read(der, at)
    return info, algorithm, signature


# --- raw TLS sockets ----------------------------------------------------------------------------------


def tls_context(server: SigilServer) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server.bundle))
    context.set_alpn_protocols(["http/1.1"])
    return context


def server_address(server: SigilServer) -> tuple[str, int]:
    host, port = server.url.removeprefix("https://").rsplit(":", 1)
    assert host == "127.0.0.1", server.url
    return host, int(port)


def tls_connect(server: SigilServer, timeout: float = 10) -> ssl.SSLSocket:
    raw = socket.create_connection(server_address(server), timeout=timeout)
    return tls_context(server).wrap_socket(raw, server_hostname="127.0.0.1")


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class RawConnection:
    """One TLS connection on which the test writes arbitrary bytes and reads HTTP/1.1 responses."""

    def __init__(self, server: SigilServer, timeout: float = 10):
        self.sock = tls_connect(server, timeout)
        self.buffer = b""
        self.closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.abort()  # a reset: unsent bytes (a refused 1 MiB head) must not keep the server's socket half-open

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self) -> None:
        """Closes with a TCP reset, dropping unsent data (a client that gives up mid-request)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def send(self, data: bytes) -> bool:
        """Writes data; False when the server had already closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.closed = True
            return False

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
            chunk = b""
        except socket.timeout:
            raise
        if not chunk:
            self.closed = True
            return False
        self.buffer += chunk
        return True

    def _read_line(self) -> bytes | None:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                return None
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _read_exact(self, n: int) -> bytes | None:
        while len(self.buffer) < n:
            if not self._fill():
                return None
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_response(self, head: bool = False) -> RawResponse | None:
        """The next response, or None if the server closed the connection first."""
        status_line = self._read_line()
        if status_line is None:
            return None
        parts = status_line.split(b" ", 2)
        assert len(parts) >= 2 and parts[0].startswith(b"HTTP/1."), f"not an HTTP response: {status_line!r}"
        headers: dict[str, str] = {}
        while True:
            line = self._read_line()
            assert line is not None, "connection closed inside response headers"
            if not line:
                break
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        body = b""
        if head:
            pass
        elif "content-length" in headers:
            body = self._read_exact(int(headers["content-length"])) or b""
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = self._read_line()
                assert size_line is not None, "connection closed inside a chunked body"
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    self._read_line()
                    break
                body += self._read_exact(size) or b""
                self._read_line()
        return RawResponse(int(parts[1]), headers, body)

    def wait_closed(self, timeout: float) -> bool:
        """True once the server closes the connection (EOF or reset) within `timeout` s; any data is discarded."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                if not self._fill():
                    return True
            except socket.timeout:
                return False
            except OSError:
                return True


def assert_raw_problem(response: RawResponse, status: int, code: str) -> dict:
    assert response.status == status, f"expected {status} {code}, got {response.status}: {response.body[:500]!r}"
    assert response.headers.get("content-type", "").split(";")[0] == "application/problem+json", response.headers
    problem = response.json()
    assert problem["code"] == code and problem["status"] == status, problem
    return problem


def get_ok(server: SigilServer, path: str = "/healthz") -> None:
    """The server answers a plain request on a new connection."""
    assert server.running, server.describe()
    response = server.request("GET", path)
    assert response.status_code == 200, describe_response(response)


def http_request(
    method: str,
    path: str,
    headers: dict[str, str] | list[tuple[str, str]] = (),
    body: bytes = b"",
    content_length: bool = True,
    version: str = "HTTP/1.1",
) -> bytes:
    """A request as bytes; Host defaults to 127.0.0.1, Content-Length to the body's length."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers)
    names = {k.lower() for k, _ in items}
    if "host" not in names:
        items.insert(0, ("Host", "127.0.0.1"))
    if content_length and body and "content-length" not in names and "transfer-encoding" not in names:
        items.append(("Content-Length", str(len(body))))
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n"
    return head.encode("latin-1") + body


# --- JWS by hand ----------------------------------------------------------------------------------------


def b64u(data: bytes | str) -> str:
    return base64.urlsafe_b64encode(data.encode() if isinstance(data, str) else data).rstrip(b"=").decode()


def jws_signature(key, alg: str, signing_input: bytes) -> bytes:
    """A JWS signature (RFC 7518) over `signing_input` with a private key from TokenIssuer, for any RS/PS/ES alg."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    digest = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[alg[2:]]
    if alg.startswith("RS"):
        return key.sign(signing_input, padding.PKCS1v15(), digest)
    if alg.startswith("PS"):
        return key.sign(signing_input, padding.PSS(padding.MGF1(digest), digest.digest_size), digest)
    if alg.startswith("ES"):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(digest)))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    raise ValueError(alg)


def sign_text(
    issuer: TokenIssuer, kid: str, header: str | dict, payload: str | bytes | dict, alg: str | None = None
) -> str:
    """A compact JWS whose header and payload are exactly the given JSON texts (dicts are dumped), signed by the
    issuer's key `kid` with `alg` (default: the key's algorithm). For claims PyJWT refuses to encode."""
    key, default_alg = issuer.keys[kid]
    header_text = header if isinstance(header, str) else json.dumps(header)
    payload_text = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    signing_input = b64u(header_text) + "." + b64u(payload_text)
    return signing_input + "." + b64u(jws_signature(key, alg or default_alg, signing_input.encode()))


# --- case tables ----------------------------------------------------------------------------------------


def xfail(reason: str):
    """A known server defect: the case must keep failing until it is fixed (then strict xfail turns it red)."""
    import pytest

    return pytest.mark.xfail(strict=True, reason=reason)


def refusal(status: int, code: str):
    """REFUSAL(make[, xfail reason]) -> (make, status, code[, reason]): one row of a case table."""
    return lambda make, *reason: (make, status, code, *reason)


def cases(table: dict) -> list:
    """{id: (value, status, code[, xfail reason])} -> pytest params (value, status, code) with readable ids."""
    import pytest

    return [
        pytest.param(value, status, code, id=case_id, marks=[xfail(reason[0])] if reason else [])
        for case_id, (value, status, code, *reason) in table.items()
    ]
