"""`sigil inspect` (the authority tree) and `sigil inspect cert` (explain and verify one certificate)."""
from __future__ import annotations

import json
import re

from cryptography.hazmat.primitives import serialization

from sigil_harness import TRUST_DOMAIN, WEB_ID, load_certs, sha256_hex

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def tree(sigil, data_dir, *extra) -> dict:
    return json.loads(sigil.ok("inspect", *extra, "--data-dir", data_dir, "--json").stdout)


def by_role(report: dict) -> dict:
    roles = {}
    for authority in report["authorities"]:
        roles.setdefault(authority["role"], []).append(authority)
    return roles


def issue(sigil, data_dir, make_csr, out, name="workload"):
    csr = make_csr(name)
    sigil.ok("issue", "--data-dir", data_dir, "--csr", csr.path, "--spiffe-id", WEB_ID, "--out", out)
    return out


def test_inspect_json_shows_an_active_root_and_intermediate(sigil, data_dir):
    report = tree(sigil, data_dir)

    assert report["trust_domain"] == TRUST_DOMAIN
    roles = by_role(report)
    assert sorted(roles) == ["intermediate", "root"], report
    (root,), (intermediate,) = roles["root"], roles["intermediate"]
    for authority in (root, intermediate):
        assert authority["state"] == "active", authority
        assert HEX64.match(authority["sha256_fingerprint"]), authority
        assert HEX64.match(authority["public_key_sha256"]), authority
        assert authority["seconds_left"] > 0, authority
    assert intermediate["parent_id"] == root["id"]
    assert root["upstream"] is False
    # The root's fingerprint is the SHA-256 of the certificate in bundle.pem.
    assert root["sha256_fingerprint"] == sha256_hex(load_certs(data_dir / "bundle.pem")[0])


def test_inspect_tree_is_the_default_subcommand(sigil, data_dir):
    default = tree(sigil, data_dir)
    explicit = tree(sigil, data_dir, "tree")
    assert [(a["id"], a["state"]) for a in default["authorities"]] == [
        (a["id"], a["state"]) for a in explicit["authorities"]
    ]
    text = sigil.ok("inspect", "--data-dir", data_dir).stdout
    for authority in default["authorities"]:
        assert authority["id"] in text, text


def test_live_certificate_count_grows_with_each_issue(sigil, data_dir, make_csr, tmp_path):
    def live() -> int:
        (intermediate,) = by_role(tree(sigil, data_dir))["intermediate"]
        return intermediate["live_certificates"]

    assert live() == 0
    issue(sigil, data_dir, make_csr, tmp_path / "one.pem", "one")
    assert live() == 1
    issue(sigil, data_dir, make_csr, tmp_path / "two.pem", "two")
    assert live() == 2


def test_inspect_cert_verifies_an_issued_svid(sigil, data_dir, make_csr, tmp_path):
    svid = issue(sigil, data_dir, make_csr, tmp_path / "svid.pem")

    result = sigil.run("inspect", "cert", "--data-dir", data_dir, svid)
    assert result.returncode == 0, result
    assert re.search(r"^verifies\s+yes\b", result.stdout, re.M), result
    assert WEB_ID in result.stdout

    report = json.loads(sigil.ok("inspect", "cert", "--data-dir", data_dir, svid, "--json").stdout)
    leaf = load_certs(svid)[0]
    (intermediate,) = by_role(tree(sigil, data_dir))["intermediate"]
    assert report["verifies"] is True
    assert report["issuing_authority"] == intermediate["id"]
    assert int(report["serial"], 16) == leaf.serial_number
    assert report["sha256_fingerprint"] == sha256_hex(leaf)
    assert report["is_ca"] is False
    assert report["san"] == [f"URI:{WEB_ID}"]


def test_inspect_cert_rejects_a_certificate_from_another_ca(sigil, data_dir, other_data_dir, make_csr, tmp_path):
    foreign = issue(sigil, other_data_dir, make_csr, tmp_path / "foreign.pem")

    result = sigil.run("inspect", "cert", "--data-dir", data_dir, foreign)
    assert result.returncode == 1, result
    assert re.search(r"^verifies\s+no\b", result.stdout, re.M), result

    as_json = sigil.run("inspect", "cert", "--data-dir", data_dir, foreign, "--json")
    assert as_json.returncode == 1, as_json
    assert json.loads(as_json.stdout)["verifies"] is False


def test_inspect_cert_finds_the_intermediate_in_the_store(sigil, data_dir, make_csr, tmp_path):
    svid = issue(sigil, data_dir, make_csr, tmp_path / "svid.pem")
    leaf_only = tmp_path / "leaf.pem"
    leaf_only.write_bytes(load_certs(svid)[0].public_bytes(serialization.Encoding.PEM))

    result = sigil.run("inspect", "cert", "--data-dir", data_dir, leaf_only, "--json")
    assert result.returncode == 0, result
    assert json.loads(result.stdout)["verifies"] is True


def test_inspect_cert_refuses_a_file_without_a_certificate(sigil, data_dir, tmp_path):
    path = tmp_path / "garbage.pem"
    path.write_bytes(b"not a certificate\n")
    result = sigil.run("inspect", "cert", "--data-dir", data_dir, path)
    assert result.returncode != 0, result
    assert len(result.stderr.splitlines()) == 1, result
    assert result.stderr.startswith("Error: "), result
