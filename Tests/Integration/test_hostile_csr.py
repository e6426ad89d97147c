"""Hostile CSRs over real HTTPS: malformed and truncated PEM and DER, broken signatures, CA=true, two URI SANs,
IP/email/DNS/other SANs, huge, tiny and odd keys, unknown curves, invalid and over-long SPIFFE IDs (in the CSR and
from the token). Each request carries a valid token, so each refusal is the CSR's; each must be a 4xx problem+json
with its stable code, no token echoed, and a denial audit record under its request id. Most CSRs are built byte by
byte (hostile_support's DER encoder), so a test controls exactly one defect; the controls at the top show the same
builder's well-formed requests are issued. One `sigil serve` (JWKS-file tokens, JSON-lines audit sink) serves the
module; the last test checks it survived."""

from __future__ import annotations

import base64
import ipaddress
import json
import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa, x25519

from hostile_support import (
    OID,
    Signer,
    alg_id,
    basic_constraints,
    bit_string,
    build_csr,
    cases,
    context,
    csr_der,
    ec_signer,
    ed25519_signer,
    ed448_signer,
    extension,
    extension_request,
    gn_directory_name,
    gn_dns,
    gn_email,
    gn_ip,
    gn_other_name,
    gn_registered_id,
    gn_uri,
    integer,
    multiprime_rsa_signer,
    name,
    null,
    octet_string,
    oid,
    pem,
    raw_rsa_signer,
    refusal,
    request_info,
    rsa_key_signer,
    san_extension,
    seq,
    set_of,
    spki_of,
    split_csr,
    start_rig,
    utf8_string,
)
from sigil_harness import OTHER_ID, WEB_ID, assert_issued, run

CSR_INVALID = refusal(400, "csr_invalid")
SIGNATURE_INVALID = refusal(400, "csr_signature_invalid")
KEY_NOT_ALLOWED = refusal(400, "key_not_allowed")
POLICY_DENIED = refusal(403, "policy_denied")
IDENTITY_MISMATCH = refusal(403, "identity_mismatch")


@pytest.fixture(scope="module")
def rig(module_servers, tmp_path_factory):
    return start_rig(module_servers, tmp_path_factory.mktemp("hostile-csr"))


# --- building blocks ----------------------------------------------------------------------------------


def good_der() -> bytes:
    return build_csr(ec_signer())


def good_pem() -> str:
    return pem(good_der())


def signature_bytes(signature_tlv: bytes) -> bytes:
    """The signature value inside a BIT STRING TLV (dropping tag, length and the unused-bits octet)."""
    header = 2 if signature_tlv[1] < 0x80 else 2 + (signature_tlv[1] & 0x7F)
    return signature_tlv[header + 1 :]


def resigned(mutate_info, signer: Signer | None = None) -> str:
    """A CSR whose info is changed by mutate_info(signer) AFTER the signature was made over the original."""
    signer = signer or ec_signer()
    info, algorithm, signature = split_csr(build_csr(signer))
    return pem(csr_der(mutate_info(signer), algorithm, signature_bytes(signature)))


def with_signature(transform, signer: Signer | None = None, algorithm: bytes | None = None, unused: int = 0) -> str:
    """The CSR with its signature value replaced by transform(value) and (optionally) another algorithm."""
    signer = signer or ec_signer()
    info, original_algorithm, signature = split_csr(build_csr(signer))
    return pem(csr_der(info, algorithm or original_algorithm, transform(signature_bytes(signature)), unused))


def flip_last_bit(value: bytes) -> bytes:
    return value[:-1] + bytes([value[-1] ^ 1])


def signed_info(info: bytes, signer: Signer) -> str:
    return pem(csr_der(info, signer.algorithm, signer.sign(info)))


def with_spki(spki: bytes, sans=None) -> str:
    """A CSR carrying `spki` (which the signer does not own), signed by a P-256 key: only the key is wrong."""
    signer = ec_signer()
    info = request_info(spki, [extension_request(san_extension(*(sans or [gn_uri(WEB_ID)])))])
    return signed_info(info, signer)


