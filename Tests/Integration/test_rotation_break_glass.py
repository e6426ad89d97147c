"""Break-glass over the admin socket, end to end with real agents: `sigil admin rotate --dry-run` shows
the blast radius and changes nothing; `rotate --taint-old` moves every agent to the new chain within
seconds; `revoke` is refused for the active and for an untainted authority and accepted for the
tainted one; a revoked intermediate is in the CRL (checked with `openssl verify -crl_check`) and a
revoked root leaves the bundle so that old chains fail. Every step is in the audit chain with its reason."""
from __future__ import annotations

import json
import shutil
import time

from cryptography import x509

from rotation_support import (  # noqa: F401
    Agent,
    Rig,
    Server,
    Snapshot,
    audit_records,
    bundle_roots,
    check_svid,
    conformant,
    find_records,
    openssl_verify,
    rig,
    verified,
    wait_until,
    write_pem,
)
from sigil_harness import WEB_ID, assert_clean_failure, run, sha256_hex

API_ID = "spiffe://cluster.local/ns/default/sa/api"
# The agents poll /v1/authorities every second; they must hold certificates under the new chain well
# within this bound after a taint.
TAINT_REACTION = 10.0


def active(status: dict, role: str) -> dict:
    found = [a for a in status["authorities"] if a["role"] == role and a["state"] == "active"]
    assert len(found) == 1, f"expected one active {role}: {json.dumps(status, indent=1)}"
    return found[0]


def authority(status: dict, authority_id: str) -> dict:
    return next(a for a in status["authorities"] if a["id"] == authority_id)


def states(status: dict) -> dict[str, str]:
    return {a["id"]: a["state"] for a in status["authorities"]}


def start_agents(rig: Rig, server: Server) -> tuple[Agent, Agent]:
    """Two workloads (web, api) polling every second. Their --ca-bundle is a copy of the bundle as it was at
    deployment (distributed out of band), so following a root rotation is up to the agent."""
    ca_bundle = rig.path("ca-bundle.pem")
    shutil.copyfile(server.bundle, ca_bundle)
    web = rig.agent(server, rig.token(server.data_dir, "web"), "--poll-interval", "1s", name="web", ca_bundle=ca_bundle)
    api = rig.agent(server, rig.token(server.data_dir, "api"), "--poll-interval", "1s", name="api", ca_bundle=ca_bundle)
    web.wait_for_first(60)
    api.wait_for_first(60)
    return web, api


def assert_conformant_snapshot(rig: Rig, snap: Snapshot, spiffe_id: str, name: str) -> None:
    chain, key, bundle = snap.write(rig.path(f"check-{name}"))
    report = check_svid(chain, bundle, key, spiffe_id)
    assert conformant(report), f"check-svid.py did not pass for {name}:\n{report}"


def dry_run(server: Server, role: str, reason: str) -> tuple[str, dict]:
    text = server.admin_ok("rotate", role, "--dry-run", "--reason", reason).stdout
    outcome = json.loads(server.admin_ok("rotate", role, "--dry-run", "--json", "--reason", reason).stdout)
    return text, outcome


