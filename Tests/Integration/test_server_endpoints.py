"""The read endpoints: /v1/bundle (SPIFFE bundle, ETag, If-None-Match), /v1/bundle.pem,
/v1/authorities, /v1/crl (DER CRL), /healthz, /readyz and /metrics (checked with prometheus_client's
parser)."""
from __future__ import annotations

import base64
import datetime

import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families
from spiffe import X509Bundle, TrustDomain

from sigil_harness import WEB_ID, assert_issued, dev_token, load_certs, python_csr, sha256_hex


@pytest.fixture(scope="module")
def server(module_servers, tmp_path_factory):
    return module_servers(tmp_path_factory.mktemp("endpoints") / "pki")


@pytest.fixture(scope="module")
def token(sigil, server) -> str:
    return dev_token(sigil, server.data_dir, "default", "web")


def test_bundle_is_a_spiffe_jwk_set_with_the_data_dir_roots(server):
    response = server.get("/v1/bundle")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    bundle = response.json()
    assert isinstance(bundle["spiffe_sequence"], int) and bundle["spiffe_sequence"] >= 1, bundle
    assert isinstance(bundle["spiffe_refresh_hint"], int) and bundle["spiffe_refresh_hint"] > 0, bundle
    roots = []
    for key in bundle["keys"]:
        assert key["use"] == "x509-svid" and "kid" not in key and len(key["x5c"]) == 1, key
        roots.append(x509.load_der_x509_certificate(base64.b64decode(key["x5c"][0], validate=True)))
    assert [sha256_hex(c) for c in roots] == [sha256_hex(c) for c in load_certs(server.bundle)]
    # py-spiffe accepts the x5c certificates as the trust domain's X.509 authorities.
    parsed = X509Bundle.parse_raw(TrustDomain("cluster.local"), b"".join(base64.b64decode(k["x5c"][0]) for k in bundle["keys"]))
    assert len(parsed.x509_authorities) == len(roots)


def test_bundle_etag_and_if_none_match(server):
    first = server.get("/v1/bundle")
    etag = first.headers.get("ETag")
    assert etag and etag.startswith('"') and etag.endswith('"'), first.headers
    assert server.get("/v1/bundle").headers["ETag"] == etag, "the ETag of an unchanged bundle must be stable"

    not_modified = server.get("/v1/bundle", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304, not_modified.text
    assert not_modified.content == b""
    assert not_modified.headers.get("ETag") == etag
    listed = server.get("/v1/bundle", headers={"If-None-Match": f'"00000000", {etag}'})
    assert listed.status_code == 304
    stale = server.get("/v1/bundle", headers={"If-None-Match": '"not-the-etag"'})
    assert stale.status_code == 200 and stale.json() == first.json()


def test_bundle_pem_is_the_data_dir_bundle(server):
    response = server.get("/v1/bundle.pem")
    assert response.status_code == 200
    served = x509.load_pem_x509_certificates(response.content)
    assert [sha256_hex(c) for c in served] == [sha256_hex(c) for c in load_certs(server.bundle)]


def test_authorities_list_the_active_root_and_intermediate(server, token):
    response = server.get("/v1/authorities")
    assert response.status_code == 200
    report = response.json()
    assert report["trust_domain"] == "cluster.local"
    active = {a["role"]: a for a in report["authorities"] if a["state"] == "active"}
    assert set(active) == {"root", "intermediate"}, report
    root, intermediate = active["root"], active["intermediate"]
    assert intermediate["parent_id"] == root["id"]
    assert root["sha256_fingerprint"] == sha256_hex(load_certs(server.bundle)[0])
    # The intermediate listed is the one that signs: it is the second certificate of every chain.
    body = assert_issued(server.post_csr(python_csr()[0], token), WEB_ID)
    signer = x509.load_pem_x509_certificate(body["chain"][1].encode())
    assert intermediate["sha256_fingerprint"] == sha256_hex(signer)
    for authority in report["authorities"]:
        not_before = datetime.datetime.fromisoformat(authority["not_before"].replace("Z", "+00:00"))
        not_after = datetime.datetime.fromisoformat(authority["not_after"].replace("Z", "+00:00"))
        assert not_before < datetime.datetime.now(datetime.timezone.utc) < not_after, authority


def test_crl_is_a_der_crl_signed_by_the_root(server):
    response = server.get("/v1/crl")
    assert response.status_code == 200
    crl = x509.load_der_x509_crl(response.content)
    root = load_certs(server.bundle)[0]
    assert crl.issuer == root.subject
    assert crl.is_signature_valid(root.public_key())
    assert len(list(crl)) == 0, "nothing is revoked on a fresh CA"
    now = datetime.datetime.now(datetime.timezone.utc)
    assert crl.last_update_utc <= now < crl.next_update_utc


def test_health_and_readiness(server):
    health = server.get("/healthz")
    assert health.status_code == 200, health.text
    ready = server.get("/readyz")
    assert ready.status_code == 200, ready.text


def metric_families(server) -> dict:
    response = server.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def sample(families: dict, family: str, name: str, **labels) -> float:
    values = [s.value for s in families[family].samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(values)


def test_metrics_parse_as_prometheus_text(server, token):
    assert_issued(server.post_csr(python_csr()[0], token), WEB_ID)
    server.post_csr("garbage", token)
    families = metric_families(server)

    assert families["sigil_http_requests"].type == "counter"
    assert sample(families, "sigil_http_requests", "sigil_http_requests_total", route="/v1/certificates", code="201") >= 1
    assert sample(families, "sigil_http_requests", "sigil_http_requests_total", route="/v1/certificates", code="400") >= 1
    assert families["sigil_certificates_issued"].type == "counter"
    assert sample(families, "sigil_certificates_issued", "sigil_certificates_issued_total") >= 1
    assert sample(families, "sigil_certificates_denied", "sigil_certificates_denied_total", reason="csr_invalid") >= 1
    histogram = families["sigil_issuance_duration_seconds"]
    assert histogram.type == "histogram"
    assert sample(families, "sigil_issuance_duration_seconds", "sigil_issuance_duration_seconds_count") >= 1
    expiry = [s for s in families["sigil_authority_seconds_until_expiry"].samples if s.labels.get("state") == "active"]
    assert {s.labels["role"] for s in expiry} == {"root", "intermediate"}
    assert all(s.value > 0 for s in expiry)


def test_counters_count(server, token):
    before = metric_families(server)
    issued = sample(before, "sigil_certificates_issued", "sigil_certificates_issued_total")
    assert_issued(server.post_csr(python_csr()[0], token), WEB_ID)
    assert_issued(server.post_csr(python_csr()[0], token), WEB_ID)
    after = metric_families(server)
    assert sample(after, "sigil_certificates_issued", "sigil_certificates_issued_total") == issued + 2


def test_token_cache_hits_grow_when_a_token_is_reused(sigil, server):
    fresh = dev_token(sigil, server.data_dir, "default", "cache")
    identity = "spiffe://cluster.local/ns/default/sa/cache"
    csr = python_csr(spiffe_id=identity)[0]
    hits = lambda: sample(metric_families(server), "sigil_token_cache_hits", "sigil_token_cache_hits")  # noqa: E731
    start = hits()
    assert_issued(server.post_csr(csr, fresh), identity)
    assert hits() == start, "the first use of a token cannot be a cache hit"
    assert_issued(server.post_csr(csr, fresh), identity)
    assert hits() == start + 1