def library_signer(key) -> Signer:
    """A Signer for a `cryptography` EC/DSA private key (curves and key types Sigil must refuse)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return Signer(
            spki_of(key.public_key()), alg_id("ecdsa-with-SHA256"), lambda d: key.sign(d, ec.ECDSA(hashes.SHA256()))
        )
    if isinstance(key, dsa.DSAPrivateKey):
        return Signer(
            spki_of(key.public_key()), alg_id("2.16.840.1.101.3.4.3.2"), lambda d: key.sign(d, hashes.SHA256())
        )
    raise TypeError(key)


def rsa_2048_numbers() -> tuple[int, int]:
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers()
    return numbers.public_numbers.n, numbers.d


def openssl_csr(tmp_path, *newkey: str, extra: tuple[str, ...] = ()) -> str:
    """A CSR made by the `openssl` command (for key kinds Python cannot make: explicit curves, RSA-PSS keys)."""
    out = tmp_path / "openssl.csr"
    result = run(
        [
            "openssl",
            "req",
            "-new",
            *newkey,
            "-nodes",
            "-keyout",
            tmp_path / "openssl.key",
            "-subj",
            "/O=sigil-test",
            "-addext",
            f"subjectAltName=URI:{WEB_ID}",
            *extra,
            "-out",
            out,
        ]
    )
    assert result.returncode == 0, f"openssl could not make the CSR:\n{result}"
    return out.read_text()


def explicit_p256_csr(tmp_path) -> str:
    params = tmp_path / "explicit-p256.pem"
    result = run(["openssl", "ecparam", "-name", "prime256v1", "-param_enc", "explicit", "-out", params])
    assert result.returncode == 0, result
    return openssl_csr(tmp_path, "-newkey", f"ec:{params}")


# --- controls: what the builder makes well is issued ----------------------------------------------------


def _hand_signed_rsa() -> str:
    n, d = rsa_2048_numbers()
    return pem(build_csr(raw_rsa_signer(n, 65537, d)))


CONTROLS = {
    "hand-built-ec-p256": lambda: pem(build_csr(ec_signer())),
    "hand-built-ec-p384-sha384": lambda: pem(build_csr(ec_signer(ec.SECP384R1(), hashes.SHA384()))),
    "hand-built-ed25519": lambda: pem(build_csr(ed25519_signer())),
    "hand-built-rsa-2048": lambda: pem(build_csr(rsa_key_signer(rsa.generate_private_key(65537, 2048)))),
    "hand-signed-pkcs1-rsa-2048": _hand_signed_rsa,
    "multi-prime-rsa-2048": lambda: pem(build_csr(multiprime_rsa_signer(2048))),
    "without-any-san": lambda: pem(build_csr(ec_signer(), sans=[])),
    "ca-false-requested": lambda: pem(build_csr(ec_signer(), extensions=[basic_constraints(False)])),
}


@pytest.mark.parametrize("make", list(CONTROLS.values()), ids=list(CONTROLS))
def test_well_formed_hand_built_csr_is_issued(rig, make):
    """Controls: the DER builder, the hand-made PKCS#1 signer and the multi-prime RSA keys make requests Sigil
    issues, so each refusal below is caused by the one defect its case introduces."""
    assert_issued(rig.post_csr(make()), WEB_ID)


# --- malformed and truncated PEM ------------------------------------------------------------------------


def _pem_cut(fraction: float):
    def make(_rig):
        text = good_pem()
        return text[: int(len(text) * fraction)]

    return make


def _pem_replace(old: str, new: str, count: int = -1):
    return lambda _rig: good_pem().replace(old, new, count)


def _pem_body_edit(edit):
    def make(_rig):
        lines = good_pem().splitlines()
        return "\n".join([lines[0], *edit(lines[1:-1]), lines[-1]]) + "\n"

    return make


def _bundle_as_request(rig):
    return rig.server.bundle.read_text().replace("CERTIFICATE", "CERTIFICATE REQUEST")


PEM_CASES = {
    "cut-at-10-percent": CSR_INVALID(_pem_cut(0.1)),
    "cut-at-half": CSR_INVALID(_pem_cut(0.5)),
    "cut-inside-end-line": CSR_INVALID(lambda _r: good_pem()[:-12]),
    "no-end-line": CSR_INVALID(lambda _r: good_pem().rsplit("-----END", 1)[0]),
    "begin-line-only": CSR_INVALID(lambda _r: "-----BEGIN CERTIFICATE REQUEST-----\n"),
    "end-line-before-begin-line": CSR_INVALID(
        lambda _r: "-----END CERTIFICATE REQUEST-----\n" + good_pem().rsplit("-----END", 1)[0]
    ),
    "all-on-one-line": CSR_INVALID(lambda _r: good_pem().replace("\n", "")),
    "end-label-differs": CSR_INVALID(_pem_replace("END CERTIFICATE REQUEST", "END CERTIFICATE")),
    "label-certificate": CSR_INVALID(_pem_replace("CERTIFICATE REQUEST", "CERTIFICATE")),
    "label-x509-crl": CSR_INVALID(_pem_replace("CERTIFICATE REQUEST", "X509 CRL")),
    "two-identical-requests": CSR_INVALID(lambda _r: good_pem() * 2),
    "two-different-requests": CSR_INVALID(lambda _r: good_pem() + good_pem()),
    "invalid-base64-characters": CSR_INVALID(
        _pem_body_edit(lambda body: [body[0][:10] + "!*?#" + body[0][14:], *body[1:]])
    ),
    "padding-in-the-middle": CSR_INVALID(_pem_body_edit(lambda body: [body[0][:60] + "====", *body[1:]])),
    "body-line-dropped": CSR_INVALID(_pem_body_edit(lambda body: body[:1] + body[2:])),
    "empty-body": CSR_INVALID(lambda _r: "-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"),
    "rfc1421-encryption-headers": CSR_INVALID(
        _pem_body_edit(
            lambda body: ["Proc-Type: 4,ENCRYPTED", "DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF", "", *body]
        )
    ),
    "nul-bytes-in-body": CSR_INVALID(
        _pem_body_edit(lambda body: [body[0][:20] + "\x00\x00" + body[0][20:], *body[1:]])
    ),
    "whitespace-only": CSR_INVALID(lambda _r: " \n\t\r\n "),
    "typographic-dashes": CSR_INVALID(_pem_replace("-----", "\u2014\u2013\u2014\u2013\u2014")),
    "base64-der-without-armor": CSR_INVALID(lambda _r: base64.b64encode(good_der()).decode()),
    "der-bytes-as-latin1-text": CSR_INVALID(lambda _r: good_der().decode("latin-1")),
    "der-as-hex": CSR_INVALID(lambda _r: good_der().hex()),
    "certificate-in-request-armor": CSR_INVALID(_bundle_as_request),
    "45-kib-of-random-der": CSR_INVALID(lambda _r: pem(os.urandom(45_000))),
}


@pytest.mark.parametrize("make, status, code", cases(PEM_CASES))
def test_malformed_pem_is_refused(rig, make, status, code):
    rig.refused(rig.post_csr(make(rig)), status, code)


@pytest.mark.parametrize("armor", ["PRIVATE KEY", "CERTIFICATE REQUEST"], ids=["pkcs8-pem", "pkcs8-in-request-armor"])
def test_a_private_key_sent_as_csr_is_refused_and_not_echoed(rig, armor):
    key = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    text = key.replace("PRIVATE KEY", armor)
    response = rig.post_csr(text)
    rig.refused(response, 400, "csr_invalid")
    body_lines = [line for line in key.splitlines() if not line.startswith("-----")]
    for line in body_lines:
        assert line not in response.text, "the refusal echoes private key material"
        assert line not in rig.sink.read_text(), "the audit sink holds private key material"


# --- malformed DER inside a well-formed PEM frame -------------------------------------------------------


def _der(make_bytes):
    return lambda _r: pem(make_bytes())


def _parts():
    return split_csr(good_der())


def _ber_indefinite() -> bytes:
    info, algorithm, signature = _parts()
    return b"\x30\x80" + info + algorithm + signature + b"\x00\x00"


def _non_minimal_length() -> bytes:
    body = b"".join(_parts())
    return b"\x30\x84" + len(body).to_bytes(4, "big") + body


def _versioned(version: int):
    return lambda: build_csr(ec_signer(), version=version)


def _info_variant(make_info):
    def make() -> bytes:
        signer = ec_signer()
        info = make_info(signer)
        return csr_der(info, signer.algorithm, signer.sign(info))

    return make


DER_CASES = {
    "truncated-by-one-byte": CSR_INVALID(_der(lambda: good_der()[:-1])),
    "truncated-to-half": CSR_INVALID(_der(lambda: good_der()[: len(good_der()) // 2])),
    "tag-and-length-only": CSR_INVALID(_der(lambda: good_der()[:4])),
    "trailing-zero-bytes": CSR_INVALID(_der(lambda: good_der() + b"\x00\x00")),
    "followed-by-a-second-request": CSR_INVALID(_der(lambda: good_der() + good_der())),
    "random-bytes": CSR_INVALID(_der(lambda: os.urandom(300))),
    "empty-sequence": CSR_INVALID(_der(lambda: b"\x30\x00")),
    "set-instead-of-sequence": CSR_INVALID(_der(lambda: b"\x31" + good_der()[1:])),
    "length-claims-4-gib": CSR_INVALID(_der(lambda: b"\x30\x84\xff\xff\xff\xff" + good_der()[4:])),
    "length-of-length-8-bytes": CSR_INVALID(_der(lambda: b"\x30\x88" + b"\xff" * 8 + good_der()[4:])),
    "nested-2000-deep": CSR_INVALID(_der(lambda: b"\x30\x80" * 2000 + b"\x00\x00" * 2000)),
    "request-info-only": CSR_INVALID(_der(lambda: _parts()[0])),
    "without-signature": CSR_INVALID(_der(lambda: seq(*_parts()[:2]))),
    "extra-field-after-signature": CSR_INVALID(_der(lambda: seq(*_parts(), integer(0)))),
    "info-without-public-key": CSR_INVALID(
        _der(_info_variant(lambda s: seq(integer(0), name(), context(0, b"", True))))
    ),
    "version-as-utf8-string": CSR_INVALID(
        _der(_info_variant(lambda s: seq(utf8_string("0"), name(), s.spki, context(0, b"", True))))
    ),
    "subject-is-an-integer": CSR_INVALID(
        _der(_info_variant(lambda s: seq(integer(0), integer(7), s.spki, context(0, b"", True))))
    ),
    "ber-indefinite-length": CSR_INVALID(_der(_ber_indefinite)),
    "non-minimal-length": CSR_INVALID(_der(_non_minimal_length)),
    "version-1": CSR_INVALID(_der(_versioned(1))),
    "version-negative": CSR_INVALID(_der(_versioned(-1))),
    "attributes-field-missing": CSR_INVALID(
        _der(_info_variant(lambda s: seq(integer(0), name(), s.spki)))
    ),
}


@pytest.mark.parametrize("make, status, code", cases(DER_CASES))
def test_malformed_der_is_refused(rig, make, status, code):
    rig.refused(rig.post_csr(make(rig)), status, code)


# --- bad signatures (no proof of possession) ------------------------------------------------------------


def _other_key_signature(make_signer=ec_signer):
    signer, other = make_signer(), make_signer()
    info = split_csr(build_csr(signer))[0]
    return pem(csr_der(info, signer.algorithm, other.sign(info)))


def _key_swapped(signer):
    return request_info(ec_signer().spki, [extension_request(san_extension(gn_uri(WEB_ID)))])


SIGNATURE_CASES = {
    "ec-last-bit-flipped": SIGNATURE_INVALID(lambda: with_signature(flip_last_bit)),
    "ec-truncated-to-half": SIGNATURE_INVALID(lambda: with_signature(lambda v: v[: len(v) // 2])),
    "ec-empty": SIGNATURE_INVALID(lambda: with_signature(lambda v: b"")),
    "ec-all-zero": SIGNATURE_INVALID(lambda: with_signature(lambda v: bytes(len(v)))),
    "ec-seven-unused-bits": SIGNATURE_INVALID(lambda: with_signature(lambda v: v, unused=7)),
    "ec-by-another-key": SIGNATURE_INVALID(lambda: _other_key_signature(ec_signer)),
    "ec-labelled-ecdsa-sha384": SIGNATURE_INVALID(
        lambda: with_signature(lambda v: v, algorithm=alg_id("ecdsa-with-SHA384"))
    ),
    "ec-labelled-ecdsa-sha1": SIGNATURE_INVALID(
        lambda: with_signature(lambda v: v, algorithm=alg_id("1.2.840.10045.4.1"))
    ),
    "ec-labelled-rsa-sha256": SIGNATURE_INVALID(
        lambda: with_signature(lambda v: v, algorithm=alg_id("sha256WithRSAEncryption", null()))
    ),
    "ec-labelled-md5-rsa": SIGNATURE_INVALID(
        lambda: with_signature(lambda v: v, algorithm=alg_id("md5WithRSAEncryption", null()))
    ),
    "ec-labelled-ed25519": SIGNATURE_INVALID(lambda: with_signature(lambda v: v, algorithm=alg_id("Ed25519"))),
    "ec-labelled-unknown-oid": SIGNATURE_INVALID(
        lambda: with_signature(lambda v: v, algorithm=alg_id("1.3.6.1.4.1.99999.7"))
    ),
    "san-changed-after-signing": SIGNATURE_INVALID(
        lambda: resigned(lambda s: request_info(s.spki, [extension_request(san_extension(gn_uri(OTHER_ID)))]))
    ),
    "subject-changed-after-signing": SIGNATURE_INVALID(
        lambda: resigned(
            lambda s: request_info(s.spki, [extension_request(san_extension(gn_uri(WEB_ID)))], name("evil"))
        )
    ),
    "ca-true-added-after-signing": SIGNATURE_INVALID(
        lambda: resigned(
            lambda s: request_info(s.spki, [extension_request(san_extension(gn_uri(WEB_ID)), basic_constraints(True))])
        )
    ),
    "key-swapped-after-signing": SIGNATURE_INVALID(lambda: resigned(_key_swapped)),
    "rsa-last-bit-flipped": SIGNATURE_INVALID(
        lambda: with_signature(flip_last_bit, rsa_key_signer(rsa.generate_private_key(65537, 2048)))
    ),
    "rsa-pkcs1-labelled-pss": SIGNATURE_INVALID(
        lambda: with_signature(
            lambda v: v, rsa_key_signer(rsa.generate_private_key(65537, 2048)), alg_id("1.2.840.113549.1.1.10", seq())
        )
    ),
    "rsa-by-another-key": SIGNATURE_INVALID(lambda: _other_key_signature(lambda: multiprime_rsa_signer(2048))),
    "ed25519-last-bit-flipped": SIGNATURE_INVALID(lambda: with_signature(flip_last_bit, ed25519_signer())),
}


@pytest.mark.parametrize("make, status, code", cases(SIGNATURE_CASES))
def test_csr_with_a_bad_signature_is_refused(rig, make, status, code):
    rig.refused(rig.post_csr(make()), status, code)


# --- keys: huge, tiny, odd types, unknown curves ------------------------------------------------------


def _rsa_bits(bits: int):
    return lambda _tmp: pem(build_csr(multiprime_rsa_signer(bits)))


def _curve(curve):
    return lambda _tmp: pem(build_csr(library_signer(ec.generate_private_key(curve))))


def _rsa_exponent_one(_tmp) -> str:
    """e = 1: the PKCS#1 'signature' is the encoded digest itself, so anyone can 'prove possession'."""
    n, _ = rsa_2048_numbers()
    return pem(build_csr(raw_rsa_signer(n, 1, 1)))


