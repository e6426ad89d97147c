"""Break-glass reaches every authority, and renewal needs a certificate Sigil issued (issue 16, findings 1-3),
over real HTTPS against the real binary.

The key-compromise drill: a store backup plus `pki/kek` expose the key of an intermediate that has since
retired. A leaf forged with that key (a perfect signature, for any identity) is refused for renewal because
Sigil never issued it; `sigil admin taint` and `sigil admin revoke` then put the intermediate in the root's
CRL, its key is no longer in the store, and `sigil audit verify` passes with every step recorded."""
from __future__ import annotations


import pytest

from sigil_harness import (
    WEB_ID,
    assert_issued,
    assert_problem,
    audit_records,
    dev_token,
    python_csr,
    wait_until,
    write_pem_chain,
)
from trust_support import (
    admin,
    admin_json,
    authority_certificate,
    authority_ids,
    backup,
    crl_serials,
    forge_leaf,
    openssl_crl_check,
    query,
    stolen_key,
)

ADMIN_ID = "spiffe://cluster.local/ns/prod/sa/admin"


@pytest.fixture
def svid(sigil, start_server, tmp_path):
    """A server, and an SVID for WEB_ID obtained with a token: (server, chain file, key file, body)."""
    def make(*serve_args):
        server = start_server(tmp_path / "pki", *serve_args)
        token = dev_token(sigil, server.data_dir, "default", "web")
        csr, key = python_csr()
        body = assert_issued(server.post_csr(csr, token), WEB_ID)
        key_file = tmp_path / "svid.key"
        key_file.write_text(key)
        return server, write_pem_chain(tmp_path / "svid.pem", body["chain"]), key_file, body

    return make


def test_key_compromise_drill(sigil, svid, tmp_path):
    server, chain, key, issued = svid()
    database = server.data_dir / "sigil.db"
    (old,) = authority_ids(sigil, server, "intermediate", "active")
    (root,) = authority_ids(sigil, server, "root", "active")
    copy = backup(server, tmp_path / "backup.db")

    # A routine rotation retires the intermediate, and its key leaves the store with it (audited).
    rotated = admin(sigil, server, "rotate", "intermediate", "--reason", "routine rotation")
    assert rotated.returncode == 0, rotated
    assert query(database, "SELECT state, sealed_key IS NULL FROM authorities WHERE id = ?", old) == [("retired", 1)]
    erased = [r for r in audit_records(sigil, "--data-dir", server.data_dir) if r["action"] == "erase_key"]
    assert [r["authority_id"] for r in erased] == [old], erased

    # The attacker holds the backup and the KEK: the retired intermediate's key signs anything.
    issuer = authority_certificate(copy, old)
    leaked = stolen_key(copy, server.data_dir / "kek", old)
    forged_chain, forged_key = forge_leaf(tmp_path, issuer, leaked, ADMIN_ID)
    assert_problem(server.post_csr(python_csr(spiffe_id=ADMIN_ID)[0], cert=(str(forged_chain), str(forged_key))), 401, "unauthenticated")
    # Copying a real certificate's serial and identity does not help: the key is not the one Sigil certified.
    twin_chain, twin_key = forge_leaf(tmp_path, issuer, leaked, WEB_ID, name="twin", serial=int(issued["serial"], 16))
    assert_problem(server.post_csr(python_csr()[0], cert=(str(twin_chain), str(twin_key))), 401, "unauthenticated")
    # The real SVID still renews: its issuer is retired, not tainted.
    assert_issued(server.post_csr(python_csr()[0], cert=(str(chain), str(key))), WEB_ID)

    # Break-glass on the retired intermediate: blast radius first, then taint and revoke.
    dry = admin_json(sigil, server, "taint", old, "--dry-run", "--reason", "backup with kek leaked")
    assert dry["dry_run"] and dry["previous_state"] == "retired", dry
    assert dry["blast_radius"]["live_certificates"] == 1 and dry["blast_radius"]["identities"] == [WEB_ID], dry
    assert authority_ids(sigil, server, "intermediate", "retired") == [old]
    tainted = admin(sigil, server, "taint", old, "--reason", "backup with kek leaked")
    assert tainted.returncode == 0 and f"tainted intermediate {old}" in tainted.stdout, tainted
    assert_problem(server.post_csr(python_csr()[0], cert=(str(chain), str(key))), 401, "unauthenticated")
    revoked = admin(sigil, server, "revoke", old, "--reason", "compromise confirmed")
    assert revoked.returncode == 0, revoked

    root_certificate = authority_certificate(database, root)
    crl = server.get("/v1/crl")
    assert crl.status_code == 200 and crl.headers["Content-Type"] == "application/pkix-crl"
    assert crl_serials(crl.content, root_certificate) == {issuer.serial_number}
    # openssl refuses the old SVID with the CRLs Sigil publishes.
    check = openssl_crl_check(server.bundle, chain, server.get("/v1/crl.pem").text, tmp_path)
    assert check.returncode != 0 and "revoked" in (check.stdout + check.stderr), check

    assert query(database, "SELECT state, sealed_key IS NULL FROM authorities WHERE id = ?", old) == [("revoked", 1)]
    verify = sigil.run("audit", "verify", "--data-dir", server.data_dir)
    assert verify.returncode == 0, verify
    records = audit_records(sigil, "--data-dir", server.data_dir)
    steps = [(r["action"], r["outcome"]) for r in records if r.get("authority_id") == old and r["action"].startswith(("admin_", "erase", "retire"))]
    assert steps == [("retire", "success"), ("erase_key", "success"), ("admin_taint", "success"), ("admin_taint", "success"),
                     ("admin_revoke", "success")], steps
    denials = [r for r in records if r["action"] == "deny" and r.get("code") == "unauthenticated"]
    assert len(denials) == 3, denials  # the forged leaf, its twin, and the SVID under the tainted issuer


