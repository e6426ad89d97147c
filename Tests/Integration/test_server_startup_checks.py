"""`sigil serve` refuses to start on secrets others can read, and tightens a data directory that is too open,
before it listens: a key file with group or world access is a stop, not a warning. And what a killed server
leaves behind (its admin socket file) does not leave `sigil admin` hanging."""
from __future__ import annotations

import os
import stat
import time

import pytest

from sigil_harness import SigilServer, assert_clean_failure


def serve(sigil, data_dir):
    # A refused start prints its one error line and exits; a start that went through would block, so a
    # short timeout turns "it started anyway" into a clear failure.
    return sigil.run("serve", "--data-dir", data_dir, "--listen", "127.0.0.1:0", timeout=30)


@pytest.fixture
def local_data_dir(sigil, tmp_path):
    """A data dir as `sigil serve` leaves it in local mode (kek, store, development issuer key)."""
    data_dir = tmp_path / "pki"
    sigil.ok("init", "--data-dir", data_dir)
    # The development issuer key is made on the first local-mode start.
    server = SigilServer(sigil.binary, data_dir).start()
    server.stop()
    assert (data_dir / "dev-issuer.key").exists()
    return data_dir


@pytest.mark.parametrize("name", ["kek", "dev-issuer.key"])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604], ids=["world-and-group", "group", "world"])
def test_a_key_readable_by_others_stops_the_start(sigil, local_data_dir, name, mode):
    path = local_data_dir / name
    os.chmod(path, mode)
    result = serve(sigil, local_data_dir)
    assert_clean_failure(result)
    assert name in result.stderr and "chmod 600" in result.stderr, result
    # Nothing was changed on the operator's behalf: the key keeps its mode until they fix it.
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_a_data_dir_open_to_others_is_tightened_at_start(sigil, local_data_dir):
    os.chmod(local_data_dir, 0o755)
    server = SigilServer(sigil.binary, local_data_dir).start()
    try:
        assert stat.S_IMODE(local_data_dir.stat().st_mode) == 0o700
    finally:
        server.stop()


def test_admin_against_a_killed_server_fails_at_once(sigil, local_data_dir):
    """A killed server leaves its admin socket file behind: `sigil admin` says nothing listens there, in one
    line, instead of retrying until its 60 s deadline."""
    server = SigilServer(sigil.binary, local_data_dir).start()
    server.kill()
    socket = local_data_dir / "admin.sock"
    assert socket.exists()
    started = time.monotonic()
    result = sigil.run("admin", "status", "--socket", socket, timeout=30)
    assert time.monotonic() - started < 10
    assert_clean_failure(result, "unavailable")
    assert "not running" in result.stderr
