"""`sigil bundle`: the SPIFFE trust bundle (JWK set) and the PEM roots."""
from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from spiffe import TrustDomain, X509Bundle

from sigil_harness import TRUST_DOMAIN, load_certs


def b64url_uint(value: int, length: int | None = None) -> str:
    length = length or max(1, (value.bit_length() + 7) // 8)
    return base64.urlsafe_b64encode(value.to_bytes(length, "big")).rstrip(b"=").decode()


def spiffe_bundle(sigil, data_dir) -> dict:
    result = sigil.ok("bundle", "--data-dir", data_dir, "--format", "spiffe")
    return json.loads(result.stdout)


def test_spiffe_bundle_is_a_jwk_set_of_x509_authorities(sigil, data_dir):
    bundle = spiffe_bundle(sigil, data_dir)
    roots = load_certs(data_dir / "bundle.pem")

    assert isinstance(bundle["spiffe_sequence"], int) and bundle["spiffe_sequence"] >= 1, bundle
    assert isinstance(bundle["spiffe_refresh_hint"], int) and bundle["spiffe_refresh_hint"] > 0, bundle
    assert len(bundle["keys"]) == len(roots) == 1, bundle
    for key in bundle["keys"]:
        assert key["use"] == "x509-svid", key
        assert "kid" not in key, key
        assert len(key["x5c"]) == 1, key
        # x5c is standard base64 (RFC 7517 §4.7), not base64url: validate=True rejects '-' and '_'.
        base64.b64decode(key["x5c"][0], validate=True)


def test_spiffe_bundle_parses_with_py_spiffe(sigil, data_dir):
    bundle = spiffe_bundle(sigil, data_dir)
    der = b"".join(base64.b64decode(key["x5c"][0], validate=True) for key in bundle["keys"])

    parsed = X509Bundle.parse_raw(TrustDomain(TRUST_DOMAIN), der)

    assert str(parsed.trust_domain) == TRUST_DOMAIN
    assert parsed.x509_authorities == set(load_certs(data_dir / "bundle.pem"))


def test_refresh_hint_is_configurable(sigil, data_dir):
    result = sigil.ok("bundle", "--data-dir", data_dir, "--format", "spiffe", "--refresh-hint", "2m")
    assert json.loads(result.stdout)["spiffe_refresh_hint"] == 120


@pytest.mark.parametrize(
    "key_type, kty, crv",
    [("ec-p256", "EC", "P-256"), ("ec-p384", "EC", "P-384"), ("rsa-2048", "RSA", None), ("ed25519", "OKP", "Ed25519")],
)
def test_jwk_public_key_matches_the_root_certificate(sigil, tmp_path, key_type, kty, crv):
    data_dir = tmp_path / "pki"
    sigil.ok("init", "--data-dir", data_dir, "--key-type", key_type)
    (key,) = spiffe_bundle(sigil, data_dir)["keys"]
    (root,) = load_certs(data_dir / "bundle.pem")

    assert key["kty"] == kty, key
    assert base64.b64decode(key["x5c"][0]) == root.public_bytes(serialization.Encoding.DER)
    public = root.public_key()
    if kty == "EC":
        assert isinstance(public, ec.EllipticCurvePublicKey)
        size = (public.curve.key_size + 7) // 8
        numbers = public.public_numbers()
        assert (key["crv"], key["x"], key["y"]) == (crv, b64url_uint(numbers.x, size), b64url_uint(numbers.y, size))
    elif kty == "RSA":
        assert isinstance(public, rsa.RSAPublicKey)
        numbers = public.public_numbers()
        assert (key["n"], key["e"]) == (b64url_uint(numbers.n), b64url_uint(numbers.e))
    else:
        assert isinstance(public, ed25519.Ed25519PublicKey)
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert (key["crv"], key["x"]) == (crv, base64.urlsafe_b64encode(raw).rstrip(b"=").decode())


def test_pem_bundle_is_the_bundle_file(sigil, data_dir):
    default = sigil.ok("bundle", "--data-dir", data_dir)
    explicit = sigil.ok("bundle", "--data-dir", data_dir, "--format", "pem")
    assert default.stdout == explicit.stdout
    assert x509.load_pem_x509_certificates(default.stdout.encode()) == load_certs(data_dir / "bundle.pem")
