"""`sigil issue` refuses requests for anything but the one identity, with one line and a stable code."""
from __future__ import annotations

import os

import pytest

from sigil_harness import OTHER_ID, WEB_ID, assert_clean_failure, with_corrupted_signature


def refuse(sigil, data_dir, tmp_path, csr, spiffe_id=WEB_ID, code=None):
    """Runs `sigil issue --out`, asserts a clean refusal with `code`, and that no file was written."""
    out = tmp_path / "refused-svid.pem"
    result = sigil.run("issue", "--data-dir", data_dir, "--csr", csr, "--spiffe-id", spiffe_id, "--out", out)
    found = assert_clean_failure(result, code)
    assert not out.exists(), f"a refused request wrote {out}"
    return found


def test_refuses_two_uri_sans(sigil, data_dir, make_csr, tmp_path):
    csr = make_csr(sans=[f"URI:{WEB_ID}", f"URI:{OTHER_ID}"])
    refuse(sigil, data_dir, tmp_path, csr.path, code="identity_mismatch")


def test_refuses_a_csr_asking_for_a_ca(sigil, data_dir, make_csr, tmp_path):
    csr = make_csr(extensions=["basicConstraints=critical,CA:TRUE"])
    refuse(sigil, data_dir, tmp_path, csr.path, code="policy_denied")


@pytest.mark.parametrize("encoding", ["pem", "der"])
def test_refuses_a_csr_with_a_bad_signature(sigil, data_dir, make_csr, tmp_path, encoding):
    csr = make_csr()
    pem, der = tmp_path / "bad-signature.csr", tmp_path / "bad-signature.der"
    with_corrupted_signature(csr.path, pem, der)
    refuse(sigil, data_dir, tmp_path, pem if encoding == "pem" else der, code="csr_signature_invalid")


@pytest.mark.parametrize(
    "spiffe_id",
    [
        "spiffe://Cluster.local/ns/default/sa/web",  # uppercase trust domain
        "spiffe://cluster.local/ns/default/sa/web/",  # trailing slash
        "SPIFFE://cluster.local/ns/default/sa/web",  # uppercase scheme
        "http://cluster.local/ns/default/sa/web",  # wrong scheme
        "spiffe://cluster.local",  # no path: not a workload
        "spiffe://cluster.local//ns/default",  # empty segment
        "spiffe://cluster.local/ns/../sa/web",  # dot segment
        "spiffe://cluster.local/ns/default/sa/we%20b",  # percent-encoding
        "spiffe://cluster.local:8443/ns/default/sa/web",  # port
        "spiffe://user@cluster.local/ns/default/sa/web",  # userinfo
        "spiffe://cluster.local/ns/default/sa/web?x=1",  # query
        "spiffe://cluster.local/ns/default/sa/web#f",  # fragment
        "",
    ],
)
def test_refuses_an_invalid_spiffe_id(sigil, data_dir, make_csr, tmp_path, spiffe_id):
    csr = make_csr()
    refuse(sigil, data_dir, tmp_path, csr.path, spiffe_id=spiffe_id, code="invalid_spiffe_id")


def test_refuses_a_1024_bit_rsa_key(sigil, data_dir, make_csr, tmp_path):
    csr = make_csr(key_type="rsa-1024")
    refuse(sigil, data_dir, tmp_path, csr.path, code="key_not_allowed")


@pytest.mark.parametrize("content", ["random", "empty", "pem-garbage", "certificate"])
def test_refuses_bytes_that_are_not_a_csr(sigil, data_dir, tmp_path, content):
    path = tmp_path / "not-a.csr"
    if content == "random":
        path.write_bytes(os.urandom(600))
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "pem-garbage":
        path.write_text("-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgQ1NS\n-----END CERTIFICATE REQUEST-----\n")
    else:
        path.write_bytes((data_dir / "bundle.pem").read_bytes())
    refuse(sigil, data_dir, tmp_path, path, code="csr_invalid")


def test_refuses_a_uri_san_for_another_identity(sigil, data_dir, make_csr, tmp_path):
    csr = make_csr(sans=[f"URI:{OTHER_ID}"])
    refuse(sigil, data_dir, tmp_path, csr.path, code="identity_mismatch")


@pytest.mark.parametrize("san", ["IP:10.0.0.1", "IP:::1"])
def test_refuses_an_ip_san(sigil, data_dir, make_csr, tmp_path, san):
    csr = make_csr(sans=[f"URI:{WEB_ID}", san])
    refuse(sigil, data_dir, tmp_path, csr.path, code="policy_denied")


def test_refuses_an_identity_outside_the_trust_domain(sigil, data_dir, make_csr, tmp_path):
    other_domain = "spiffe://example.org/ns/default/sa/web"
    csr = make_csr(sans=[f"URI:{other_domain}"])
    refuse(sigil, data_dir, tmp_path, csr.path, spiffe_id=other_domain,
           code={"identity_mismatch", "policy_denied", "invalid_spiffe_id"})


def test_refusals_leave_no_certificate_in_the_inventory(sigil, data_dir, make_csr, tmp_path):
    import json

    refuse(sigil, data_dir, tmp_path, make_csr("two", sans=[f"URI:{WEB_ID}", f"URI:{OTHER_ID}"]).path)
    refuse(sigil, data_dir, tmp_path, make_csr("rsa", key_type="rsa-1024").path)
    tree = json.loads(sigil.ok("inspect", "--data-dir", data_dir, "--json").stdout)
    assert sum(a["live_certificates"] for a in tree["authorities"]) == 0, tree
