"""TokenReview mode (`sigil serve --token-review URL`).

A FAKE Kubernetes API server is used here: no Kubernetes API server runs in this environment, so a
small Python http.server on 127.0.0.1 answers POST /apis/authentication.k8s.io/v1/tokenreviews with
TokenReview JSON (authenticated true/false, user.username, audiences) the way kube-apiserver does.
Everything else (Sigil, HTTPS, the CSR, the issued chain) is real."""
from __future__ import annotations

import json
import secrets
import time

import pytest

from sigil_harness import LocalHTTPServer, WEB_ID, assert_issued, assert_problem, python_csr, token_parts, unsigned_jwt, wait_until

REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
CREDENTIAL = "fake-apiserver-credential-" + secrets.token_hex(8)


class FakeTokenReviewAPI:
    """Decides by the token's prefix: good-* authenticated as default/web, payments-* as payments/api,
    denied-* not authenticated, aud-* authenticated for another audience, noaud-* authenticated with no
    audiences in the answer (Kubernetes' way of saying "the API server's own audience"), node-* a node
    (not a service account); a JWT (eyJ…) is authenticated as default/web, as the API server would for a
    live projected token."""

    def __init__(self):
        self.http = LocalHTTPServer(post=self.review)
        self.reviews: list[dict] = []

    def review(self, path: str, headers: dict, body: bytes):
        if path != REVIEW_PATH:
            return 404, {"kind": "Status", "status": "Failure", "code": 404}
        review = json.loads(body)
        self.reviews.append({"headers": headers, "body": review})
        token = review["spec"]["token"]
        status: dict
        if token.startswith("eyJ"):
            token = "good-jwt"
        if token.startswith(("good-", "payments-", "aud-", "noaud-", "node-")):
            username = {
                "good-": "system:serviceaccount:default:web",
                "payments-": "system:serviceaccount:payments:api",
                "aud-": "system:serviceaccount:default:web",
                "noaud-": "system:serviceaccount:default:web",
                "node-": "system:node:worker-1",
            }[token.split("-")[0] + "-"]
            status = {
                "authenticated": True,
                "user": {
                    "username": username,
                    "uid": "6f3e2c1a-0000-4000-8000-000000000001",
                    "groups": ["system:serviceaccounts", "system:authenticated"],
                    "extra": {"authentication.kubernetes.io/pod-name": ["web-7d9f8"]},
                },
                "audiences": ["some-other-audience"] if token.startswith("aud-") else review["spec"].get("audiences") or [],
            }
            if token.startswith("noaud-"):
                del status["audiences"]
        else:
            status = {"authenticated": False, "error": "[invalid bearer token, token lookup failed]"}
        return 201, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": review["spec"], "status": status}


@pytest.fixture(scope="module")
def api():
    fake = FakeTokenReviewAPI()
    yield fake
    fake.http.close()


@pytest.fixture(scope="module")
def server(module_servers, api, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tokenreview")
    credential = directory / "credential"
    credential.write_text(CREDENTIAL + "\n")
    return module_servers(
        directory / "pki", "--token-review", api.http.url, "--token-review-ca", api.http.ca_file, "--token-review-credential", credential
    )


def token(kind: str) -> str:
    return f"{kind}-{secrets.token_urlsafe(24)}"


def test_authenticated_review_issues_the_reviewed_identity(server, api):
    good = token("good")
    assert_issued(server.post_csr(python_csr()[0], good), WEB_ID)

    (review,) = [r for r in api.reviews if r["body"]["spec"]["token"] == good]
    body, headers = review["body"], {k.lower(): v for k, v in review["headers"].items()}
    assert body["apiVersion"] == "authentication.k8s.io/v1" and body["kind"] == "TokenReview", body
    assert body["spec"]["audiences"] == ["sigil"], body
    assert headers.get("authorization") == f"Bearer {CREDENTIAL}", headers
    assert headers.get("content-type", "").startswith("application/json"), headers


def test_identity_is_the_reviewed_username(server):
    assert_issued(server.post_csr(python_csr(spiffe_id=None)[0], token("payments")), "spiffe://cluster.local/ns/payments/sa/api")


@pytest.mark.parametrize(
    "kind, code",
    [("denied", "token_invalid"), ("aud", "audience_mismatch"), ("noaud", "audience_mismatch"), ("node", "token_invalid")],
)
def test_refused_review_is_refused(server, kind, code):
    refused = token(kind)
    assert_problem(server.post_csr(python_csr()[0], refused), 401, code, forbidden=token_parts(refused))
    assert refused not in server.stderr
    assert_issued(server.post_csr(python_csr()[0], token("good")), WEB_ID)


def test_reviewed_token_is_cached(server, api):
    """A token the API server accepted is not reviewed again on the next request."""
    good = token("good")
    csr = python_csr()[0]
    assert_issued(server.post_csr(csr, good), WEB_ID)
    assert_issued(server.post_csr(csr, good), WEB_ID)
    assert sum(1 for r in api.reviews if r["body"]["spec"]["token"] == good) == 1


def test_review_is_not_trusted_past_the_token_exp(server, api):
    """A review is cached until min(exp, 60 s): a token that expires in 2 s is reviewed again after that, not
    served from the cache for a minute."""
    exp = int(time.time()) + 2
    jwt_token = unsigned_jwt({"alg": "RS256", "kid": "k"}, {"exp": exp, "sub": "system:serviceaccount:default:web"}) + ".c2ln"
    csr = python_csr()[0]
    assert_issued(server.post_csr(csr, jwt_token), WEB_ID)
    assert_issued(server.post_csr(csr, jwt_token), WEB_ID)
    reviews = lambda: sum(1 for r in api.reviews if r["body"]["spec"]["token"] == jwt_token)  # noqa: E731
    assert reviews() == 1, "reviewed once while it lives"

    def reviewed_again():
        assert_issued(server.post_csr(csr, jwt_token), WEB_ID)
        return reviews() >= 2

    wait_until(reviewed_again, timeout=15, interval=0.5, what="the review to end with the token's exp")
