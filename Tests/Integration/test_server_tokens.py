"""Token authentication of POST /v1/certificates with tokens that Sigil did not mint: PyJWT signs
Kubernetes-projected-shaped tokens with RSA and EC keys generated here, and a small http.server on
127.0.0.1 publishes the OIDC discovery document and the JWKS over HTTPS (a test CA) (`sigil serve --token-issuer URL` only).
Covers success per algorithm, every token refusal code, and token-key rotation without a restart."""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from sigil_harness import (
    JWKS_PATH,
    LocalHTTPServer,
    TokenIssuer,
    WEB_ID,
    assert_issued,
    assert_problem,
    b64url,
    python_csr,
    serve_oidc_issuer,
    token_parts,
    unsigned_jwt,
    wait_until,
)

DISCOVERY_PATH = "/.well-known/openid-configuration"


@pytest.fixture(scope="module")
def issuer_http():
    server = LocalHTTPServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def issuer(issuer_http) -> TokenIssuer:
    """Published keys: rsa-a (RS256), ec-a (ES256), ps-a (PS256), ec384-a (ES384). Unpublished: rogue."""
    issuer = TokenIssuer(issuer_http.url)
    for kid, kind in [("rsa-a", "RS256"), ("ec-a", "ES256"), ("ps-a", "PS256"), ("ec384-a", "ES384")]:
        issuer.add_key(kid, kind)
    issuer.add_key("rogue-rsa", "RS256", publish=False)
    serve_oidc_issuer(issuer_http, issuer)
    return issuer


@pytest.fixture(scope="module")
def server(module_servers, issuer, issuer_http, tmp_path_factory):
    return module_servers(
        tmp_path_factory.mktemp("tokens") / "pki", "--token-issuer", issuer.issuer, "--token-jwks-ca", issuer_http.ca_file
    )


@pytest.fixture(scope="module")
def csr_pem() -> str:
    return python_csr()[0]


def assert_still_serves(server, issuer, csr_pem):
    """After any refusal, a good request is still served."""
    assert_issued(server.post_csr(csr_pem, issuer.token("rsa-a")), WEB_ID)


# --- success -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kid", ["rsa-a", "ec-a", "ps-a", "ec384-a"])
def test_token_from_discovered_jwks_is_accepted(server, issuer, issuer_http, csr_pem, kid):
    token = issuer.token(kid)
    body = assert_issued(server.post_csr(csr_pem, token), WEB_ID)
    assert body["spiffe_id"] == WEB_ID
    # The keys came through OIDC discovery, not from a configured JWKS location.
    assert issuer_http.count("GET", DISCOVERY_PATH) >= 1
    assert issuer_http.count("GET", JWKS_PATH) >= 1


def test_identity_comes_from_the_token_not_the_csr(server, issuer):
    """A CSR without any SAN gets the token's identity."""
    csr, _ = python_csr(spiffe_id=None)
    token = issuer.token("ec-a", namespace="payments", service_account="api")
    assert_issued(server.post_csr(csr, token), "spiffe://cluster.local/ns/payments/sa/api")


# --- refusals ------------------------------------------------------------------------------------


def _hs256_with_public_key(issuer: TokenIssuer) -> str:
    """The classic RS/HS confusion: HMAC-SHA256 keyed with the RSA public key's PEM, kid of that key."""
    public_pem = issuer.keys["rsa-a"][0].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = unsigned_jwt({"alg": "HS256", "typ": "JWT", "kid": "rsa-a"}, issuer.claims())
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def _es256_header_over_rsa_kid(issuer: TokenIssuer) -> str:
    """Algorithm/key confusion: header alg ES256 naming the RSA kid, signed with an EC key."""
    return issuer.sign(issuer.claims(), "ec-a", alg="ES256", headers={"kid": "rsa-a"})


def _rs256_header_over_ec_kid(issuer: TokenIssuer) -> str:
    return issuer.sign(issuer.claims(), "rsa-a", alg="RS256", headers={"kid": "ec-a"})


def _tampered_payload(issuer: TokenIssuer) -> str:
    header, _, signature = issuer.token("rsa-a").split(".")
    forged = b64url(json.dumps(issuer.claims(namespace="kube-system", service_account="admin")).encode())
    return f"{header}.{forged}.{signature}"


def _alg_none(issuer: TokenIssuer) -> str:
    return jwt.encode(issuer.claims(), None, algorithm="none", headers={"kid": "rsa-a"})


def _alg_none_with_signature(issuer: TokenIssuer) -> str:
    """alg none, but with a non-empty third part so it looks like a JWS."""
    return unsigned_jwt({"alg": "none", "kid": "rsa-a"}, issuer.claims()) + "." + b64url(b"x" * 32)


def _embedded_jwk(issuer: TokenIssuer) -> str:
    """A `jwk` header carrying the attacker's own key, signed by it."""
    rogue = issuer.keys["rogue-rsa"][0]
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rogue.public_key(), as_dict=True)
    return issuer.sign(issuer.claims(), "rogue-rsa", headers={"kid": "rsa-a", "jwk": jwk})


