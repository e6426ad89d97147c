"""Hostile bearer tokens over real HTTPS, against `sigil serve --token-issuer … --token-jwks FILE`: expired, not yet
valid, wrong issuer and audience, `alg: none` in every spelling, HS* keyed with the public key, `kid`s pointing
nowhere or at a key of another type (RSA, EC of another curve, a published Ed25519 key), `jku`/`x5u`/`jwk`/`x5c`/
`crit` headers, tampered and malformed compact serialisations, duplicate header parameters and claims, huge and
deeply nested tokens, and bearer tokens sent the wrong way. The CSR is always good, so each refusal is the
token's: a 401 (or 400 for an identity that is no SPIFFE ID) problem+json with its exact code, the token never
echoed, logged or audited, and a denial audit record carrying an HMAC of the token. Test ids name the attack.

test_server_tokens.py covers the same codes for a few of these through OIDC discovery; this module is the long
tail, in JWKS-file mode, with the audit record of every refusal checked."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from hostile_support import (
    RawConnection,
    TOKEN_ISSUER,
    assert_raw_problem,
    b64u,
    cases,
    http_request,
    refusal,
    sign_text,
    start_rig,
)
from sigil_harness import WEB_ID, assert_issued, token_parts

DEL = object()  # claims(DEL) removes a claim
ED25519_KEY = ed25519.Ed25519PrivateKey.generate()


def _okp_jwk() -> dict:
    jwk = jwt.algorithms.OKPAlgorithm.to_jwk(ED25519_KEY.public_key(), as_dict=True)
    jwk.update(kid="ed-a", use="sig", alg="EdDSA")
    return jwk


INVALID = refusal(401, "token_invalid")
EXPIRED = refusal(401, "token_expired")
AUDIENCE = refusal(401, "audience_mismatch")


@pytest.fixture(scope="module")
def rig(module_servers, tmp_path_factory):
    """JWKS: rsa-a (RS256), ec-a (ES256), ec384-a (ES384), ps-a (PS256) and ed-a (an Ed25519 OKP key, which Sigil
    must never use); rogue-rsa and rogue-ec are the attacker's, unpublished."""
    return start_rig(module_servers, tmp_path_factory.mktemp("hostile-tokens"), extra_jwks=[_okp_jwk()])


# --- token makers -------------------------------------------------------------------------------------


def claims(rig, **changes) -> dict:
    """The issuer's projected-token claims for default/web with `changes` (callables get the claims; DEL drops)."""
    result = rig.issuer.claims()
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is DEL:
            del result[key]
        else:
            result[key] = value(result) if callable(value) else value
    return result


def signed(rig, payload, key: str = "rsa-a", sign_alg: str | None = None, **header) -> str:
    """Signed by the issuer's key `key` with `sign_alg` (default: the key's algorithm); header {"alg", "kid": key,
    "typ": "JWT"} updated by `header` (DEL drops a member), so the header may lie about either."""
    sign_alg = sign_alg or rig.issuer.keys[key][1]
    head = {"alg": sign_alg, "kid": key, "typ": "JWT"}
    for name, value in header.items():
        if value is DEL:
            head.pop(name, None)
        else:
            head[name] = value
    return sign_text(rig.issuer, key, head, payload, sign_alg)


def claim(**changes):
    return lambda rig: signed(rig, claims(rig, **changes))


def now() -> int:
    return int(time.time())


def with_header(header_text: str, kid: str = "rsa-a", alg: str = "RS256"):
    """A header given as exact JSON text (duplicates, odd types), signed by `kid` with `alg`."""
    return lambda rig: sign_text(rig.issuer, kid, header_text, claims(rig), alg)


def with_payload_text(edit, kid: str = "rsa-a"):
    """A payload given as exact JSON text: edit(json text of the good claims) -> text; really signed."""
    return lambda rig: sign_text(
        rig.issuer, kid, {"alg": "RS256", "kid": kid, "typ": "JWT"}, edit(json.dumps(claims(rig)))
    )


def unsigned(header: dict, signature: bytes = b""):
    return lambda rig: b64u(json.dumps(header)) + "." + b64u(json.dumps(claims(rig))) + "." + b64u(signature)


