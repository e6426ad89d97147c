"""Renewal by mTLS: an SVID Sigil issued, presented as the TLS client certificate with no Authorization
header, renews the same identity; client certificates from any other CA are refused."""
from __future__ import annotations

import json

import pytest

from sigil_harness import (
    OTHER_ID,
    WEB_ID,
    assert_issued,
    assert_problem,
    dev_token,
    make_csr,
    make_upstream_ca,
    python_csr,
    run,
    write_pem_chain,
)


@pytest.fixture(scope="module")
def server(module_servers, tmp_path_factory):
    return module_servers(tmp_path_factory.mktemp("mtls") / "pki")


@pytest.fixture(scope="module")
def svid(sigil, server, tmp_path_factory):
    """(chain file, key file, issuance body) of an SVID for WEB_ID, obtained with a dev token."""
    directory = tmp_path_factory.mktemp("svid")
    token = dev_token(sigil, server.data_dir, "default", "web")
    csr, key = python_csr()
    body = assert_issued(server.post_csr(csr, token), WEB_ID)
    key_file = directory / "svid.key"
    key_file.write_text(key)
    return write_pem_chain(directory / "svid.pem", body["chain"]), key_file, body


def test_svid_client_certificate_renews_the_same_identity(sigil, server, svid):
    chain, key, first = svid
    csr, _ = python_csr()  # a fresh key, as an agent rotating its key would send
    response = server.post_csr(csr, cert=(str(chain), str(key)))
    renewed = assert_issued(response, WEB_ID)
    assert renewed["serial"] != first["serial"]

    records = [json.loads(line) for line in sigil.ok("audit", "list", "--data-dir", server.data_dir, "--json").stdout.splitlines()]
    (record,) = [r for r in records if r.get("serial") == renewed["serial"]]
    assert record["outcome"] == "success" and record["subject"] == WEB_ID, record
    assert record["action"] == "renew", record
    assert "token_hmac" not in record, f"a renewal by mTLS has no token to record: {record}"


def test_renewal_cannot_change_identity(server, svid):
    chain, key, _ = svid
    csr, _ = python_csr(spiffe_id=OTHER_ID)
    assert_problem(server.post_csr(csr, cert=(str(chain), str(key))), 403, "identity_mismatch")


def test_leaf_without_its_intermediate_renews(server, svid, tmp_path):
    """A client that sends only its leaf: Sigil knows its own intermediates."""
    chain, key, body = svid
    leaf_only = write_pem_chain(tmp_path / "leaf.pem", body["chain"][:1])
    assert_issued(server.post_csr(python_csr()[0], cert=(str(leaf_only), str(key))), WEB_ID)


def _foreign_svid_from_openssl(directory):
    """A SPIFFE-shaped leaf for WEB_ID (URI SAN, clientAuth) signed by a CA made with openssl."""
    ca_cert, ca_key = make_upstream_ca(directory)
    csr = make_csr(directory, "foreign")
    leaf = directory / "foreign.pem"
    extensions = directory / "leaf.ext"
    extensions.write_text(
        f"subjectAltName=critical,URI:{WEB_ID}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    result = run([
        "openssl", "x509", "-req", "-in", csr.path, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
        "-days", "1", "-extfile", extensions, "-out", leaf,
    ])
    assert result.returncode == 0, result
    chain = directory / "foreign-chain.pem"
    chain.write_text(leaf.read_text() + ca_cert.read_text())
    return chain, csr.key


def _foreign_svid_from_another_sigil(sigil, directory):
    """A real X509-SVID for the same SPIFFE ID from another Sigil CA of the same trust domain."""
    other = directory / "other-pki"
    sigil.ok("init", "--data-dir", other)
    csr = make_csr(directory, "other-sigil")
    chain = directory / "other-sigil.pem"
    sigil.ok("issue", "--data-dir", other, "--csr", csr.path, "--spiffe-id", WEB_ID, "--out", chain)
    return chain, csr.key


def _self_signed_leaf(directory):
    cert, key = directory / "self.pem", directory / "self.key"
    result = run([
        "openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", cert, "-days", "1", "-subj", "/O=self", "-addext", f"subjectAltName=URI:{WEB_ID}",
        "-addext", "extendedKeyUsage=clientAuth",
    ])
    assert result.returncode == 0, result
    return cert, key


@pytest.mark.parametrize("source", ["openssl-ca", "another-sigil", "self-signed"])
def test_foreign_client_certificate_is_refused(sigil, server, tmp_path, source):
    if source == "openssl-ca":
        chain, key = _foreign_svid_from_openssl(tmp_path)
    elif source == "another-sigil":
        chain, key = _foreign_svid_from_another_sigil(sigil, tmp_path)
    else:
        chain, key = _self_signed_leaf(tmp_path)
    response = server.post_csr(python_csr()[0], cert=(str(chain), str(key)))
    assert_problem(response, 401, "unauthenticated")


def test_client_certificate_is_not_needed_for_read_endpoints(server, svid):
    """mTLS is optional at the handshake: plain clients still read the bundle."""
    assert server.get("/v1/bundle").status_code == 200
    chain, key, _ = svid
    assert server.get("/v1/bundle", cert=(str(chain), str(key))).status_code == 200


def test_svid_under_a_tainted_intermediate_is_refused(sigil, start_server, tmp_path):
    """Break-glass: `sigil admin rotate intermediate --taint-old`; SVIDs under the tainted intermediate
    can no longer renew by mTLS, new SVIDs (from the successor) can."""
    server = start_server(tmp_path / "pki")
    token = dev_token(sigil, server.data_dir, "default", "web")
    csr, key = python_csr()
    key_file = tmp_path / "svid.key"
    key_file.write_text(key)
    old = write_pem_chain(tmp_path / "old.pem", assert_issued(server.post_csr(csr, token), WEB_ID)["chain"])
    assert_issued(server.post_csr(csr, cert=(str(old), str(key_file))), WEB_ID)

    rotated = sigil.run(
        "admin", "rotate", "intermediate", "--taint-old", "--reason", "integration test: key compromise",
        "--socket", server.data_dir / "admin.sock",
    )
    assert rotated.returncode == 0, f"{rotated}\n{server.describe()}"

    assert_problem(server.post_csr(csr, cert=(str(old), str(key_file))), 401, "unauthenticated")
    new = write_pem_chain(tmp_path / "new.pem", assert_issued(server.post_csr(csr, token), WEB_ID)["chain"])
    assert new.read_text().split("-----END CERTIFICATE-----")[1] != old.read_text().split("-----END CERTIFICATE-----")[1], (
        "the new SVID still chains through the tainted intermediate"
    )
    assert_issued(server.post_csr(csr, cert=(str(new), str(key_file))), WEB_ID)
