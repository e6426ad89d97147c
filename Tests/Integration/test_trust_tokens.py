"""Token sources (issue 16, findings 4 and 9): keys removed from the JWKS stop verifying without a restart,
cached verifications included; token sources are HTTPS only, never follow a redirect, and an OIDC discovery
document must name the configured issuer. The fakes are HTTPS servers on 127.0.0.1 with a test CA."""
from __future__ import annotations

import json

import pytest

from sigil_harness import (
    JWKS_PATH,
    LocalHTTPServer,
    TokenIssuer,
    WEB_ID,
    assert_issued,
    assert_one_line_failure,
    assert_problem,
    dev_token,
    python_csr,
    serve_oidc_issuer,
    token_parts,
    wait_until,
)


def test_emptying_the_development_issuers_jwks_refuses_its_tokens(sigil, start_server, tmp_path):
    """The repro of the review: local mode, a token accepted (and cached), then the JWKS file emptied. Within
    --token-jwks-refresh both the cached token and a fresh one are refused, without a restart."""
    server = start_server(tmp_path / "pki", "--token-jwks-refresh", "1s")
    cached = dev_token(sigil, server.data_dir)
    fresh = dev_token(sigil, server.data_dir, "default", "web")  # minted before the keys go
    csr = python_csr()[0]
    assert_issued(server.post_csr(csr, cached), WEB_ID)
    (server.data_dir / "dev-issuer.jwks.json").write_text(json.dumps({"keys": []}))

    def refused():
        response = server.post_csr(csr, cached)
        return None if response.status_code == 201 else assert_problem(response, 401, "token_invalid", forbidden=token_parts(cached))

    wait_until(refused, timeout=15, interval=0.25, what="the cached token to be refused once its key left the JWKS")
    assert_problem(server.post_csr(csr, fresh), 401, "token_invalid", forbidden=token_parts(fresh))
    assert "token keys removed by the issuer are no longer trusted" in server.stderr


@pytest.fixture
def issuer_http():
    server = LocalHTTPServer()
    yield server
    server.close()


def test_a_redirected_jwks_is_not_followed(sigil, start_server, tmp_path, issuer_http):
    issuer = TokenIssuer("https://kubernetes.default.svc")
    issuer.add_key("k", "ES256")
    issuer_http.set_route("/real-jwks", issuer.jwks())
    issuer_http.set_redirect(JWKS_PATH, issuer_http.url + "/real-jwks")
    server = start_server(
        tmp_path / "pki", "--token-issuer", issuer.issuer, "--token-jwks", issuer_http.url + JWKS_PATH, "--token-jwks-ca",
        issuer_http.ca_file)
    token = issuer.token("k")
    assert_problem(server.post_csr(python_csr()[0], token), 401, "token_invalid", forbidden=token_parts(token))
    assert issuer_http.count("GET", JWKS_PATH) >= 1
    assert issuer_http.count("GET", "/real-jwks") == 0, "the redirect was followed"


def test_a_discovery_document_naming_another_issuer_is_refused(sigil, start_server, tmp_path, issuer_http):
    issuer = TokenIssuer(issuer_http.url)
    issuer.add_key("k", "RS256")
    serve_oidc_issuer(issuer_http, issuer)
    document = dict(issuer_http.routes["/.well-known/openid-configuration"][1], issuer="https://attacker.example")
    issuer_http.set_route("/.well-known/openid-configuration", document)
    server = start_server(tmp_path / "pki", "--token-issuer", issuer.issuer, "--token-jwks-ca", issuer_http.ca_file)
    token = issuer.token("k")
    assert_problem(server.post_csr(python_csr()[0], token), 401, "token_invalid", forbidden=token_parts(token))
    assert issuer_http.count("GET", JWKS_PATH) == 0, "keys were fetched from a document for another issuer"
    serve_oidc_issuer(issuer_http, issuer)  # the right document: accepted once the refresh limit allows


@pytest.mark.parametrize(
    "args",
    [
        ("--token-issuer", "http://127.0.0.1:9/issuer"),
        ("--token-issuer", "https://kubernetes.default.svc", "--token-jwks", "http://127.0.0.1:9/jwks"),
        ("--token-review", "http://127.0.0.1:9"),
    ],
    ids=["discovery", "jwks-url", "tokenreview"],
)
def test_plain_http_token_sources_are_refused_at_start(sigil, tmp_path, args):
    result = sigil.run("serve", "--data-dir", tmp_path / "pki", "--listen", "127.0.0.1:0", *args, timeout=60)
    line = assert_one_line_failure(result)
    assert "configuration_invalid" in line and "https://" in line, line


def test_the_agent_refuses_a_plain_http_server(sigil, tmp_path):
    (tmp_path / "token").write_text("x")
    (tmp_path / "ca.pem").write_text("")
    result = sigil.run(
        "agent", "--server", "http://127.0.0.1:9", "--token-file", tmp_path / "token", "--ca-bundle", tmp_path / "ca.pem",
        "--out-dir", tmp_path / "out", "--once")
    line = assert_one_line_failure(result)
    assert "--server must be an https:// URL" in line, line