def _unknown_curve_oid(_tmp) -> str:
    spki = seq(seq(oid(OID["ecPublicKey"]), oid("1.3.6.1.4.1.99999.1")), bit_string(b"\x04" + os.urandom(64)))
    return with_spki(spki)


def _off_curve_point(_tmp) -> str:
    spki = seq(seq(oid(OID["ecPublicKey"]), oid(OID["prime256v1"])), bit_string(b"\x04" + os.urandom(64)))
    return with_spki(spki)


def _point_at_infinity(_tmp) -> str:
    return with_spki(seq(seq(oid(OID["ecPublicKey"]), oid(OID["prime256v1"])), bit_string(b"\x00")))


def _x25519(_tmp) -> str:
    """An X25519 key cannot sign: no proof of possession is possible, and its type is not allowed."""
    signer = Signer(spki_of(x25519.X25519PrivateKey.generate().public_key()), alg_id("Ed25519"), lambda d: bytes(64))
    return pem(build_csr(signer))



KEY_CASES = {
    "rsa-512": KEY_NOT_ALLOWED(_rsa_bits(512)),
    "rsa-1536": KEY_NOT_ALLOWED(_rsa_bits(1536)),
    "rsa-2047": KEY_NOT_ALLOWED(_rsa_bits(2047)),
    "rsa-2049": KEY_NOT_ALLOWED(_rsa_bits(2049)),
    "rsa-4095": KEY_NOT_ALLOWED(_rsa_bits(4095)),
    "rsa-8192": KEY_NOT_ALLOWED(_rsa_bits(8192)),
    "rsa-16384": KEY_NOT_ALLOWED(_rsa_bits(16384)),
    "ec-secp256k1": KEY_NOT_ALLOWED(_curve(ec.SECP256K1())),
    "ec-brainpool-p256r1": KEY_NOT_ALLOWED(_curve(ec.BrainpoolP256R1())),
    "ec-brainpool-p384r1": KEY_NOT_ALLOWED(_curve(ec.BrainpoolP384R1())),
    "ec-brainpool-p512r1": KEY_NOT_ALLOWED(_curve(ec.BrainpoolP512R1())),
    "ec-p521": KEY_NOT_ALLOWED(_curve(ec.SECP521R1())),
    "ec-p224": KEY_NOT_ALLOWED(_curve(ec.SECP224R1())),
    "ec-p192": KEY_NOT_ALLOWED(_curve(ec.SECP192R1())),
    "ed448": KEY_NOT_ALLOWED(lambda _tmp: pem(build_csr(ed448_signer()))),
    "dsa-2048": KEY_NOT_ALLOWED(lambda _tmp: pem(build_csr(library_signer(dsa.generate_private_key(2048))))),
    "rsa-pss-key": KEY_NOT_ALLOWED(
        lambda tmp: openssl_csr(tmp, "-newkey", "rsa-pss", "-pkeyopt", "rsa_keygen_bits:2048")
    ),
    # e=1: X509_REQ_verify accepts the padded digest as its own signature, so possession would prove nothing.
    "rsa-public-exponent-1": KEY_NOT_ALLOWED(_rsa_exponent_one),
    # RFC 5480 §2.1.1: named curves only; Go and BoringSSL refuse explicit parameters.
    "ec-p256-explicit-parameters": KEY_NOT_ALLOWED(explicit_p256_csr),
    "rsa-16385": KEY_NOT_ALLOWED(_rsa_bits(16385)),
    "rsa-24576": KEY_NOT_ALLOWED(_rsa_bits(24576)),
    "ec-unknown-curve-oid": KEY_NOT_ALLOWED(_unknown_curve_oid),
    "ec-p256-point-off-the-curve": KEY_NOT_ALLOWED(_off_curve_point),
    "ec-p256-point-at-infinity": KEY_NOT_ALLOWED(_point_at_infinity),
    "x25519-key": KEY_NOT_ALLOWED(_x25519),
}


