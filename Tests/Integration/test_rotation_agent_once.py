"""`sigil agent --once` (init-container mode) against a real `sigil serve`: the files it writes and
their modes, the conformance checker on the result, and clear failures when it cannot get a
certificate (server unreachable, token refused)."""
from __future__ import annotations

import os
import socket
import stat
import time

import pytest

from rotation_support import Rig, assert_no_crash, check_svid, conformant, rig  # noqa: F401
from sigil_harness import WEB_ID, load_certs, run, sha256_hex

OUT_FILES = {"svid.pem", "svid.key", "bundle.pem"}


@pytest.fixture
def server(rig: Rig):
    return rig.serve()


def once(rig: Rig, url: str, token, out_dir, ca_bundle, *args, umask: int | None = None, timeout: float = 120):
    return run(
        [rig.sigil.binary, "agent", "--once", "--server", url, "--token-file", token, "--out-dir", out_dir,
         "--ca-bundle", ca_bundle, *args],
        timeout=timeout, umask=umask,
    )


def error_line(result) -> str:
    """What DESIGN.md asks of a failing command: non-zero, nothing on stdout, no crash, and one
    `Error: …` line, the last on stderr (log lines of the retries may come before it)."""
    assert result.returncode != 0, f"expected a failure:\n{result}"
    assert result.stdout == "", f"a failing agent printed on stdout:\n{result}"
    assert_no_crash(result.stderr, "the agent's stderr")
    lines = result.stderr.rstrip("\n").splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"expected one final 'Error: ' line on stderr:\n{result}"
    return errors[0]


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
def test_once_writes_svid_key_and_bundle(rig: Rig, server, umask: int):
    token = rig.token(server.data_dir, "web")
    out = rig.path("out")
    hook_log = rig.path("hook.log")
    result = once(rig, server.url, token, out, server.bundle, "--on-rotate", f"echo ran >> {hook_log}", umask=umask)

    assert result.returncode == 0, f"agent --once failed:\n{result}"
    assert_no_crash(result.stderr, "the agent's stderr")
    visible = {p.name for p in out.iterdir() if not p.name.startswith("..")}
    hidden = {p.name for p in out.iterdir() if p.name.startswith("..") and p.name != "..lock"}  # ..lock: the writers' lock
    assert visible == OUT_FILES, f"unexpected files (temp files left behind?): {sorted(out.iterdir())}"
    # One atomic set: each name links through ..data to the one version directory holding all three.
    assert len(hidden) == 2 and "..data" in hidden, f"expected ..data and one version directory: {sorted(hidden)}"
    version = os.readlink(out / "..data")
    assert version in hidden and {p.name for p in (out / version).iterdir()} == OUT_FILES
    for name in OUT_FILES:
        assert os.readlink(out / name) == f"..data/{name}", f"{name} is not a link through ..data"
    key_mode = stat.S_IMODE((out / "svid.key").stat().st_mode)
    assert key_mode == 0o600, f"svid.key has mode {key_mode:o} under umask {umask:o}"
    for name in ("svid.pem", "bundle.pem"):
        mode = stat.S_IMODE((out / name).stat().st_mode)
        assert mode & 0o022 == 0, f"{name} is writable by group or others: {mode:o}"
    assert (out / "svid.key").read_text().startswith("-----BEGIN " + "PRIVATE KEY-----"), "svid.key is not PKCS#8 PEM"

    report = check_svid(out / "svid.pem", out / "bundle.pem", out / "svid.key", WEB_ID)
    assert conformant(report), f"check-svid.py did not pass:\n{report}"

    # The written bundle is the server's, and the chain is leaf + intermediate (never the root).
    assert [sha256_hex(c) for c in load_certs(out / "bundle.pem")] == [sha256_hex(c) for c in load_certs(server.bundle)]
    chain = load_certs(out / "svid.pem")
    assert len(chain) == 2, f"svid.pem should hold the leaf and its intermediate, has {len(chain)} certificates"
    assert sha256_hex(chain[-1]) not in {sha256_hex(c) for c in load_certs(server.bundle)}, "the root travels in the chain"

    assert hook_log.read_text().splitlines() == ["ran"], "--on-rotate should run exactly once in --once mode"


def closed_port() -> socket.socket:
    """A bound, not listening TCP socket on 127.0.0.1: connections to it are refused, and nobody else
    can take the port while the test holds it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def test_once_against_a_closed_port_fails_with_one_clear_line(rig: Rig, server):
    token = rig.token(server.data_dir, "web")
    with closed_port() as sock:
        url = f"https://127.0.0.1:{sock.getsockname()[1]}"
        result = once(rig, url, token, rig.path("out"), server.bundle, "--timeout", "1s")
    line = error_line(result)
    assert url in line or "unreachable" in line, f"the error line does not say the server is unreachable:\n{result}"
    assert not rig.path("out").exists() or not any(rig.path("out").iterdir()), "files were written without a certificate"


def test_once_against_a_closed_port_gives_up_within_its_timeout(rig: Rig, server):
    token = rig.token(server.data_dir, "web")
    with closed_port() as sock:
        url = f"https://127.0.0.1:{sock.getsockname()[1]}"
        started = time.monotonic()
        result = once(rig, url, token, rig.path("out"), server.bundle, "--timeout", "2s")
        elapsed = time.monotonic() - started
    error_line(result)
    assert elapsed < 2 + 2.5, f"--timeout 2s but the agent gave up only after {elapsed:.1f}s:\n{result}"


@pytest.mark.parametrize(
    "token_kind, code",
    [("garbage", "token_invalid"), ("wrong-audience", "audience_mismatch")],
)
def test_once_with_a_refused_token_names_the_servers_code(rig: Rig, server, token_kind: str, code: str):
    if token_kind == "garbage":
        token = rig.path("token-garbage")
        token.write_text("not.a.jwt\n")
    else:
        token = rig.token(server.data_dir, "web", "default", "--audience", "not-sigil")
    started = time.monotonic()
    result = once(rig, server.url, token, rig.path("out"), server.bundle, "--timeout", "2s")
    elapsed = time.monotonic() - started
    line = error_line(result)
    assert code in line, f"the error line does not carry the server's code {code}:\n{result}"
    assert elapsed < 30, f"--timeout 2s but the agent took {elapsed:.1f}s"
    assert not rig.path("out").exists() or not any(rig.path("out").iterdir()), "files were written after a refusal"
