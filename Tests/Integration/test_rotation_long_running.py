"""A long-running `sigil agent` across automatic intermediate rotations with short lifetimes (leaf 20 s,
intermediate 2 min): sampled every ~2 s, its certificate must pass the conformance checker and
`openssl verify` at every sample, never be expired, and move through at least three intermediates
(two rotations); `--on-rotate` runs once per certificate written. The run takes about 2.5 minutes and
is shared by the tests of this module (one module-scoped fixture runs it and records what it saw)."""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field

import pytest

from rotation_support import (
    SHORT_LIFETIMES,
    Rig,
    TLSWatcher,
    audit_records,
    check_svid,
    conformant,
    find_records,
    make_rig,
    openssl_verify,
    verified,
    write_pem,
)
from sigil_harness import WEB_ID

SAMPLE_EVERY = 2.0
# Intermediate 2 min, prepared at 1/2 and activated at 1/6 of its life left: the second rotation
# happens about 2.5 min after start-up; 5 min is a generous bound.
DEADLINE = 300
WANTED_INTERMEDIATES = 3


def normalise_serial(text: str) -> str:
    return text.strip().lower().lstrip("0") or "0"


@dataclass
class Run:
    rig: Rig
    samples: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    intermediates: dict[str, float] = field(default_factory=dict)  # issuer fingerprint -> first seen (s)
    elapsed: float = 0.0
    agent_running_throughout: bool = True
    agent_exit: int | None = None
    hooked: list[str] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    status: dict = field(default_factory=dict)
    audit_verify: object = None
    tls: TLSWatcher | None = None
    logs: str = ""

    def timeline(self) -> str:
        return "\n".join(
            f"  {s['t']:6.1f}s serial {s['serial'][:12]} issuer {s['issuer']} {'ok' if s['ok'] else 'BAD'}" for s in self.samples
        )


@pytest.fixture(scope="module")
def long_run(sigil) -> Run:
    with make_rig(sigil) as rig:
        result = Run(rig)
        server = rig.serve("--config", rig.config(SHORT_LIFETIMES))
        token = rig.token(server.data_dir, "web")
        hook_log = rig.path("hooks.log")
        out = rig.path("agent-out")
        # The hook records which certificate it saw: one line per write, the serial of svid.pem.
        agent = rig.agent(server, token, "--on-rotate", f"openssl x509 -in {out}/svid.pem -noout -serial >> {hook_log}")
        agent.wait_for_first(60)
        result.tls = TLSWatcher(server).start()

        started = time.monotonic()
        sample_dir = rig.path("sample")
        try:
            while time.monotonic() - started < DEADLINE and len(result.intermediates) < WANTED_INTERMEDIATES:
                tick = time.monotonic()
                if not agent.running:
                    result.agent_running_throughout = False
                    break
                snap = agent.snapshot()
                now = datetime.datetime.now(datetime.timezone.utc)
                at = round(tick - started, 1)
                if snap is None:
                    result.failures.append(f"sample at {at}s: the agent's files are missing")
                    time.sleep(SAMPLE_EVERY)
                    continue
                chain, key, bundle = snap.write(sample_dir)
                problems = []
                for cert in snap.chain:
                    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
                        problems.append(
                            f"{cert.subject.rfc4514_string()} not valid now ({cert.not_valid_before_utc} .. {cert.not_valid_after_utc})"
                        )
                leaf = write_pem(rig.path("sample-leaf.pem"), snap.leaf)
                intermediates = write_pem(rig.path("sample-intermediates.pem"), *snap.chain[1:])
                verify = openssl_verify(bundle, leaf, untrusted=intermediates)
                if not verified(verify):
                    problems.append(f"openssl verify failed:\n{verify}")
                report = check_svid(chain, bundle, key, WEB_ID)
                if not conformant(report):
                    problems.append(f"check-svid.py failed:\n{report}")
                result.intermediates.setdefault(snap.issuer_fingerprint, at)
                result.samples.append({"t": at, "serial": snap.serial, "issuer": snap.issuer_fingerprint[:12], "ok": not problems})
                if problems:
                    result.failures.append(
                        f"sample at {at}s (serial {snap.serial}, issuer {snap.issuer_fingerprint[:12]}):\n" + "\n".join(problems)
                    )
                time.sleep(max(0.0, SAMPLE_EVERY - (time.monotonic() - tick)))
        finally:
            result.tls.stop()
        result.elapsed = time.monotonic() - started
        result.agent_exit = agent.stop()
        result.hooked = [normalise_serial(line.split("=", 1)[1]) for line in hook_log.read_text().splitlines()]
        result.status = server.status()
        result.records = audit_records(rig.sigil, server.data_dir)
        result.audit_verify = rig.sigil.run("audit", "verify", "--data-dir", server.data_dir)
        result.logs = rig.describe()
        yield result