def hmac_signed(alg: str, key_bytes):
    """The RS/HS confusion: an HMAC keyed with bytes of the RSA public key, naming its kid."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]

    def make(rig):
        signing_input = (
            b64u(json.dumps({"alg": alg, "kid": "rsa-a", "typ": "JWT"})) + "." + b64u(json.dumps(claims(rig)))
        )
        return signing_input + "." + b64u(hmac.new(key_bytes(rig), signing_input.encode(), digest).digest())

    return make


def public_rsa(rig):
    return rig.issuer.keys["rsa-a"][0].public_key()


def public_rsa_bytes(encoding: str, form: str):
    """make(rig) -> the published RSA key's public half as bytes (an HMAC secret in key-confusion cases)."""
    return lambda rig: public_rsa(rig).public_bytes(
        getattr(serialization.Encoding, encoding), getattr(serialization.PublicFormat, form)
    )


def part_edit(index: int, edit):
    """A good token with part `index` (0 header, 1 payload, 2 signature) replaced by edit(part)."""

    def make(rig):
        parts = signed(rig, claims(rig)).split(".")
        parts[index] = edit(parts[index], rig)
        return ".".join(parts)

    return make


def swap_payload(**changes):
    """The payload of a good token replaced by one with `changes`, the original signature kept."""
    return part_edit(1, lambda _part, rig: b64u(json.dumps(claims(rig, **changes))))


def flip_last_signature_bit(part: str, _rig) -> str:
    import base64

    raw = bytearray(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    raw[-1] ^= 1
    return b64u(bytes(raw))


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def legacy_secret_token(rig) -> str:
    return signed(
        rig,
        {
            "iss": "kubernetes/serviceaccount",
            "sub": "system:serviceaccount:default:web",
            "kubernetes.io/serviceaccount/namespace": "default",
            "kubernetes.io/serviceaccount/secret.name": "web-token-x7k2p",
            "kubernetes.io/serviceaccount/service-account.name": "web",
        },
    )


def embedded_jwk(rig) -> str:
    rogue = rig.issuer.keys["rogue-rsa"][0]
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rogue.public_key(), as_dict=True)
    return sign_text(rig.issuer, "rogue-rsa", {"alg": "RS256", "kid": "rsa-a", "jwk": jwk}, claims(rig))


def kubernetes(namespace="default", service_account="web", **extra) -> dict:
    result = {"namespace": namespace, "serviceaccount": {"name": service_account, "uid": "0d8f1f5c"}}
    result.update(extra)
    return result