def _without(claim: str):
    def make(issuer: TokenIssuer) -> str:
        claims = issuer.claims()
        del claims[claim]
        return issuer.sign(claims, "rsa-a")

    return make


def _legacy_secret_token(issuer: TokenIssuer) -> str:
    """The shape of a pre-1.24 secret-based service-account token: no exp, no aud."""
    claims = {
        "iss": "kubernetes/serviceaccount",
        "sub": "system:serviceaccount:default:web",
        "kubernetes.io/serviceaccount/namespace": "default",
        "kubernetes.io/serviceaccount/secret.name": "web-token-abcde",
        "kubernetes.io/serviceaccount/service-account.name": "web",
        "kubernetes.io/serviceaccount/service-account.uid": "0d8f1f5c-7c57-4b55-9a59-4b7f0f3b7f10",
    }
    return issuer.sign(claims, "rsa-a")


def _claims(**changes):
    def make(issuer: TokenIssuer) -> str:
        claims = issuer.claims()
        for key, value in changes.items():
            claims[key] = value(claims) if callable(value) else value
        return issuer.sign(claims, "rsa-a")

    return make


REFUSED_TOKENS = {
    # name: (make(issuer) -> token, HTTP status, code)
    "expired": (lambda i: i.token("rsa-a", now=int(time.time()) - 1200, ttl=600), 401, "token_expired"),
    "wrong-audience": (lambda i: i.token("rsa-a", audience=("vault",)), 401, "audience_mismatch"),
    "wrong-issuer": (_claims(iss="https://kubernetes.default.svc.cluster.local"), 401, "token_invalid"),
    "alg-none": (_alg_none, 401, "token_invalid"),
    "alg-none-with-signature": (_alg_none_with_signature, 401, "token_invalid"),
    "hs256-with-public-key": (_hs256_with_public_key, 401, "token_invalid"),
    "unknown-kid": (lambda i: i.token("rogue-rsa"), 401, "token_invalid"),
    "es256-header-over-rsa-kid": (_es256_header_over_rsa_kid, 401, "token_invalid"),
    "rs256-header-over-ec-kid": (_rs256_header_over_ec_kid, 401, "token_invalid"),
    "tampered-payload": (_tampered_payload, 401, "token_invalid"),
    "jku-header": (lambda i: i.sign(i.claims(), "rsa-a", headers={"jku": i.issuer + JWKS_PATH}), 401, "token_invalid"),
    "x5u-header": (lambda i: i.sign(i.claims(), "rsa-a", headers={"x5u": i.issuer + "/cert.pem"}), 401, "token_invalid"),
    "embedded-jwk": (_embedded_jwk, 401, "token_invalid"),
    "missing-exp": (_without("exp"), 401, "token_invalid"),
    "missing-aud": (_without("aud"), 401, "token_invalid"),
    "legacy-secret-token": (_legacy_secret_token, 401, "token_invalid"),
    "no-kid": (lambda i: jwt.encode(i.claims(), i.keys["rsa-a"][0], algorithm="RS256"), 401, "token_invalid"),
    "not-yet-valid": (_claims(nbf=lambda c: c["iat"] + 600), 401, "token_invalid"),
    "issued-in-the-future": (_claims(iat=lambda c: c["iat"] + 600, nbf=lambda c: c["nbf"]), 401, "token_invalid"),
    "sub-disagrees-with-claims": (_claims(sub="system:serviceaccount:kube-system:admin"), 401, "token_invalid"),
    "no-kubernetes-claims": (_without("kubernetes.io"), 401, "token_invalid"),
    "not-a-jwt": (lambda i: "not-a-jwt-" + secrets.token_hex(16), 401, "token_invalid"),
    "two-part-jwt": (lambda i: i.token("rsa-a").rsplit(".", 1)[0], 401, "token_invalid"),
    "dot-dot-namespace": (lambda i: i.token("rsa-a", namespace=".."), 400, "invalid_spiffe_id"),
}