def test_every_sample_is_a_valid_conformant_svid(long_run: Run):
    assert long_run.agent_running_throughout, f"the agent exited during the run:\n{long_run.logs}"
    assert not long_run.failures, (
        f"{len(long_run.failures)} of {len(long_run.samples)} samples failed:\n" + "\n\n".join(long_run.failures[:5]) + f"\ntimeline:\n{long_run.timeline()}"
    )
    assert len(long_run.samples) >= long_run.elapsed / SAMPLE_EVERY * 0.5, f"sampling fell behind: {len(long_run.samples)} samples in {long_run.elapsed:.0f}s"


def test_the_agent_moved_through_three_intermediates(long_run: Run):
    assert len(long_run.intermediates) >= WANTED_INTERMEDIATES, (
        f"saw {len(long_run.intermediates)} intermediate(s) in {long_run.elapsed:.0f}s, wanted {WANTED_INTERMEDIATES}:\n{long_run.timeline()}\n{long_run.logs}"
    )
    # ... and each of them was activated by the rotation service, with an audit record.
    by_fingerprint = {a["sha256_fingerprint"]: a for a in long_run.status["authorities"]}
    for fingerprint in list(long_run.intermediates)[1:]:
        authority = by_fingerprint[fingerprint]
        assert authority["role"] == "intermediate"
        assert find_records(long_run.records, action="activate", authority_id=authority["id"], outcome="success"), (
            f"no audit record of the activation of {authority['id']}"
        )


def test_on_rotate_ran_once_per_certificate_written(long_run: Run):
    assert long_run.agent_exit == 0, f"the agent did not exit 0 on SIGTERM (status {long_run.agent_exit}):\n{long_run.logs}"
    issued = [normalise_serial(r["serial"]) for r in find_records(long_run.records, action="issue", subject=WEB_ID, outcome="success")]
    assert len(issued) >= len(long_run.intermediates)
    assert sorted(long_run.hooked) == sorted(issued), f"--on-rotate runs {long_run.hooked} do not match the certificates issued {issued}"
    sampled = {normalise_serial(s["serial"]) for s in long_run.samples}
    assert sampled <= set(long_run.hooked), f"sampled certificates without an --on-rotate run: {sorted(sampled - set(long_run.hooked))}"


def test_routine_rotation_refused_nothing_and_the_audit_chain_verifies(long_run: Run):
    assert find_records(long_run.records, action="deny") == [], "a renewal was refused during routine rotation"
    assert long_run.audit_verify.returncode == 0, f"sigil audit verify failed:\n{long_run.audit_verify}"


def test_the_servers_tls_certificate_always_verifies(long_run: Run):
    assert long_run.tls.observations, "no TLS handshake with the server succeeded"
    assert not long_run.tls.errors, f"{len(long_run.tls.errors)} TLS handshakes failed, first: {long_run.tls.errors[:3]}"


def test_the_server_does_not_churn_its_tls_certificate(long_run: Run):
    # An activation legitimately changes the server's certificate; a handful of renewals near the end of
    # an intermediate's life may be tolerable; dozens within seconds are not.
    most, when = long_run.tls.most_certificates_within(5.0)
    assert most <= 3, (
        f"{most} different server certificates within 5 s (from {when:.1f}s; {len(long_run.tls.observations)} handshakes "
        f"in {long_run.elapsed:.0f}s, {len({s for _, s in long_run.tls.observations})} distinct certificates)"
    )