@pytest.mark.parametrize("make, status, code", cases(KEY_CASES))
def test_key_outside_policy_is_refused(rig, tmp_path, make, status, code):
    rig.refused(rig.post_csr(make(tmp_path)), status, code)


# --- CA=true and other requested extensions -------------------------------------------------------------


def _ec(sans=None, extensions=(), **kwargs):
    return lambda: pem(build_csr(ec_signer(), sans=sans, extensions=list(extensions), **kwargs))


EXTENSION_CASES = {
    "ca-true-critical": POLICY_DENIED(_ec(extensions=[basic_constraints(True)])),
    "ca-true-not-critical": POLICY_DENIED(_ec(extensions=[basic_constraints(True, critical=False)])),
    "ca-true-pathlen-0": POLICY_DENIED(_ec(extensions=[basic_constraints(True, 0)])),
    "ca-true-pathlen-2-to-the-70": POLICY_DENIED(_ec(extensions=[basic_constraints(True, 2**70)])),
    "ca-true-for-another-identity": POLICY_DENIED(_ec(sans=[gn_uri(OTHER_ID)], extensions=[basic_constraints(True)])),
    "ca-true-without-san": POLICY_DENIED(_ec(sans=[], extensions=[basic_constraints(True)])),
    "ca-true-rsa-key": POLICY_DENIED(
        lambda: pem(
            build_csr(rsa_key_signer(rsa.generate_private_key(65537, 2048)), extensions=[basic_constraints(True)])
        )
    ),
    "ca-true-ed25519-key": POLICY_DENIED(
        lambda: pem(build_csr(ed25519_signer(), extensions=[basic_constraints(True)]))
    ),
    "basic-constraints-undecodable": CSR_INVALID(
        _ec(extensions=[extension(OID["basicConstraints"], b"\x01\x02garbage")])
    ),
    "basic-constraints-an-integer": CSR_INVALID(_ec(extensions=[extension(OID["basicConstraints"], integer(1))])),
    # OpenSSL reads only the first extensionRequest attribute; two of them make the request malformed.
    "ca-true-in-a-second-extension-request": CSR_INVALID(
        _ec(
            sans=[],
            attributes=[extension_request(san_extension(gn_uri(WEB_ID))), extension_request(basic_constraints(True))],
        )
    ),
    "extension-request-undecodable": CSR_INVALID(
        _ec(sans=[], attributes=[seq(oid(OID["extensionRequest"]), set_of(octet_string(b"not extensions")))])
    ),
}