@pytest.mark.parametrize("case", REFUSED_TOKENS)
def test_bad_token_is_refused_with_its_code(server, issuer, csr_pem, case):
    make, status, code = REFUSED_TOKENS[case]
    token = make(issuer)
    response = server.post_csr(csr_pem, token)
    assert_problem(response, status, code, forbidden=token_parts(token))
    assert token not in server.stderr, f"the server logged the token:\n{server.stderr[-3000:]}"
    assert_still_serves(server, issuer, csr_pem)


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic d2ViOnBhc3N3b3Jk", "Bearer", "Token abc.def.ghi"],
    ids=["none", "basic", "empty-bearer", "other-scheme"],
)
def test_request_without_a_bearer_token_is_unauthenticated(server, issuer, csr_pem, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    assert_problem(server.post_csr(csr_pem, headers=headers), 401, "unauthenticated")
    assert_still_serves(server, issuer, csr_pem)


def test_refusals_do_not_say_which_check_failed(server, issuer, csr_pem):
    """Every token_invalid answer is the same sentence: a refusal never tells an attacker which check
    (signature, issuer, kid…) failed, nor whether an identity exists."""
    details = set()
    for case in ("wrong-issuer", "unknown-kid", "tampered-payload", "hs256-with-public-key", "sub-disagrees-with-claims"):
        make, _, _ = REFUSED_TOKENS[case]
        details.add(assert_problem(server.post_csr(csr_pem, make(issuer)), 401, "token_invalid")["detail"])
    assert len(details) == 1, details


# --- key rotation --------------------------------------------------------------------------------
# Sigil fetches the JWKS again when a token names an unknown kid, at most once per 30 s counting the
# initial fetch. So a new key is accepted, without a restart, at the latest 30 s after the previous
# fetch: the rigs below make that fetch when the module starts, and the rotation tests (last in the
# module) poll for acceptance with a deadline of 35 s after it.

REFRESH_LIMIT = 30


@dataclass
class RotationRig:
    server: object
    issuer: TokenIssuer
    publish: object  # publish() serves the issuer's current JWKS
    fetches: object = None  # fetches() -> how many times Sigil fetched the JWKS (HTTP sources only)
    loaded_at: float = 0.0


@pytest.fixture(scope="module", autouse=True)
def rotation_rigs(module_servers, tmp_path_factory):
    """Two servers whose issuers rotate keys later in the module: one with OIDC discovery from a local
    http.server, one with --token-jwks FILE. Each has already accepted a token (and so fetched its JWKS)."""
    directory = tmp_path_factory.mktemp("rotation")
    http = LocalHTTPServer()
    discovered = TokenIssuer(http.url)
    discovered.add_key("k8s-2025", "RS256")
    serve_oidc_issuer(http, discovered)

    jwks = directory / "jwks.json"
    filed = TokenIssuer("https://kubernetes.default.svc")
    filed.add_key("file-a", "ES256")
    jwks.write_text(json.dumps(filed.jwks()))

    rigs = {
        "discovery": RotationRig(
            module_servers(directory / "pki-discovery", "--token-issuer", discovered.issuer, "--token-jwks-ca", http.ca_file),
            discovered, lambda: serve_oidc_issuer(http, discovered), lambda: http.count("GET", JWKS_PATH),
        ),
        "jwks-file": RotationRig(
            module_servers(directory / "pki-file", "--token-issuer", filed.issuer, "--token-jwks", jwks),
            filed, lambda: jwks.write_text(json.dumps(filed.jwks())),
        ),
    }
    csr = python_csr()[0]
    for rig in rigs.values():
        (kid,) = rig.issuer.published
        assert_issued(rig.server.post_csr(csr, rig.issuer.token(kid)), WEB_ID)
        rig.loaded_at = time.monotonic()
    yield rigs
    http.close()


def test_unknown_kids_do_not_flood_the_issuer(rotation_rigs):
    """A burst of tokens with kids nobody published costs at most one extra JWKS fetch."""
    rig = rotation_rigs["discovery"]
    csr = python_csr()[0]
    before = rig.fetches()
    for n in range(8):
        rig.issuer.add_key(f"nobody-{n}", "RS256", publish=False)
        token = rig.issuer.token(f"nobody-{n}")
        assert_problem(rig.server.post_csr(csr, token), 401, "token_invalid", forbidden=token_parts(token))
    assert rig.fetches() - before <= 1, "unknown kids made Sigil fetch the JWKS more than once"


@pytest.mark.parametrize("source, new_kid, kind", [("discovery", "k8s-2026", "ES256"), ("jwks-file", "file-b", "RS256")])
def test_token_key_rotation_needs_no_restart(rotation_rigs, source, new_kid, kind):
    """The cluster publishes a new signing key: tokens signed by it are accepted without a restart
    once the refresh limit allows a fetch (≤ 35 s after the previous one), and the old key keeps
    working during the overlap."""
    rig = rotation_rigs[source]
    (old_kid,) = rig.issuer.published
    before = rig.fetches() if rig.fetches else 0
    rig.issuer.add_key(new_kid, kind)
    rig.publish()
    csr = python_csr()[0]
    token = rig.issuer.token(new_kid)

    def accepted():
        response = rig.server.post_csr(csr, token)
        if response.status_code == 201:
            return assert_issued(response, WEB_ID)
        assert_problem(response, 401, "token_invalid", forbidden=token_parts(token))  # rate-limited until then
        return None

    deadline = rig.loaded_at + REFRESH_LIMIT + 5 - time.monotonic()
    wait_until(accepted, timeout=max(deadline, 1), interval=1, what=f"a token signed by the new key {new_kid}")
    assert rig.server.running
    if rig.fetches:
        assert rig.fetches() - before <= 2, "polling with the new kid must not fetch the JWKS on every request"
    assert_issued(rig.server.post_csr(csr, rig.issuer.token(old_kid)), WEB_ID)
