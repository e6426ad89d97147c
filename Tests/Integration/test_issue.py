"""`sigil issue`: leaves for every workload key type pass the shared conformance kit."""
from __future__ import annotations

import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sigil_harness import LEAF_KEY_TYPES, WEB_ID, assert_clean_failure, load_certs


@pytest.mark.parametrize("key_type", LEAF_KEY_TYPES)
def test_issued_svid_passes_conformance_kit(sigil, data_dir, make_csr, assert_conformant, tmp_path, key_type):
    csr = make_csr(key_type, key_type=key_type)
    svid = tmp_path / "svid.pem"
    sigil.ok("issue", "--data-dir", data_dir, "--csr", csr.path, "--spiffe-id", WEB_ID, "--out", svid)

    report = assert_conformant(svid, data_dir / "bundle.pem", key=csr.key, spiffe_id=WEB_ID)
    assert "0 failed" in report.stdout


def test_issue_writes_leaf_then_intermediate_to_stdout(sigil, data_dir, make_csr):
    csr = make_csr()
    result = sigil.ok("issue", "--data-dir", data_dir, "--csr", csr.path, "--spiffe-id", WEB_ID)

    chain = x509.load_pem_x509_certificates(result.stdout.encode())
    assert len(chain) == 2, result
    leaf, intermediate = chain
    assert leaf.issuer == intermediate.subject
    assert intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    root = load_certs(data_dir / "bundle.pem")[0]
    assert intermediate.issuer == root.subject


def test_issue_accepts_a_der_csr(sigil, data_dir, make_csr, assert_conformant, tmp_path):
    csr = make_csr()
    der = tmp_path / "workload.der"
    der.write_bytes(x509.load_pem_x509_csr(csr.path.read_bytes()).public_bytes(serialization.Encoding.DER))
    svid = tmp_path / "svid.pem"
    sigil.ok("issue", "--data-dir", data_dir, "--csr", der, "--spiffe-id", WEB_ID, "--out", svid)
    assert_conformant(svid, data_dir / "bundle.pem", key=csr.key, spiffe_id=WEB_ID)


def test_issue_json_is_the_api_issuance_response(sigil, data_dir, make_csr):
    csr = make_csr()
    result = sigil.ok("issue", "--data-dir", data_dir, "--csr", csr.path, "--spiffe-id", WEB_ID, "--json")

    body = json.loads(result.stdout)
    assert body["spiffe_id"] == WEB_ID
    leaf = x509.load_pem_x509_certificate(body["chain"][0].encode())
    assert format(leaf.serial_number, "x") == body["serial"].lower().lstrip("0")
    assert len(body["chain"]) == 2
    bundle = load_certs(data_dir / "bundle.pem")
    assert [x509.load_pem_x509_certificate(pem.encode()) for pem in body["trust_bundle"]] == bundle
    for field in ("not_before", "not_after", "renew_after"):
        assert body[field].endswith("Z"), body


def test_issue_honours_ttl_with_backdated_not_before(sigil, data_dir, make_csr, tmp_path):
    csr = make_csr()
    svid = tmp_path / "svid.pem"
    sigil.ok("issue", "--data-dir", data_dir, "--csr", csr.path, "--spiffe-id", WEB_ID, "--ttl", "5m", "--out", svid)

    leaf = load_certs(svid)[0]
    life = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    # 5 minutes plus the 30 s notBefore backdating (DESIGN.md), to the second.
    assert datetime.timedelta(minutes=5) <= life <= datetime.timedelta(minutes=5, seconds=31), life


def test_issue_refuses_ttl_beyond_policy_maximum(sigil, data_dir, make_csr, tmp_path):
    csr = make_csr()
    out = tmp_path / "svid.pem"
    result = sigil.run("issue", "--data-dir", data_dir, "--csr", csr.path, "--spiffe-id", WEB_ID, "--ttl", "25h",
                       "--out", out)
    assert_clean_failure(result, "ttl_out_of_range")
    assert not out.exists()
