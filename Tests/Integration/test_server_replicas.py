"""Two replicas (issue 4): two `sigil serve` processes on one data dir (KEK) and one PostgreSQL
database, on different ports. Both issue, both publish the same authorities, an SVID from one renews
at the other, and one audit chain holds every issuance of both and verifies — also when both append
concurrently."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from sigil_harness import WEB_ID, assert_issued, audit_records, dev_token, python_csr, write_pem_chain


@pytest.fixture(scope="module")
def replicas(module_servers, module_postgres_database, tmp_path_factory):
    database = module_postgres_database()
    data_dir = tmp_path_factory.mktemp("replicas") / "pki"
    first = module_servers(data_dir, "--store", database.url)  # returns after its listening line
    second = module_servers(data_dir, "--store", database.url)
    assert first.url != second.url
    return first, second, database


@pytest.fixture(scope="module")
def token(sigil, replicas) -> str:
    first, _, database = replicas
    return dev_token(sigil, first.data_dir, "default", "web", "--store", database.url)


def authority_view(server) -> list[tuple]:
    response = server.get("/v1/authorities")
    assert response.status_code == 200
    body = response.json()
    return sorted((a["id"], a["role"], a["state"], a["sha256_fingerprint"]) for a in body["authorities"])


def test_both_replicas_issue_under_the_same_authorities(replicas, token):
    first, second, _ = replicas
    assert authority_view(first) == authority_view(second)
    assert first.get("/v1/bundle").json()["keys"] == second.get("/v1/bundle").json()["keys"]
    chains = [assert_issued(server.post_csr(python_csr()[0], token), WEB_ID)["chain"] for server in (first, second)]
    assert chains[0][1] == chains[1][1], "the replicas sign with different intermediates"


def test_an_svid_from_one_replica_renews_at_the_other(replicas, token, tmp_path):
    first, second, _ = replicas
    csr, key = python_csr()
    chain = write_pem_chain(tmp_path / "svid.pem", assert_issued(first.post_csr(csr, token), WEB_ID)["chain"])
    key_file = tmp_path / "svid.key"
    key_file.write_text(key)
    assert_issued(second.post_csr(csr, cert=(str(chain), str(key_file))), WEB_ID)


def test_one_chain_holds_every_issuance_of_both_replicas(sigil, replicas, token):
    first, second, database = replicas
    csr = python_csr()[0]

    def issue(server):
        return assert_issued(server.post_csr(csr, token), WEB_ID)["serial"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        serials = set(pool.map(issue, [first, second] * 12))
    assert len(serials) == 24

    first.stop()
    second.stop()
    assert (first.returncode, second.returncode) == (0, 0), first.describe() + second.describe()
    store = ("--data-dir", first.data_dir, "--store", database.url)
    result = sigil.ok("audit", "verify", *store)
    assert "OK" in result.stdout
    records = audit_records(sigil, *store)
    assert serials <= {r.get("serial") for r in records}, "issuances missing from the shared audit chain"
    actions = [r["action"] for r in records]
    assert actions.count("start") == 2 and actions.count("stop") == 2, actions
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