@pytest.mark.parametrize("make, status, code", cases(EXTENSION_CASES))
def test_csr_asking_for_a_ca_or_undecodable_extensions_is_refused(rig, make, status, code):
    rig.refused(rig.post_csr(make()), status, code)


def test_ca_true_csr_made_by_openssl_is_refused(rig, make_csr):
    csr = make_csr(
        "ca", extensions=["basicConstraints=critical,CA:TRUE,pathlen:1", "keyUsage=critical,keyCertSign,cRLSign"]
    )
    rig.refused(rig.post_csr(csr.path.read_text()), 403, "policy_denied")


# --- subject alternative names --------------------------------------------------------------------------

SAN_CASES = {
    "web-and-other-uri": IDENTITY_MISMATCH(_ec(sans=[gn_uri(WEB_ID), gn_uri(OTHER_ID)])),
    "other-then-web-uri": IDENTITY_MISMATCH(_ec(sans=[gn_uri(OTHER_ID), gn_uri(WEB_ID)])),
    "web-uri-in-two-san-extensions": IDENTITY_MISMATCH(
        _ec(sans=[], extensions=[san_extension(gn_uri(WEB_ID)), san_extension(gn_uri(WEB_ID))])
    ),
    "web-and-other-in-two-san-extensions": IDENTITY_MISMATCH(
        _ec(sans=[], extensions=[san_extension(gn_uri(WEB_ID)), san_extension(gn_uri(OTHER_ID))])
    ),
    "fifty-web-uris": IDENTITY_MISMATCH(_ec(sans=[gn_uri(WEB_ID)] * 50)),
    "web-and-https-uri": IDENTITY_MISMATCH(_ec(sans=[gn_uri(WEB_ID), gn_uri("https://web.default.svc/")])),
    "only-an-https-uri": IDENTITY_MISMATCH(_ec(sans=[gn_uri("https://web.default.svc/")])),
    "web-id-in-another-trust-domain": IDENTITY_MISMATCH(_ec(sans=[gn_uri("spiffe://example.org/ns/default/sa/web")])),
    "empty-uri": IDENTITY_MISMATCH(_ec(sans=[gn_uri("")])),
    "ipv4-san": POLICY_DENIED(_ec(sans=[gn_uri(WEB_ID), gn_ip(ipaddress.ip_address("10.0.0.1").packed)])),
    "ipv6-san": POLICY_DENIED(_ec(sans=[gn_uri(WEB_ID), gn_ip(ipaddress.ip_address("::1").packed)])),
    "ip-san-alone": POLICY_DENIED(_ec(sans=[gn_ip(ipaddress.ip_address("127.0.0.1").packed)])),
    "ip-san-of-5-bytes": POLICY_DENIED(_ec(sans=[gn_uri(WEB_ID), gn_ip(b"\x01\x02\x03\x04\x05")])),
    "email-san": POLICY_DENIED(_ec(sans=[gn_uri(WEB_ID), gn_email("web@default.svc")])),
    "email-san-alone": POLICY_DENIED(_ec(sans=[gn_email("root@localhost")])),
    "dns-san": POLICY_DENIED(_ec(sans=[gn_uri(WEB_ID), gn_dns("web.default.svc.cluster.local")])),
    "dns-wildcard-san": POLICY_DENIED(_ec(sans=[gn_uri(WEB_ID), gn_dns("*.default.svc.cluster.local")])),
    "spiffe-id-as-dns-san": POLICY_DENIED(_ec(sans=[gn_dns(WEB_ID)])),
    "upn-other-name-san": POLICY_DENIED(
        _ec(sans=[gn_uri(WEB_ID), gn_other_name("1.3.6.1.4.1.311.20.2.3", utf8_string("admin@corp"))])
    ),
    "directory-name-san": POLICY_DENIED(_ec(sans=[gn_uri(WEB_ID), gn_directory_name("Sigil")])),
    "registered-id-san": POLICY_DENIED(_ec(sans=[gn_uri(WEB_ID), gn_registered_id("1.2.3.4")])),
    "san-undecodable": CSR_INVALID(_ec(sans=[], extensions=[extension(OID["subjectAltName"], b"\x30\x05garb")])),
}


