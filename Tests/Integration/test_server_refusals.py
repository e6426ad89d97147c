"""POST /v1/certificates refuses bad CSRs and bad bodies with 4xx application/problem+json and a stable
code, never echoes the token, never answers 5xx, and keeps serving good requests afterwards. One
local-mode server (tokens from `sigil dev token`) is shared by the module."""
from __future__ import annotations

import ipaddress
import json

import pytest
from cryptography import x509

from sigil_harness import (
    OTHER_ID,
    WEB_ID,
    assert_issued,
    assert_problem,
    dev_token,
    python_csr,
    token_parts,
    with_corrupted_signature,
)


@pytest.fixture(scope="module")
def server(module_servers, tmp_path_factory):
    return module_servers(tmp_path_factory.mktemp("refusals") / "pki")


@pytest.fixture(scope="module")
def token(sigil, server) -> str:
    return dev_token(sigil, server.data_dir, "default", "web")


@pytest.fixture(scope="module")
def good_csr() -> str:
    return python_csr()[0]


@pytest.fixture(autouse=True)
def _still_serves(server, token, good_csr):
    """After every test of this module, the server still issues to a good request."""
    yield
    assert_issued(server.post_csr(good_csr, token), WEB_ID)


def refuse(server, token, status, code, **post):
    response = server.post_csr(token=token, **post) if "csr_pem" in post else server.request("POST", "/v1/certificates", **post)
    return assert_problem(response, status, code, forbidden=token_parts(token))


# --- the CSR -------------------------------------------------------------------------------------


def test_csr_for_another_identity_is_refused(server, token):
    csr, _ = python_csr(spiffe_id=OTHER_ID)
    refuse(server, token, 403, "identity_mismatch", csr_pem=csr)


def test_csr_with_two_uri_sans_is_refused(server, token):
    csr, _ = python_csr([x509.UniformResourceIdentifier(OTHER_ID)])
    refuse(server, token, 403, "identity_mismatch", csr_pem=csr)


def test_csr_with_the_identity_twice_is_refused(server, token):
    """An X509-SVID has exactly one URI SAN, even when both say the same thing."""
    csr, _ = python_csr([x509.UniformResourceIdentifier(WEB_ID)])
    refuse(server, token, 403, "identity_mismatch", csr_pem=csr)


def test_csr_with_a_bad_signature_is_refused(server, token, make_csr, tmp_path):
    csr = make_csr()
    pem, der = tmp_path / "bad.csr", tmp_path / "bad.der"
    with_corrupted_signature(csr.path, pem, der)
    refuse(server, token, 400, "csr_signature_invalid", csr_pem=pem.read_text())


@pytest.mark.parametrize(
    "csr",
    [
        "",
        "garbage",
        "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgQ1NS\n-----END CERTIFICATE REQUEST-----\n",
        "-----BEGIN CERTIFICATE REQUEST-----\n" + "A" * 3000 + "\n-----END CERTIFICATE REQUEST-----\n",
        "\x00\x01\x02",
    ],
    ids=["empty", "text", "pem-garbage", "pem-long-garbage", "binary"],
)
def test_garbage_csr_is_refused(server, token, csr):
    refuse(server, token, 400, "csr_invalid", csr_pem=csr)


def test_a_certificate_is_not_a_csr(server, token):
    refuse(server, token, 400, "csr_invalid", csr_pem=server.bundle.read_text())


def test_rsa_1024_key_is_refused(server, token):
    csr, _ = python_csr(key_type="rsa-1024")
    refuse(server, token, 400, "key_not_allowed", csr_pem=csr)


def test_ip_san_is_refused_by_policy(server, token):
    csr, _ = python_csr([x509.IPAddress(ipaddress.ip_address("10.0.0.1"))])
    refuse(server, token, 403, "policy_denied", csr_pem=csr)


def test_dns_san_without_a_template_is_refused_by_policy(server, token):
    csr, _ = python_csr([x509.DNSName("web.default.svc")])
    refuse(server, token, 403, "policy_denied", csr_pem=csr)


@pytest.mark.parametrize("ttl", [2 * 86_400, 86_400 * 365, 0, -60, 2**62], ids=["2d", "1y", "zero", "negative", "huge"])
def test_ttl_outside_policy_is_refused(server, token, good_csr, ttl):
    refuse(server, token, 400, "ttl_out_of_range", csr_pem=good_csr, ttl_seconds=ttl)


