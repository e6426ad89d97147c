"""`sigil init --upstream-cert/--upstream-key`: Sigil's intermediates chain to an imported CA."""
from __future__ import annotations

import json


from sigil_harness import WEB_ID, assert_clean_failure, load_certs, make_upstream_ca, sha256_hex


def test_leaves_chain_to_an_imported_upstream_ca(sigil, make_csr, assert_conformant, tmp_path):
    upstream_cert, upstream_key = make_upstream_ca(tmp_path)
    data_dir = tmp_path / "pki"
    sigil.ok("init", "--data-dir", data_dir, "--upstream-cert", upstream_cert, "--upstream-key", upstream_key)

    # The bundle holds the upstream root, and nothing else.
    assert load_certs(data_dir / "bundle.pem") == load_certs(upstream_cert)

    csr = make_csr()
    svid = tmp_path / "svid.pem"
    sigil.ok("issue", "--data-dir", data_dir, "--csr", csr.path, "--spiffe-id", WEB_ID, "--out", svid)
    assert_conformant(svid, upstream_cert, key=csr.key, spiffe_id=WEB_ID)

    report = json.loads(sigil.ok("inspect", "--data-dir", data_dir, "--json").stdout)
    (root,) = [a for a in report["authorities"] if a["role"] == "root"]
    assert root["upstream"] is True
    assert root["sha256_fingerprint"] == sha256_hex(load_certs(upstream_cert)[0])
    (intermediate,) = [a for a in report["authorities"] if a["role"] == "intermediate"]
    assert intermediate["state"] == "active" and intermediate["parent_id"] == root["id"]


def test_refuses_an_upstream_certificate_that_is_not_a_ca(sigil, tmp_path):
    cert, key = make_upstream_ca(tmp_path, ca=False)
    result = sigil.run("init", "--data-dir", tmp_path / "pki", "--upstream-cert", cert, "--upstream-key", key)
    assert_clean_failure(result)


def test_refuses_an_upstream_key_that_does_not_match(sigil, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cert, _ = make_upstream_ca(tmp_path / "a")
    _, other_key = make_upstream_ca(tmp_path / "b")
    result = sigil.run("init", "--data-dir", tmp_path / "pki", "--upstream-cert", cert, "--upstream-key", other_key)
    assert_clean_failure(result)


def test_a_refused_upstream_import_leaves_the_dir_initialisable(sigil, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "good").mkdir()
    bad_cert, bad_key = make_upstream_ca(tmp_path / "bad", ca=False)
    good_cert, good_key = make_upstream_ca(tmp_path / "good")
    data_dir = tmp_path / "pki"
    assert_clean_failure(sigil.run("init", "--data-dir", data_dir, "--upstream-cert", bad_cert,
                                   "--upstream-key", bad_key))

    sigil.ok("init", "--data-dir", data_dir, "--upstream-cert", good_cert, "--upstream-key", good_key)
