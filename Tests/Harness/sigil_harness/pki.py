"""PKI material made outside Sigil: CSRs with the `openssl` command and with Python `cryptography`, an upstream
CA, and the identities the tests use."""
from __future__ import annotations

import base64
import hashlib
import textwrap
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .ledger import LEDGER
from .process import run

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