# id: (make(rig) -> token, status, code[, xfail reason])
TOKENS = {
    # time
    "expired-an-hour-ago": EXPIRED(
        claim(exp=lambda c: c["iat"] - 3600, iat=lambda c: c["iat"] - 4200, nbf=lambda c: c["iat"] - 4200)
    ),
    "expired-90s-ago-beyond-leeway": EXPIRED(claim(exp=lambda c: now() - 90)),
    "exp-zero": EXPIRED(claim(exp=0)),
    "exp-negative": EXPIRED(claim(exp=-1)),
    "exp-as-string": INVALID(claim(exp=lambda c: str(c["exp"]))),
    "exp-null": INVALID(claim(exp=None)),
    "exp-true": INVALID(claim(exp=True)),
    "exp-1e400": INVALID(with_payload_text(lambda text: text.replace('"exp": ', '"exp": 1e400, "was": '))),
    "exp-missing": INVALID(claim(exp=DEL)),
    "nbf-in-10-minutes": INVALID(claim(nbf=lambda c: c["iat"] + 600)),
    "nbf-90s-ahead-beyond-leeway": INVALID(claim(nbf=lambda c: now() + 90)),
    "nbf-as-string": INVALID(claim(nbf=lambda c: str(c["nbf"]))),
    "iat-in-an-hour": INVALID(claim(iat=lambda c: c["iat"] + 3600)),
    "nbf-after-exp": INVALID(claim(nbf=lambda c: c["exp"] + 60)),
    # issuer
    "issuer-of-another-cluster": INVALID(claim(iss="https://kubernetes.default.svc.other-cluster")),
    "issuer-missing": INVALID(claim(iss=DEL)),
    "issuer-trailing-slash": INVALID(claim(iss=TOKEN_ISSUER + "/")),
    "issuer-uppercase-host": INVALID(claim(iss=TOKEN_ISSUER.upper())),
    "issuer-http-scheme": INVALID(claim(iss=TOKEN_ISSUER.replace("https:", "http:"))),
    "issuer-as-list": INVALID(claim(iss=[TOKEN_ISSUER])),
    "issuer-null": INVALID(claim(iss=None)),
    "issuer-number": INVALID(claim(iss=42)),
    # audience
    "audience-vault": AUDIENCE(claim(aud=["vault"])),
    "audience-vault-as-string": AUDIENCE(claim(aud="vault")),
    "audience-empty-list": AUDIENCE(claim(aud=[])),
    "audience-uppercase": AUDIENCE(claim(aud=["Sigil"])),
    "audience-trailing-space": AUDIENCE(claim(aud=["sigil "])),
    "audience-prefix": AUDIENCE(claim(aud=["sigi"])),
    "audience-superstring": AUDIENCE(claim(aud=["sigil-admin"])),
    "audience-api-server-only": AUDIENCE(claim(aud=["https://kubernetes.default.svc.cluster.local", "k3s"])),
    "audience-missing": INVALID(claim(aud=DEL)),
    "audience-number": INVALID(claim(aud=1)),
    "audience-null": INVALID(claim(aud=None)),
    "audience-nested-list": INVALID(claim(aud=[["sigil"]])),
    "audience-object": INVALID(claim(aud={"sigil": True})),
    # algorithms
    "alg-none-unsigned": INVALID(lambda rig: jwt.encode(claims(rig), None, algorithm="none", headers={"kid": "rsa-a"})),
    "alg-none-with-signature": INVALID(unsigned({"alg": "none", "kid": "rsa-a"}, b"x" * 32)),
    "alg-None": INVALID(unsigned({"alg": "None", "kid": "rsa-a"}, b"x")),
    "alg-NONE": INVALID(unsigned({"alg": "NONE", "kid": "rsa-a"}, b"x")),
    "alg-nOnE": INVALID(unsigned({"alg": "nOnE", "kid": "rsa-a"}, b"x")),
    "alg-missing": INVALID(lambda rig: signed(rig, claims(rig), alg=DEL)),
    "alg-as-list": INVALID(with_header('{"alg": ["RS256"], "kid": "rsa-a"}')),
    "alg-lowercase-rs256": INVALID(with_header('{"alg": "rs256", "kid": "rsa-a"}')),
    "alg-rs256-trailing-space": INVALID(with_header('{"alg": "RS256 ", "kid": "rsa-a"}')),
    "alg-hs256-keyed-with-public-pem": INVALID(
        hmac_signed("HS256", public_rsa_bytes("PEM", "SubjectPublicKeyInfo"))
    ),
    "alg-hs256-keyed-with-public-der": INVALID(
        hmac_signed("HS256", public_rsa_bytes("DER", "SubjectPublicKeyInfo"))
    ),
    "alg-hs256-keyed-with-pkcs1-pem": INVALID(
        hmac_signed("HS256", public_rsa_bytes("PEM", "PKCS1"))
    ),
    "alg-hs256-keyed-with-jwks-entry": INVALID(
        hmac_signed("HS256", lambda rig: json.dumps(rig.issuer.jwks()["keys"][0]).encode())
    ),
    "alg-hs384-keyed-with-public-pem": INVALID(
        hmac_signed("HS384", public_rsa_bytes("PEM", "SubjectPublicKeyInfo"))
    ),
    "alg-hs512-keyed-with-public-pem": INVALID(
        hmac_signed("HS512", public_rsa_bytes("PEM", "SubjectPublicKeyInfo"))
    ),
    "alg-eddsa-with-the-published-okp-key": INVALID(
        lambda rig: jwt.encode(claims(rig), ED25519_KEY, algorithm="EdDSA", headers={"kid": "ed-a"})
    ),
    "alg-es256k": INVALID(lambda rig: signed(rig, claims(rig), "ec-a", alg="ES256K")),
    "alg-jwe-rsa-oaep": INVALID(lambda rig: signed(rig, claims(rig), alg="RSA-OAEP", enc="A256GCM")),
    # kid
    "kid-of-an-unpublished-rsa-key": INVALID(lambda rig: signed(rig, claims(rig), "rogue-rsa")),
    "kid-of-an-unpublished-ec-key": INVALID(lambda rig: signed(rig, claims(rig), "rogue-ec")),
    "kid-empty": INVALID(lambda rig: signed(rig, claims(rig), kid="")),
    "kid-missing": INVALID(lambda rig: signed(rig, claims(rig), kid=DEL)),
    "kid-number": INVALID(with_header('{"alg": "RS256", "kid": 1}')),
    "kid-null": INVALID(with_header('{"alg": "RS256", "kid": null}')),
    "kid-as-list": INVALID(with_header('{"alg": "RS256", "kid": ["rsa-a"]}')),
    "kid-8000-characters": INVALID(lambda rig: signed(rig, claims(rig), kid="k" * 8000)),
    "kid-path-traversal": INVALID(lambda rig: signed(rig, claims(rig), kid="../../../../etc/passwd")),
    "kid-sql-injection": INVALID(lambda rig: signed(rig, claims(rig), kid="rsa-a' OR '1'='1")),
    "kid-with-nul-suffix": INVALID(lambda rig: signed(rig, claims(rig), kid="rsa-a\u0000")),
    "kid-uppercased": INVALID(lambda rig: signed(rig, claims(rig), kid="RSA-A")),
    "kid-a-url": INVALID(lambda rig: signed(rig, claims(rig), kid="https://attacker.invalid/jwks.json#rsa-a")),
    "kid-of-the-okp-key-with-rs256": INVALID(lambda rig: signed(rig, claims(rig), kid="ed-a")),
    "es256-header-naming-the-rsa-kid": INVALID(lambda rig: signed(rig, claims(rig), "ec-a", kid="rsa-a")),
    "rs256-header-naming-the-ec-kid": INVALID(lambda rig: signed(rig, claims(rig), "rsa-a", kid="ec-a")),
    "ps256-header-naming-the-ec-kid": INVALID(lambda rig: signed(rig, claims(rig), "ps-a", kid="ec-a")),
    "es384-header-naming-the-p256-kid": INVALID(lambda rig: signed(rig, claims(rig), "ec384-a", kid="ec-a")),
    "es256-header-naming-the-p384-kid": INVALID(lambda rig: signed(rig, claims(rig), "ec-a", kid="ec384-a")),
    "es512-header-naming-the-p256-kid": INVALID(
        lambda rig: sign_text(rig.issuer, "ec-a", {"alg": "ES512", "kid": "ec-a"}, claims(rig), "ES256")
    ),
    "rs256-header-over-a-pss-signature": INVALID(
        lambda rig: sign_text(rig.issuer, "rsa-a", {"alg": "RS256", "kid": "rsa-a"}, claims(rig), "PS256")
    ),
    "ps256-header-over-a-pkcs1-signature": INVALID(
        lambda rig: sign_text(rig.issuer, "ps-a", {"alg": "PS256", "kid": "ps-a"}, claims(rig), "RS256")
    ),
    # key-location and critical headers
    "jku-header": INVALID(lambda rig: signed(rig, claims(rig), jku="https://attacker.invalid/jwks.json")),
    "jku-header-null": INVALID(with_header('{"alg": "RS256", "kid": "rsa-a", "jku": null}')),
    "x5u-header": INVALID(lambda rig: signed(rig, claims(rig), x5u="https://attacker.invalid/cert.pem")),
    "x5u-header-empty": INVALID(lambda rig: signed(rig, claims(rig), x5u="")),
    "jwk-header-with-the-attackers-key": INVALID(embedded_jwk),
    "x5c-header": INVALID(lambda rig: signed(rig, claims(rig), x5c=["MIIBszCCAVmgAwIBAgIU"])),
    "crit-header": INVALID(lambda rig: signed(rig, claims(rig), crit=["exp"])),
    "crit-header-empty-list": INVALID(lambda rig: signed(rig, claims(rig), crit=[])),
    # tampering and malformed serialisation
    "payload-namespace-swapped": INVALID(
        swap_payload(sub="system:serviceaccount:kube-system:admin", kubernetes__io=kubernetes("kube-system", "admin"))
    ),
    "payload-audience-swapped": INVALID(swap_payload(aud=["sigil", "vault"])),
    "payload-exp-extended": INVALID(swap_payload(exp=lambda c: c["exp"] + 86_400)),
    "header-kid-swapped-after-signing": INVALID(
        part_edit(0, lambda _p, _r: b64u(json.dumps({"alg": "PS256", "kid": "ps-a", "typ": "JWT"})))
    ),
    "signature-by-the-attacker-under-a-published-kid": INVALID(
        lambda rig: sign_text(rig.issuer, "rogue-rsa", {"alg": "RS256", "kid": "rsa-a"}, claims(rig))
    ),
    "signature-last-bit-flipped": INVALID(part_edit(2, flip_last_signature_bit)),
    "signature-truncated": INVALID(part_edit(2, lambda p, _r: p[: len(p) // 2])),
    "signature-empty": INVALID(part_edit(2, lambda p, _r: "")),
    "signature-stripped": INVALID(lambda rig: signed(rig, claims(rig)).rsplit(".", 1)[0]),
    "fourth-part": INVALID(lambda rig: signed(rig, claims(rig)) + ".e30"),
    "jwe-shaped-five-parts": INVALID(lambda rig: signed(rig, claims(rig)) + ".e30.e30"),
    "base64-padding": INVALID(
        lambda rig: ".".join(p + "=" * (-len(p) % 4 or 4) for p in signed(rig, claims(rig)).split("."))
    ),
    "standard-base64-alphabet": INVALID(part_edit(2, lambda p, _r: p.replace("-", "+").replace("_", "/") + "+/")),
    "space-inside": INVALID(lambda rig: (lambda t: t[:30] + " " + t[30:])(signed(rig, claims(rig)))),
    "non-base64-characters": INVALID(part_edit(1, lambda p, _r: p[:10] + "!$%&" + p[14:])),
    "header-not-json": INVALID(part_edit(0, lambda _p, _r: b64u("alg=RS256;kid=rsa-a"))),
    "header-a-json-array": INVALID(with_header('["RS256", "rsa-a"]')),
    "header-a-json-string": INVALID(with_header('"RS256"')),
    "payload-a-json-array": INVALID(lambda rig: sign_text(rig.issuer, "rsa-a", {"alg": "RS256", "kid": "rsa-a"}, "[]")),
    "payload-null": INVALID(lambda rig: sign_text(rig.issuer, "rsa-a", {"alg": "RS256", "kid": "rsa-a"}, "null")),
    "payload-not-json": INVALID(
        lambda rig: sign_text(rig.issuer, "rsa-a", {"alg": "RS256", "kid": "rsa-a"}, "exp=9999999999")
    ),
    "payload-invalid-utf8": INVALID(
        lambda rig: sign_text(
            rig.issuer,
            "rsa-a",
            {"alg": "RS256", "kid": "rsa-a"},
            json.dumps(claims(rig)).encode()[:-1] + b', "x": "\xff\xfe"}',
        )
    ),
    # duplicate header parameters and claims
    "duplicate-header-alg-rs256-then-none": INVALID(with_header('{"alg": "RS256", "alg": "none", "kid": "rsa-a"}')),
    "duplicate-header-alg-none-then-rs256": INVALID(
        with_header('{"alg": "none", "alg": "RS256", "kid": "rsa-a"}')
    ),
    "duplicate-header-kid-ec-then-rsa": INVALID(with_header('{"alg": "RS256", "kid": "ec-a", "kid": "rsa-a"}')),
    "duplicate-header-kid-rsa-then-ec": INVALID(with_header('{"alg": "RS256", "kid": "rsa-a", "kid": "ec-a"}')),
    "duplicate-claim-kubernetes-io-kube-system-last": INVALID(
        with_payload_text(
            lambda t: t[:-1] + ', "kubernetes.io": ' + json.dumps(kubernetes("kube-system", "web")) + "}"
        )
    ),
    "duplicate-claim-aud-vault-last": INVALID(with_payload_text(lambda t: t[:-1] + ', "aud": ["vault"]}')),
    "duplicate-claim-exp-expired-last": INVALID(with_payload_text(lambda t: t[:-1] + ', "exp": 1}')),
    "duplicate-claim-sub-admin-last": INVALID(
        with_payload_text(lambda t: t[:-1] + ', "sub": "system:serviceaccount:kube-system:admin"}')
    ),
    "duplicate-claim-iss-foreign-first": INVALID(
        with_payload_text(lambda t: '{"iss": "https://attacker.invalid", ' + t[1:])
    ),
    # claims that do not make a projected service-account token
    "sub-of-another-account": INVALID(claim(sub="system:serviceaccount:kube-system:admin")),
    "sub-missing": INVALID(claim(sub=DEL)),
    "sub-a-user": INVALID(claim(sub="admin")),
    "kubernetes-io-missing": INVALID(claim(kubernetes__io=DEL)),
    "kubernetes-io-a-string": INVALID(claim(kubernetes__io="default/web")),
    "namespace-missing": INVALID(claim(kubernetes__io={"serviceaccount": {"name": "web"}})),
    "service-account-missing": INVALID(claim(kubernetes__io={"namespace": "default"})),
    "service-account-name-null": INVALID(
        claim(kubernetes__io={"namespace": "default", "serviceaccount": {"name": None}})
    ),
    "namespace-a-number": INVALID(claim(kubernetes__io={"namespace": 7, "serviceaccount": {"name": "web"}})),
    "legacy-secret-token": INVALID(legacy_secret_token),
    # huge and deep
    "signed-17-kib": INVALID(claim(padding="a" * 13_000)),
    "garbage-16-kib-plus-one": INVALID(lambda rig: "e" * (16 * 1024 + 1)),
    "garbage-30-kib": INVALID(lambda rig: "eyJhbGciOiJSUzI1NiJ9." + "A" * 30 * 1024 + ".c2ln"),
    "header-nested-5000-deep": INVALID(with_header('{"alg": "RS256", "kid": "rsa-a", "x": ' + nested(5000) + "}")),
    "payload-nested-5000-deep-unsigned": INVALID(
        lambda rig: b64u('{"alg":"RS256","kid":"rsa-a"}') + "." + b64u(nested(5000)) + "." + b64u(b"x" * 256)
    ),
    "payload-nested-5000-deep-signed": INVALID(with_payload_text(lambda t: t[:-1] + ', "x": ' + nested(5000) + "}")),
    "not-a-jwt": INVALID(lambda rig: "opaque-" + "0123456789abcdef" * 4),
}


@pytest.mark.parametrize("make, status, code", cases(TOKENS))
def test_hostile_token_is_refused(rig, make, status, code):
    token = rig.remember(make(rig))
    rig.refused(rig.post(json.dumps({"csr": rig.good_csr}), token), status, code, token=token)


@pytest.mark.parametrize("size", [40 * 1024, 128 * 1024, 1024 * 1024], ids=["40-kib", "128-kib", "1-mib"])
def test_token_beyond_the_header_limit_is_cut_off_by_the_http_parser(rig, size):
    """Parser level (before Sigil's code runs, so no problem document and no audit record): a bearer token larger
    than the HTTP head limit gets a 4xx or a closed connection, never a 5xx, and the server keeps serving."""
    token = rig.remember("eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS1hIn0." + "A" * size + ".c2ln")
    body = json.dumps({"csr": rig.good_csr}).encode()
    request = http_request(
        "POST", "/v1/certificates", {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}, body
    )
    with RawConnection(rig.server) as connection:
        connection.send(request)
        response = connection.read_response()
        if response is not None:
            assert 400 <= response.status < 500, response
            assert token[-64:].encode() not in response.body
        assert connection.wait_closed(5), "the server kept a connection open after refusing its head"
    rig.assert_serves()


# --- controls: the hand-made signatures and the leeway boundaries are accepted --------------------------

CONTROLS = {
    "hand-signed-rs256": lambda rig: signed(rig, claims(rig), "rsa-a"),
    "hand-signed-es256": lambda rig: signed(rig, claims(rig), "ec-a"),
    "hand-signed-es384": lambda rig: signed(rig, claims(rig), "ec384-a"),
    "hand-signed-ps256": lambda rig: signed(rig, claims(rig), "ps-a"),
    "exp-30s-ago-within-leeway": claim(exp=lambda c: now() - 30),
    "nbf-30s-ahead-within-leeway": claim(nbf=lambda c: now() + 30),
    "audience-as-a-string": claim(aud="sigil"),
}


@pytest.mark.parametrize("make", list(CONTROLS.values()), ids=list(CONTROLS))
def test_well_formed_token_is_accepted(rig, make):
    """Controls: the hand-made JWS of the cases above verifies when nothing is wrong with it, and the 60 s leeway
    is honoured, so each refusal is caused by its one defect."""
    assert_issued(rig.post(json.dumps({"csr": rig.good_csr}), rig.remember(make(rig))), WEB_ID)


# --- bearer tokens sent the wrong way ------------------------------------------------------------------

WRONG_WAYS = {
    "no-authorization-header": (lambda t: {}, "", 401, "unauthenticated"),
    "basic-scheme": (lambda t: {"Authorization": "Basic " + b64u("web:" + t)}, "", 401, "unauthenticated"),
    "bearer-without-a-token": (lambda t: {"Authorization": "Bearer"}, "", 401, "unauthenticated"),
    "bearer-and-spaces": (lambda t: {"Authorization": "Bearer     "}, "", 401, "unauthenticated"),
    "bearer-tab-token": (lambda t: {"Authorization": "Bearer\t" + t}, "", 401, "unauthenticated"),
    "token-scheme": (lambda t: {"Authorization": "Token " + t}, "", 401, "unauthenticated"),
    "jwt-without-a-scheme": (lambda t: {"Authorization": t}, "", 401, "unauthenticated"),
    "token-then-garbage": (lambda t: {"Authorization": f"Bearer {t} extra"}, "", 401, "token_invalid"),
    "token-then-comma-token": (lambda t: {"Authorization": f"Bearer {t}, Bearer {t}"}, "", 401, "token_invalid"),
    "token-in-query-string": (lambda t: {}, "?access_token={t}", 401, "unauthenticated"),
    "token-in-a-cookie": (lambda t: {"Cookie": f"token={t}"}, "", 401, "unauthenticated"),
    "token-in-x-auth-token": (lambda t: {"X-Auth-Token": t}, "", 401, "unauthenticated"),
    "token-in-proxy-authorization": (lambda t: {"Proxy-Authorization": f"Bearer {t}"}, "", 401, "unauthenticated"),
}


@pytest.mark.parametrize("headers, query, status, code", [pytest.param(*v, id=k) for k, v in WRONG_WAYS.items()])
def test_token_sent_the_wrong_way_is_refused(rig, headers, query, status, code):
    token = rig.token()
    response = rig.post(
        json.dumps({"csr": rig.good_csr}), None, headers=headers(token), path="/v1/certificates" + query.format(t=token)
    )
    bearer = code == "token_invalid"  # a bearer token was presented (and is HMAC'd in the denial)
    rig.refused(response, status, code, token=token if bearer else None)
    assert token not in response.text


@pytest.mark.parametrize("good_first", [True, False], ids=["valid-token-first", "valid-token-last"])
def test_two_authorization_headers_are_refused(rig, good_first):
    """Two Authorization fields (raw socket: HTTP clients merge or refuse them) are one ambiguous credential."""
    token = rig.token()
    fields = [("Authorization", f"Bearer {token}"), ("Authorization", "Bearer eyJhbGciOiJub25lIn0.e30.")]
    if not good_first:
        fields.reverse()
    body = json.dumps({"csr": rig.good_csr}).encode()
    with RawConnection(rig.server) as connection:
        connection.send(http_request("POST", "/v1/certificates", [("Content-Type", "application/json"), *fields], body))
        response = connection.read_response()
    assert response is not None, "the server closed the connection without an answer"
    problem = assert_raw_problem(response, 401, "token_invalid")
    for part in token_parts(token):
        assert part.encode() not in response.body
    record = rig.audit_record(problem["request_id"])
    assert record["action"] == "deny" and record["code"] == "token_invalid", record
    assert rig.server.running


# --- the server survived --------------------------------------------------------------------------------


def test_server_survived_every_hostile_token(rig, sigil):
    """Last in the module: still running, still issuing, no 5xx ever, no token (or its payload or signature) in
    the log, stdout or audit sink, every refusal carries a distinct request id, and the audit chain verifies."""
    rig.assert_survived(sigil)
    denials = [r for r in rig.audit_records() if r["action"] == "deny"]
    assert len({r["request_id"] for r in denials}) == len(denials), "two denial records share a request id"