@pytest.mark.parametrize("make, status, code", cases(SAN_CASES))
def test_csr_with_forbidden_sans_is_refused(rig, make, status, code):
    rig.refused(rig.post_csr(make()), status, code)


def test_ip_and_email_sans_made_by_openssl_are_refused(rig, make_csr):
    csr = make_csr("ip-email", sans=[f"URI:{WEB_ID}", "IP:10.1.2.3", "email:web@example.org"])
    rig.refused(rig.post_csr(csr.path.read_text()), 403, "policy_denied")


# --- SPIFFE IDs: invalid or over-long in the CSR (never equal the caller's identity) -------------------

BAD_URI_SANS = {
    "uppercase-trust-domain": "spiffe://Cluster.local/ns/default/sa/web",
    "uppercase-scheme": "SPIFFE://cluster.local/ns/default/sa/web",
    "http-scheme": "http://cluster.local/ns/default/sa/web",
    "trailing-slash": WEB_ID + "/",
    "port": "spiffe://cluster.local:8443/ns/default/sa/web",
    "userinfo": "spiffe://admin@cluster.local/ns/default/sa/web",
    "query": WEB_ID + "?x=1",
    "fragment": WEB_ID + "#f",
    "percent-encoded": "spiffe://cluster.local/ns/default/sa/w%65b",
    "dot-segment": "spiffe://cluster.local/ns/default/sa/./web",
    "dot-dot-segment": "spiffe://cluster.local/ns/kube-system/../default/sa/web",
    "empty-segment": "spiffe://cluster.local/ns//default/sa/web",
    "trust-domain-only": "spiffe://cluster.local",
    "prefix-of-the-identity": WEB_ID[:-1],
    "identity-plus-segment": WEB_ID + "/admin",
    "leading-space": " " + WEB_ID,
    "nul-byte-then-suffix": WEB_ID + "\x00.evil",
    "unicode-homoglyph": WEB_ID.replace("web", "w\u0435b"),
    "over-long-3000-bytes": WEB_ID + "/" + "a" * 3000,
    "over-long-trust-domain": "spiffe://" + "a" * 300 + ".local/ns/default/sa/web",
}


