"""The README quick start, as a new user runs it: `sigil serve` on an empty data dir, `sigil dev token`,
a CSR made by `openssl req`, POST /v1/certificates over HTTPS, and a chain that passes the shared
conformance kit and `sigil inspect cert`."""
from __future__ import annotations

import datetime
import json
import shutil

import pytest

from sigil_harness import WEB_ID, assert_issued, dev_token, run, write_pem_chain


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_quick_start_issues_a_conformant_svid(sigil, start_server, make_csr, assert_conformant, tmp_path):
    data_dir = tmp_path / "pki"
    server = start_server(data_dir)
    for name in ("bundle.pem", "kek", "sigil.db"):
        assert (data_dir / name).exists(), f"sigil serve did not initialise {name}:\n{server.describe()}"
    assert "LOCAL MODE" in server.stderr, f"local mode must be announced loudly:\n{server.describe()}"

    token = dev_token(sigil, data_dir)
    csr = make_csr()
    response = server.post_csr(csr.path.read_text(), token)

    body = assert_issued(response, WEB_ID)
    chain = write_pem_chain(tmp_path / "svid.pem", body["chain"])
    bundle = write_pem_chain(tmp_path / "bundle-from-response.pem", body["trust_bundle"])
    assert_conformant(chain, server.bundle, key=csr.key, spiffe_id=WEB_ID)
    # The trust bundle in the response is the one in the data dir.
    assert bundle.read_text().strip() == server.bundle.read_text().strip()
    explained = sigil.run("inspect", "cert", "--data-dir", data_dir, chain)
    assert explained.returncode == 0, f"sigil inspect cert does not verify the issued chain:\n{explained}"

    # Default lifetime 1 h (plus the 30 s backdate), renew at half-life.
    not_before, not_after, renew_after = (parse_time(body[k]) for k in ("not_before", "not_after", "renew_after"))
    now = datetime.datetime.now(datetime.timezone.utc)
    assert not_before <= now <= not_after
    assert abs((not_after - now).total_seconds() - 3600) < 120, body
    midpoint = not_before + (not_after - not_before) / 2
    assert abs((renew_after - midpoint).total_seconds()) <= 2, body


def test_quick_start_with_curl(sigil, start_server, make_csr, tmp_path):
    """Exactly the README's transport: curl with --cacert bundle.pem."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    server = start_server(tmp_path / "pki")
    token = dev_token(sigil, server.data_dir)
    csr = make_csr()
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"csr": csr.path.read_text()}))
    result = run([
        "curl", "-sS", "--fail-with-body", "--cacert", server.bundle, "-H", f"Authorization: Bearer {token}",
        "-H", "Content-Type: application/json", "--data-binary", f"@{request}", f"{server.url}/v1/certificates",
    ])
    assert result.returncode == 0, result
    assert json.loads(result.stdout)["spiffe_id"] == WEB_ID, result


def test_dev_tokens_spread_over_service_accounts(sigil, start_server, make_csr, tmp_path):
    """`dev token --count N --spread K` (the bench's many-identity load): distinct tokens, round-robin over
    <service-account>-0 … -K-1, each accepted for its own identity."""
    server = start_server(tmp_path / "pki")
    tokens = dev_token(sigil, server.data_dir, "default", "web", "--count", "4", "--spread", "2").splitlines()
    assert len(set(tokens)) == 4, tokens
    csr = make_csr(sans=[])  # no URI SAN: the identity comes from each token
    issued = [assert_issued(server.post_csr(csr.path.read_text(), token), f"spiffe://cluster.local/ns/default/sa/web-{i % 2}")
              for i, token in enumerate(tokens)]
    assert len({body["serial"] for body in issued}) == 4
    refused = sigil.run("dev", "token", "--data-dir", server.data_dir, "--namespace", "default", "--service-account", "web",
                        "--count", "2", "--spread", "0")
    assert refused.returncode != 0 and "configuration_invalid" in refused.stderr, refused