def test_ttl_inside_policy_is_honoured(server, token, good_csr):
    import datetime

    body = assert_issued(server.post_csr(good_csr, token, ttl_seconds=600), WEB_ID)
    not_after = datetime.datetime.fromisoformat(body["not_after"].replace("Z", "+00:00"))
    left = (not_after - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert 480 <= left <= 660, body


# --- the body ------------------------------------------------------------------------------------


def test_body_over_64_kib_is_refused(server, token):
    body = json.dumps({"csr": "A" * (64 * 1024 + 1)})
    refuse(
        server, token, 413, "payload_too_large",
        data=body, headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )


def test_chunked_body_over_64_kib_is_refused(server, token):
    """No Content-Length to trust: the server must stop reading at the limit."""

    def chunks():
        yield b'{"csr": "'
        for _ in range(80):
            yield b"A" * 1024
        yield b'"}'

    refuse(
        server, token, 413, "payload_too_large",
        data=chunks(), headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )


def test_body_just_under_the_limit_is_read(server, token, good_csr):
    """64 KiB is allowed: a padded but valid body is served."""
    padding = 64 * 1024 - len(json.dumps({"csr": good_csr, "pad": ""})) - 64
    body = json.dumps({"csr": good_csr, "pad": " " * padding})
    response = server.request(
        "POST", "/v1/certificates", data=body, headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    )
    assert_issued(response, WEB_ID)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_refused(server, token, good_csr, content_type):
    headers = {"Authorization": f"Bearer {token}"}
    if content_type:
        headers["Content-Type"] = content_type
    refuse(server, token, 415, "unsupported_media_type", data=json.dumps({"csr": good_csr}).encode(), headers=headers)


@pytest.mark.parametrize(
    "body",
    [
        '{"csr": 42}',
        '{"csr": ["a"]}',
        '{"csr": null}',
        '{"ttl_seconds": 600}',
        '{"csr": "x", "ttl_seconds": "3600"}',
        '{"csr": "x", "ttl_seconds": 1.5}',
        "[]",
        '"csr"',
        "{",
        "",
        "{\"csr\": \"\\ud800\"",
    ],
    ids=["csr-number", "csr-list", "csr-null", "no-csr", "ttl-string", "ttl-float", "array", "string", "truncated", "empty", "bad-escape"],
)
def test_wrong_json_is_a_bad_request(server, token, body):
    refuse(
        server, token, 400, "bad_request",
        data=body.encode(), headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )


# --- routes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/certificate", "/v2/certificates", "/v1/bundle/x", "/../etc/passwd"])
def test_unknown_route_is_not_found(server, path):
    assert_problem(server.get(path), 404, "not_found")


@pytest.mark.parametrize("method, path", [("DELETE", "/v1/bundle"), ("GET", "/v1/certificates"), ("PUT", "/v1/certificates")])
def test_wrong_method_is_method_not_allowed(server, method, path):
    assert_problem(server.request(method, path), 405, "method_not_allowed")


def test_wrong_method_is_a_4xx_problem(server):
    """Whatever the status, a wrong method never gets a 2xx or 5xx and always a problem document."""
    response = server.request("DELETE", "/v1/bundle")
    assert 400 <= response.status_code < 500
    assert_problem(response, response.status_code, response.json()["code"])


def test_oversized_headers_are_refused_and_the_server_survives(server, good_csr):
    """A 200 KB Authorization header is cut off by the HTTP parser: a 4xx, never a 5xx or a crash."""
    response = server.post_csr(good_csr, "a" * 200_000)
    assert 400 <= response.status_code < 500, response.status_code
    assert server.running


def test_a_long_token_is_refused_as_invalid(server, good_csr):
    token = "a" * 20_000
    assert_problem(server.post_csr(good_csr, token), 401, "token_invalid", forbidden=(token[:64],))


def test_token_is_never_logged(server, token):
    """Refusals and issuances are logged, tokens never: not whole, and no part of one."""
    for part in token_parts(token):
        assert part not in server.stderr, "the server log contains a token (or part of one)"
        assert part not in server.stdout


def test_no_request_of_this_module_got_a_5xx(server):
    families = server.metrics()
    statuses = {dict(labels)["code"] for (name, labels) in families if name == "sigil_http_requests_total"}
    assert statuses, "no sigil_http_requests_total samples"
    assert not {s for s in statuses if s.startswith("5")}, sorted(statuses)