@pytest.mark.parametrize("when", ["retired", "active"])
def test_a_leaf_forged_with_a_leaked_key_does_not_renew(sigil, svid, tmp_path, when):
    """Finding 2 alone: whatever key leaked (a retired intermediate's, or the active one's), a leaf Sigil did not
    issue is not in the inventory and does not renew, for any identity."""
    server, *_ = svid()
    (intermediate,) = authority_ids(sigil, server, "intermediate", "active")
    copy = backup(server, tmp_path / "backup.db")
    if when == "retired":
        assert admin(sigil, server, "rotate", "intermediate", "--reason", "routine").returncode == 0
    issuer = authority_certificate(copy, intermediate)
    chain, key = forge_leaf(tmp_path, issuer, stolen_key(copy, server.data_dir / "kek", intermediate), ADMIN_ID)
    response = server.post_csr(python_csr(spiffe_id=ADMIN_ID)[0], cert=(str(chain), str(key)))
    assert_problem(response, 401, "unauthenticated")


def test_taint_refuses_the_active_authority_and_says_to_rotate(sigil, svid):
    server, *_ = svid()
    (active,) = authority_ids(sigil, server, "intermediate", "active")
    refused = admin(sigil, server, "taint", active, "--reason", "x")
    assert refused.returncode != 0
    assert "rotate intermediate --taint-old" in refused.stderr, refused
    (root,) = authority_ids(sigil, server, "root", "active")
    assert admin(sigil, server, "taint", root, "--reason", "x").returncode != 0


def test_revoking_one_stolen_certificate(sigil, svid, tmp_path):
    """`sigil admin revoke SERIAL`: the certificate can no longer renew and is in its intermediate's CRL."""
    server, chain, key, issued = svid()
    descendant = assert_issued(server.post_csr(python_csr()[0], cert=(str(chain), str(key))), WEB_ID)
    # The renewal's record names the certificate it renewed: what a thief renewed can be found and revoked too.
    (renewal,) = [r for r in audit_records(sigil, "--data-dir", server.data_dir) if r["action"] == "renew"]
    assert renewal["serial"] == descendant["serial"] and renewal["reason"] == f"renewal of {issued['serial']}", renewal
    revoked = admin(sigil, server, "revoke", issued["serial"], "--reason", "laptop stolen")
    assert revoked.returncode == 0, revoked
    assert "listed in the CRL" in revoked.stdout, revoked
    assert_problem(server.post_csr(python_csr()[0], cert=(str(chain), str(key))), 401, "unauthenticated")

    (intermediate,) = authority_ids(sigil, server, "intermediate", "active")
    issuer = authority_certificate(server.data_dir / "sigil.db", intermediate)
    crl = server.get(f"/v1/crl/{intermediate}")
    assert crl.status_code == 200
    assert crl_serials(crl.content, issuer) == {int(issued["serial"], 16)}
    check = openssl_crl_check(server.bundle, chain, server.get("/v1/crl.pem").text, tmp_path)
    assert check.returncode != 0 and "revoked" in (check.stdout + check.stderr), check

    again = admin(sigil, server, "revoke", issued["serial"], "--reason", "again")
    assert again.returncode != 0 and "already revoked" in again.stderr, again
    assert admin(sigil, server, "revoke", "00ff00ff00ff", "--reason", "unknown").returncode != 0
    records = [r for r in audit_records(sigil, "--data-dir", server.data_dir) if r["action"] == "admin_revoke"]
    assert [(r["outcome"], r.get("serial")) for r in records][0] == ("success", issued["serial"]), records
    assert records[0]["subject"] == WEB_ID and records[0]["reason"] == "laptop stolen"


def test_a_renewal_chain_ends_at_renewal_max_age(sigil, svid, tmp_path):
    """Each renewal carries when the identity was last proven with a token; past --renewal-max-age the
    certificate is refused with reauthentication_required, and a token starts a new chain."""
    server, chain, key, issued = svid("--renewal-max-age", "4s")
    csr, new_key = python_csr()
    renewed = assert_issued(server.post_csr(csr, cert=(str(chain), str(key))), WEB_ID)
    database = server.data_dir / "sigil.db"
    [(first_issued,)] = query(database, "SELECT issued_at FROM certificates WHERE serial = ?", issued["serial"])
    [(carried,)] = query(database, "SELECT authenticated_at FROM certificates WHERE serial = ?", renewed["serial"])
    assert carried == first_issued, "a renewal carries the time the token was shown, it does not renew it"

    renewed_key = tmp_path / "renewed.key"
    renewed_key.write_text(new_key)
    renewed_chain = write_pem_chain(tmp_path / "renewed.pem", renewed["chain"])

    def refused():
        response = server.post_csr(python_csr()[0], cert=(str(renewed_chain), str(renewed_key)))
        if response.status_code == 201:
            return None
        return assert_problem(response, 401, "reauthentication_required")

    wait_until(refused, timeout=20, interval=0.5, what="a renewal past renewal_max_age to be refused")
    token = dev_token(sigil, server.data_dir, "default", "web")
    fresh = assert_issued(server.post_csr(python_csr()[0], token), WEB_ID)
    [(proven,)] = query(database, "SELECT authenticated_at FROM certificates WHERE serial = ?", fresh["serial"])
    assert proven is None, "a token issuance is proven at its issuance (stored as NULL: issued_at)"
    denial = [r for r in audit_records(sigil, "--data-dir", server.data_dir) if r.get("code") == "reauthentication_required"]
    assert denial and denial[0]["outcome"] == "failure", denial
