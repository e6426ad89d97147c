"""The audit chain on PostgreSQL (`--store postgres://…`, issue 4): issuances and refusals over HTTP
are listed with serial, subject, authority, outcome and code; `sigil audit verify` passes, and names
the record when one is edited, deleted, swapped or forged with `psql`. Each test works on a fresh
database of the server in $SIGIL_TEST_POSTGRES_URL (copies made with CREATE DATABASE … TEMPLATE)."""
from __future__ import annotations

import json

import pytest

from sigil_harness import TAMPERING, assert_audit_broken_at, assert_no_token_in, audit_records, issue_and_deny


@pytest.fixture(scope="module")
def audited(sigil, module_servers, module_postgres_database, tmp_path_factory):
    """A local-mode server on a fresh PostgreSQL database, after issue_and_deny, stopped gracefully.
    Returns (server, database, scenario)."""
    database = module_postgres_database()
    directory = tmp_path_factory.mktemp("audit-pg")
    server = module_servers(directory / "pki", "--store", database.url)
    assert not (directory / "pki" / "sigil.db").exists(), "with --store postgres the SQLite store must not be created"
    scenario = issue_and_deny(sigil, server, directory, store=("--store", database.url))
    assert server.stop() == 0, server.describe()
    return server, database, scenario


def store_args(server, database):
    return ("--data-dir", server.data_dir, "--store", database.url)


def test_issuances_and_refusals_are_listed(sigil, audited):
    server, database, scenario = audited
    records = audit_records(sigil, *store_args(server, database))
    by_serial = {r["serial"]: r for r in records if r.get("serial")}
    by_request = {r["request_id"]: r for r in records if r.get("request_id")}
    for serial, body in scenario.issued.items():
        record = by_serial[serial]
        assert record["outcome"] == "success" and record["subject"] == body["spiffe_id"], record
        assert record["action"] == ("renew" if serial in scenario.renewed else "issue"), record
        assert record["authority_id"].startswith("intermediate-"), record
    for request_id, code in scenario.denied.items():
        record = by_request[request_id]
        assert (record["action"], record["outcome"], record["code"]) == ("deny", "failure", code), record
    # The rows really are in PostgreSQL.
    rows = int(database.execute("SELECT count(*) FROM audit").strip())
    assert rows == len(records)


def test_chain_verifies(sigil, audited):
    server, database, _ = audited
    result = sigil.ok("audit", "verify", *store_args(server, database))
    assert "OK" in result.stdout, result


def test_export_is_json_lines_and_the_database_holds_no_token(sigil, audited):
    server, database, scenario = audited
    exported = sigil.ok("audit", "export", *store_args(server, database)).stdout
    assert [json.loads(line) for line in exported.splitlines()] == audit_records(sigil, *store_args(server, database))
    dump = database.execute("SELECT row_to_json(a) FROM audit a ORDER BY seq")
    for text, where in [(exported, "audit export"), (dump, "the PostgreSQL audit table"), (server.stderr, "the server log")]:
        assert_no_token_in(text, scenario.tokens, where)


@pytest.mark.parametrize("case", TAMPERING)
def test_verify_names_the_tampered_record(sigil, audited, module_postgres_database, case):
    server, database, _ = audited
    copy = module_postgres_database.clone(database)
    expected = TAMPERING[case](copy)
    assert_audit_broken_at(sigil.run("audit", "verify", "--data-dir", server.data_dir, "--store", copy.url), expected)
    copy.drop()
    sigil.ok("audit", "verify", *store_args(server, database))
