"""The data dir: private by default, whatever the umask, and never initialised twice."""
from __future__ import annotations

import stat

import pytest

from sigil_harness import WEB_ID, assert_one_line_failure

PUBLIC_FILES = {"bundle.pem"}


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private_layout(data_dir):
    assert mode(data_dir) == 0o700, oct(mode(data_dir))
    assert mode(data_dir / "kek") == 0o600, oct(mode(data_dir / "kek"))
    assert mode(data_dir / "sigil.db") == 0o600, oct(mode(data_dir / "sigil.db"))
    bundle = mode(data_dir / "bundle.pem")
    assert bundle & 0o444 == 0o444 and bundle & 0o022 == 0, oct(bundle)
    # Everything else Sigil keeps there (SQLite WAL/SHM files, …) is as private as the store.
    for path in data_dir.iterdir():
        if path.name not in PUBLIC_FILES:
            assert mode(path) & 0o077 == 0, f"{path.name} is {oct(mode(path))}"


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
def test_data_dir_is_private_whatever_the_umask(sigil, make_csr, tmp_path, umask):
    data_dir = tmp_path / "pki"
    sigil.ok("init", "--data-dir", data_dir, umask=umask)
    assert_private_layout(data_dir)

    csr = make_csr()
    sigil.ok("issue", "--data-dir", data_dir, "--csr", csr.path, "--spiffe-id", WEB_ID, "--out",
             tmp_path / "svid.pem", umask=umask)
    assert_private_layout(data_dir)


def test_init_on_an_initialised_dir_fails_and_changes_nothing(sigil, data_dir):
    before = {path.name: path.read_bytes() for path in data_dir.iterdir()}

    result = sigil.run("init", "--data-dir", data_dir)

    assert_one_line_failure(result)
    after = {path.name: path.read_bytes() for path in data_dir.iterdir()}
    assert after.keys() == before.keys()
    assert after["kek"] == before["kek"] and after["bundle.pem"] == before["bundle.pem"]


def test_commands_on_a_missing_data_dir_fail_cleanly(sigil, tmp_path, make_csr):
    missing = tmp_path / "nothing-here"
    csr = make_csr()
    for args in (
        ["inspect", "--data-dir", missing],
        ["bundle", "--data-dir", missing],
        ["issue", "--data-dir", missing, "--csr", csr.path, "--spiffe-id", WEB_ID],
    ):
        assert_one_line_failure(sigil.run(*args))
    assert not missing.exists(), "a read-only command created the data dir"