@pytest.mark.parametrize("uri", list(BAD_URI_SANS.values()), ids=list(BAD_URI_SANS))
def test_csr_uri_san_that_is_not_exactly_the_identity_is_refused(rig, uri):
    csr = pem(build_csr(ec_signer(), sans=[gn_uri(uri.encode("utf-8"))]))
    rig.refused(rig.post_csr(csr), 403, "identity_mismatch")


# --- SPIFFE IDs: invalid or over-long from the token's namespace / service account ----------------------

BAD_TOKEN_IDENTITIES = {
    "namespace-2100-bytes": ("n" * 2100, "web"),
    "service-account-2100-bytes": ("default", "s" * 2100),
    "id-just-over-2048-bytes": ("n" * 1010, "s" * 1010),
    "namespace-with-slashes": ("prod/sa/admin/ns/x", "web"),
    "empty-namespace": ("", "web"),
    "empty-service-account": ("default", ""),
    "dot-dot-service-account": ("default", ".."),
    "dot-namespace": (".", "web"),
    "percent-in-namespace": ("de%66ault", "web"),
    "question-mark-in-service-account": ("default", "web?admin=1"),
    "hash-in-service-account": ("default", "web#x"),
    "space-in-namespace": ("de fault", "web"),
    "nul-in-namespace": ("default\x00", "web"),
    "non-ascii-namespace": ("d\u00e9fault", "web"),
    "colon-in-service-account": ("default", "web:admin"),
}


