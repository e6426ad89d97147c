"""Helpers shared by the CLI integration tests (fixtures that use them live in conftest.py)."""
from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

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


def run(args: list[str], *, timeout: float = 60, umask: int | None = None, cwd: Path | None = None) -> Result:
    """Runs a command to completion and captures its output as text."""
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
    return cert, key
