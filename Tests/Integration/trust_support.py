"""Helpers for the trust-hardening tests: what an attacker with a store backup and the KEK can do (take an
authority's key, forge a leaf with it), and reading the store behind the server's back."""
from __future__ import annotations

import datetime
import json
import sqlite3
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import ExtendedKeyUsageOID

from sigil_harness import LEDGER, SigilServer, run


def admin(sigil, server: SigilServer, *args: str):
    """`sigil admin ARGS --socket <server's admin socket>`, as a Result."""
    return sigil.run("admin", *args, "--socket", server.data_dir / "admin.sock")


def admin_json(sigil, server: SigilServer, *args: str) -> dict:
    result = admin(sigil, server, *args, "--json")
    assert result.returncode == 0, f"sigil admin failed:\n{result}"
    return json.loads(result.stdout)


def authority_ids(sigil, server: SigilServer, role: str, state: str) -> list[str]:
    status = admin_json(sigil, server, "status")
    return [a["id"] for a in status["authorities"] if a["role"] == role and a["state"] == state]


def backup(server: SigilServer, target: Path) -> Path:
    """A consistent copy of the server's SQLite store, as a backup job would take it (sqlite3's online backup)."""
    source = sqlite3.connect(f"file:{server.data_dir / 'sigil.db'}?mode=ro", uri=True)
    copy = sqlite3.connect(target)
    source.backup(copy)
    copy.close()
    source.close()
    return target


def query(database: Path, sql: str, *params) -> list[tuple]:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def execute(database: Path, sql: str, *params) -> None:
    """Writes the store behind the server's back, as a database writer without the KEK could."""
    connection = sqlite3.connect(database, timeout=30)
    try:
        connection.execute(sql, params)
        connection.commit()
    finally:
        connection.close()


def stolen_key(database: Path, kek_file: Path, authority_id: str):
    """The private key of `authority_id` from a store file and the KEK: AES-256-GCM, nonce ‖ ciphertext ‖ tag,
    the authority id as associated data (what Sigil's AESGCM writes)."""
    (sealed,) = query(database, "SELECT sealed_key FROM authorities WHERE id = ?", authority_id)[0]
    assert sealed is not None, f"{authority_id} has no key in {database}"
    der = AESGCM(kek_file.read_bytes()).decrypt(sealed[:12], sealed[12:], authority_id.encode())
    key = serialization.load_der_private_key(der, None)
    LEDGER.private_key(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
        f"authority key of {authority_id} taken from a backup")
    return key


def authority_certificate(database: Path, authority_id: str) -> x509.Certificate:
    (der,) = query(database, "SELECT certificate FROM authorities WHERE id = ?", authority_id)[0]
    return x509.load_der_x509_certificate(der)


def forge_leaf(directory: Path, issuer: x509.Certificate, issuer_key, spiffe_id: str, name: str = "forged",
               serial: int | None = None) -> tuple[Path, Path]:
    """An X509-SVID for `spiffe_id` signed with `issuer_key`: as well formed as Sigil's own, but never issued by
    it. Returns (chain file: leaf + issuer, key file)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(seconds=30))
        .not_valid_after(min(now + datetime.timedelta(hours=1), issuer.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value),
            critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    chain = directory / f"{name}.pem"
    chain.write_bytes(certificate.public_bytes(serialization.Encoding.PEM) + issuer.public_bytes(serialization.Encoding.PEM))
    key_file = directory / f"{name}.key"
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key_file.write_bytes(key_pem)
    LEDGER.private_key(key_pem.decode(), f"forged leaf key {name}")
    return chain, key_file


def crl_serials(der: bytes, issuer: x509.Certificate) -> set[int]:
    """The serials a DER CRL lists, after checking it is signed by `issuer` (Python cryptography)."""
    crl = x509.load_der_x509_crl(der)
    assert crl.is_signature_valid(issuer.public_key()), "the CRL is not signed by its issuer"
    assert crl.next_update_utc is not None
    return {entry.serial_number for entry in crl}


def openssl_crl_check(bundle: Path, chain: Path, crls_pem: str, directory: Path):
    """`openssl verify -crl_check_all` of the leaf in `chain` against `bundle` and the CRLs given (PEM)."""
    crl_file = directory / "crls.pem"
    crl_file.write_text(crls_pem)
    return run(["openssl", "verify", "-CAfile", bundle, "-untrusted", chain, "-crl_check_all", "-CRLfile", crl_file, chain])