@pytest.mark.parametrize(
    "namespace, service_account", list(BAD_TOKEN_IDENTITIES.values()), ids=list(BAD_TOKEN_IDENTITIES)
)
def test_token_identity_that_is_not_a_valid_spiffe_id_is_refused(rig, namespace, service_account):
    token = rig.token(namespace=namespace, service_account=service_account)
    csr = pem(build_csr(ec_signer(), sans=[]))
    rig.refused(rig.post(json.dumps({"csr": csr}), token), 400, "invalid_spiffe_id", token=token)


# --- all at once ----------------------------------------------------------------------------------------


def test_concurrent_hostile_csrs_keep_their_codes(rig, tmp_path):
    """40 requests at once, 8 in flight, hostile ones of every family mixed with good ones: each still gets its own
    code and audit record (the group-committed audit path under concurrency), and the good ones are issued."""
    from concurrent.futures import ThreadPoolExecutor

    picks = [
        (
            PEM_CASES,
            ["cut-at-half", "two-different-requests", "base64-der-without-armor", "empty-body"],
            lambda m: m(rig),
        ),
        (DER_CASES, ["truncated-by-one-byte", "length-claims-4-gib", "followed-by-a-second-request"], lambda m: m(rig)),
        (
            SIGNATURE_CASES,
            ["ec-last-bit-flipped", "san-changed-after-signing", "ec-labelled-unknown-oid"],
            lambda m: m(),
        ),
        (KEY_CASES, ["rsa-1536", "ec-secp256k1", "ed448"], lambda m: m(tmp_path)),
        (EXTENSION_CASES, ["ca-true-critical", "basic-constraints-undecodable"], lambda m: m()),
        (SAN_CASES, ["web-and-other-uri", "ipv4-san", "email-san-alone"], lambda m: m()),
    ]
    work = []
    for table, names, build in picks:
        for case in names:
            make, status, code, *_ = table[case]
            work.append((build(make), status, code))
    work = (work + [(CONTROLS["hand-built-ec-p256"](), 201, None)] * 4) * 2
    tokens = [rig.token() for _ in work]

    def send(item):
        (csr, _status, _code), token = item
        return rig.post(json.dumps({"csr": csr}), token)

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(send, zip(work, tokens, strict=True)))
    for (_csr, status, code), token, response in zip(work, tokens, responses, strict=True):
        if status == 201:
            assert_issued(response, WEB_ID)
        else:
            rig.refused(response, status, code, token=token)


# --- the server survived --------------------------------------------------------------------------------


def test_server_survived_every_hostile_csr(rig, sigil):
    """Last in the module (see HostileRig.assert_survived)."""
    rig.assert_survived(sigil)