def test_break_glass_intermediate(rig: Rig):
    server = rig.serve()
    web, api = start_agents(rig, server)
    before = server.status()
    root, old = active(before, "root"), active(before, "intermediate")
    web0, api0 = web.snapshot(), api.snapshot()
    assert web0.issuer_fingerprint == api0.issuer_fingerprint == old["sha256_fingerprint"]

    # --dry-run: the blast radius, and nothing changes.
    text, outcome = dry_run(server, "intermediate", "drill: dry run")
    assert old["id"] in text and "2 live certificate" in text and WEB_ID in text and API_ID in text, (
        f"the dry run does not show the blast radius:\n{text}"
    )
    assert outcome["dry_run"] is True and outcome["activated"] == [] and outcome["tainted"] == [], outcome
    assert outcome["replaced"] == [old["id"]], outcome
    assert outcome["blast_radius"]["live_certificates"] == 2, outcome
    assert outcome["blast_radius"]["identities"] == sorted([WEB_ID, API_ID]), outcome
    after_dry = server.status()
    assert states(after_dry) == states(before), "a dry run changed authority states"
    assert after_dry["bundle_sequence"] == before["bundle_sequence"]

    # --taint-old: a new active intermediate; both agents renew under it at once.
    assert web.snapshot().serial == web0.serial and api.snapshot().serial == api0.serial, "agents renewed before the taint"
    tainted_at = time.monotonic()
    rotated = server.admin_ok("rotate", "intermediate", "--taint-old", "--reason", "drill")
    status = server.status()
    new = active(status, "intermediate")
    assert new["id"] != old["id"] and new["parent_id"] == root["id"], rotated
    assert authority(status, old["id"])["state"] == "tainted", status
    authorities = server.get("/v1/authorities").json()
    assert {a["id"]: a["state"] for a in authorities["authorities"]}[old["id"]] == "tainted", authorities
    moved = {}
    for agent in (web, api):
        moved[agent.name] = agent.wait_for(
            lambda s: s.issuer_fingerprint == new["sha256_fingerprint"], TAINT_REACTION - (time.monotonic() - tainted_at),
            "a certificate under the new intermediate after the taint",
        )
    reaction = time.monotonic() - tainted_at
    assert reaction < TAINT_REACTION
    assert_conformant_snapshot(rig, moved["web"], WEB_ID, "web")
    assert_conformant_snapshot(rig, moved["api"], API_ID, "api")

    # Refusals: the active intermediate, then an untainted (retired) one.
    refused = server.admin("revoke", new["id"], "--reason", "drill: revoke the active one")
    assert_clean_failure(refused, "conflict")
    assert authority(server.status(), new["id"])["state"] == "active"
    server.admin_ok("rotate", "intermediate", "--reason", "drill: routine successor")
    status = server.status()
    newest = active(status, "intermediate")
    assert authority(status, new["id"])["state"] == "retired", status
    refused = server.admin("revoke", new["id"], "--reason", "drill: revoke a retired one")
    assert_clean_failure(refused, "conflict")
    assert authority(server.status(), new["id"])["state"] == "retired"
    assert_clean_failure(server.admin("revoke", "intermediate-0000000000000000", "--reason", "drill: no such"), "not_found")

    # The tainted one can be revoked (once).
    server.admin_ok("revoke", old["id"], "--reason", "drill: revoke the compromised one")
    status = server.status()
    assert authority(status, old["id"])["state"] == "revoked", status
    assert_clean_failure(server.admin("revoke", old["id"], "--reason", "drill: twice"), "conflict")

    # /v1/crl: DER, signed by the active root, lists the old intermediate and only it.
    response = server.get("/v1/crl")
    assert response.status_code == 200, response.text
    crl_der = rig.path("crl.der")
    crl_der.write_bytes(response.content)
    crl = x509.load_der_x509_crl(response.content)
    root_cert = next(c for c in x509.load_pem_x509_certificates(server.bundle.read_bytes()) if sha256_hex(c) == root["sha256_fingerprint"])
    assert crl.issuer == root_cert.subject and crl.is_signature_valid(root_cert.public_key()), "the CRL is not signed by the root"
    old_cert, new_cert = web0.intermediate, moved["web"].intermediate
    assert {r.serial_number for r in crl} == {old_cert.serial_number}, f"CRL entries: {[format(r.serial_number, 'x') for r in crl]}"
    crl_pem = rig.path("crl.pem")
    converted = run(["openssl", "crl", "-inform", "DER", "-in", crl_der, "-out", crl_pem])
    assert converted.returncode == 0, converted

    root_pem = write_pem(rig.path("root.pem"), root_cert)
    old_pem = write_pem(rig.path("old-intermediate.pem"), old_cert)
    new_pem = write_pem(rig.path("new-intermediate.pem"), new_cert)
    assert verified(openssl_verify(root_pem, old_pem)), "the old intermediate should verify without the CRL"
    rejected = openssl_verify(root_pem, old_pem, crl=crl_pem)
    assert rejected.returncode != 0 and "certificate revoked" in rejected.stdout + rejected.stderr, f"expected 'certificate revoked':\n{rejected}"
    accepted = openssl_verify(root_pem, new_pem, crl=crl_pem)
    assert verified(accepted), f"the new intermediate should verify with the CRL:\n{accepted}"

    # The audit chain: every admin step with its reason; refusals as failures with code conflict.
    records = audit_records(rig.sigil, server.data_dir)
    expectations = [
        dict(action="admin_rotate", outcome="success", reason_has="drill: dry run", authority_id=old["id"]),
        dict(action="admin_rotate", outcome="success", reason_has="drill", authority_id=new["id"]),
        dict(action="activate", outcome="success", reason="drill", authority_id=new["id"]),
        dict(action="taint", outcome="success", reason="drill", authority_id=old["id"]),
        dict(action="admin_revoke", outcome="failure", code="conflict", reason_has="drill: revoke the active one", authority_id=new["id"]),
        dict(action="activate", outcome="success", reason="drill: routine successor", authority_id=newest["id"]),
        dict(action="retire", outcome="success", reason="drill: routine successor", authority_id=new["id"]),
        dict(action="admin_revoke", outcome="failure", code="conflict", reason_has="drill: revoke a retired one", authority_id=new["id"]),
        dict(action="admin_revoke", outcome="success", reason="drill: revoke the compromised one", authority_id=old["id"]),
        dict(action="admin_revoke", outcome="failure", code="conflict", reason_has="drill: twice", authority_id=old["id"]),
    ]
    for expected in expectations:
        assert find_records(records, **expected), f"no audit record {expected}"
    for record in find_records(records, action="admin_revoke") + find_records(records, action="admin_rotate"):
        assert record["actor"].startswith("admin"), record
    verify = rig.sigil.run("audit", "verify", "--data-dir", server.data_dir)
    assert verify.returncode == 0, f"sigil audit verify failed:\n{verify}"


def test_break_glass_root(rig: Rig):
    server = rig.serve()
    web, api = start_agents(rig, server)
    before = server.status()
    old_root, old_intermediate = active(before, "root"), active(before, "intermediate")
    web0 = web.snapshot()
    bundle0 = server.get("/v1/bundle").json()
    assert [sha256_hex(c) for c in bundle_roots(bundle0)] == [old_root["sha256_fingerprint"]]

    text, outcome = dry_run(server, "root", "root drill: dry run")
    assert sorted(outcome["replaced"]) == sorted([old_root["id"], old_intermediate["id"]]), outcome
    assert outcome["blast_radius"]["live_certificates"] == 2 and outcome["blast_radius"]["identities"] == sorted([WEB_ID, API_ID]), outcome
    assert "2 live certificate" in text, text
    assert states(server.status()) == states(before), "a dry run changed authority states"
    assert server.get("/v1/bundle").json()["spiffe_sequence"] == bundle0["spiffe_sequence"]

    tainted_at = time.monotonic()
    server.admin_ok("rotate", "root", "--taint-old", "--reason", "root drill")
    status = server.status()
    new_root, new_intermediate = active(status, "root"), active(status, "intermediate")
    assert new_root["id"] != old_root["id"] and new_intermediate["parent_id"] == new_root["id"], status
    assert authority(status, old_root["id"])["state"] == "tainted" and authority(status, old_intermediate["id"])["state"] == "tainted"
    bundle1 = server.get("/v1/bundle").json()
    assert {sha256_hex(c) for c in bundle_roots(bundle1)} == {old_root["sha256_fingerprint"], new_root["sha256_fingerprint"]}
    assert bundle1["spiffe_sequence"] > bundle0["spiffe_sequence"], "the bundle gained a root but kept its sequence"

    moved = {}
    for agent in (web, api):
        moved[agent.name] = agent.wait_for(
            lambda s: s.issuer_fingerprint == new_intermediate["sha256_fingerprint"]
            and new_root["sha256_fingerprint"] in {sha256_hex(c) for c in s.bundle},
            TAINT_REACTION - (time.monotonic() - tainted_at),
            "a certificate under the new root (and the new root in bundle.pem) after the taint",
        )
    assert_conformant_snapshot(rig, moved["web"], WEB_ID, "web")
    assert_conformant_snapshot(rig, moved["api"], API_ID, "api")

    # Revoke the old root: it leaves the bundle, and the sequence increases.
    assert_clean_failure(server.admin("revoke", new_root["id"], "--reason", "root drill: the active root"), "conflict")
    server.admin_ok("revoke", old_root["id"], "--reason", "root drill: revoke the old root")
    assert authority(server.status(), old_root["id"])["state"] == "revoked"
    bundle2 = server.get("/v1/bundle").json()
    assert [sha256_hex(c) for c in bundle_roots(bundle2)] == [new_root["sha256_fingerprint"]], "the revoked root is still in /v1/bundle"
    assert bundle2["spiffe_sequence"] > bundle1["spiffe_sequence"], "the bundle lost a root but kept its sequence"
    pem_roots = x509.load_pem_x509_certificates(server.get("/v1/bundle.pem").content)
    assert [sha256_hex(c) for c in pem_roots] == [new_root["sha256_fingerprint"]], "the revoked root is still in /v1/bundle.pem"

    # The agents drop it from their bundle.pem too, and keep a valid certificate.
    for agent in (web, api):
        snap = agent.wait_for(
            lambda s: {sha256_hex(c) for c in s.bundle} == {new_root["sha256_fingerprint"]}, TAINT_REACTION,
            "bundle.pem without the revoked root",
        )
        assert_conformant_snapshot(rig, snap, WEB_ID if agent is web else API_ID, f"{agent.name}-after-revoke")

    # An old chain no longer verifies against the new bundle; the new one does.
    new_bundle = rig.path("new-bundle.pem")
    new_bundle.write_bytes(server.get("/v1/bundle.pem").content)
    old_leaf = write_pem(rig.path("old-leaf.pem"), web0.leaf)
    old_chain = write_pem(rig.path("old-chain.pem"), *web0.chain[1:])
    assert verified(openssl_verify(rig.path("ca-bundle.pem"), old_leaf, untrusted=old_chain)), "the old chain should verify under the old root"
    refused = openssl_verify(new_bundle, old_leaf, untrusted=old_chain)
    assert not verified(refused), f"an old chain still verifies against the new bundle:\n{refused}"
    old_check = check_svid(write_pem(rig.path("old-svid.pem"), *web0.chain), new_bundle)
    assert old_check.returncode != 0, f"check-svid.py accepts an old chain against the new bundle:\n{old_check}"
    new_leaf = write_pem(rig.path("new-leaf.pem"), moved["web"].leaf)
    new_chain = write_pem(rig.path("new-chain.pem"), *moved["web"].chain[1:])
    assert verified(openssl_verify(new_bundle, new_leaf, untrusted=new_chain))

    # The data dir's bundle.pem follows within the server's refresh interval (10 s).
    wait_until(
        lambda: [sha256_hex(c) for c in x509.load_pem_x509_certificates(server.bundle.read_bytes())] == [new_root["sha256_fingerprint"]],
        20, "the data dir's bundle.pem without the revoked root",
    )

    records = audit_records(rig.sigil, server.data_dir)
    expectations = [
        dict(action="admin_rotate", outcome="success", reason_has="root drill: dry run", authority_id=old_root["id"]),
        dict(action="admin_rotate", outcome="success", reason_has="root drill", authority_id=new_root["id"]),
        dict(action="activate", outcome="success", reason="root drill", authority_id=new_root["id"]),
        dict(action="activate", outcome="success", reason="root drill", authority_id=new_intermediate["id"]),
        dict(action="taint", outcome="success", reason="root drill", authority_id=old_root["id"]),
        dict(action="taint", outcome="success", reason="root drill", authority_id=old_intermediate["id"]),
        dict(action="admin_revoke", outcome="failure", code="conflict", reason_has="root drill: the active root", authority_id=new_root["id"]),
        dict(action="admin_revoke", outcome="success", reason="root drill: revoke the old root", authority_id=old_root["id"]),
    ]
    for expected in expectations:
        assert find_records(records, **expected), f"no audit record {expected}"
    verify = rig.sigil.run("audit", "verify", "--data-dir", server.data_dir)
    assert verify.returncode == 0, f"sigil audit verify failed:\n{verify}"
