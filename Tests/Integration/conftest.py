"""Fixtures for the CLI integration tests: the real `sigil` binary, fresh data dirs, CSRs made with
the `openssl` command, and the shared conformance checker."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from support import CHECK_SVID, REPO_ROOT, CSR, Result, Sigil, make_csr as _make_csr, run


@pytest.fixture(scope="session")
def sigil_bin() -> Path:
    """$SIGIL_BIN (relative paths are taken from the repository root), default .build/debug/sigil."""
    path = Path(os.environ.get("SIGIL_BIN", ".build/debug/sigil"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not os.access(path, os.X_OK):
        pytest.fail(f"no sigil binary at {path}: run `swift build` or set SIGIL_BIN", pytrace=False)
    return path


@pytest.fixture(scope="session", autouse=True)
def _tools() -> None:
    if shutil.which("openssl") is None:
        pytest.fail("the integration tests need the `openssl` command", pytrace=False)


@pytest.fixture(scope="session")
def sigil(sigil_bin: Path) -> Sigil:
    return Sigil(sigil_bin)


def init_data_dir(sigil: Sigil, path: Path, *args: str) -> Path:
    sigil.ok("init", "--data-dir", path, *args)
    return path


@pytest.fixture
def data_dir(sigil: Sigil, tmp_path: Path) -> Path:
    """A freshly initialised data dir (trust domain cluster.local, EC P-256 authorities)."""
    return init_data_dir(sigil, tmp_path / "pki")


@pytest.fixture
def other_data_dir(sigil: Sigil, tmp_path: Path) -> Path:
    """A second, unrelated CA."""
    return init_data_dir(sigil, tmp_path / "other-pki")


@pytest.fixture
def make_csr(tmp_path: Path):
    """make_csr(name, key_type="ec-p256", sans=[URI:web], extensions=[...], subject=...) -> CSR(path, key)."""
    csr_dir = tmp_path / "csr"
    csr_dir.mkdir(exist_ok=True)

    def make(name: str = "workload", **kwargs) -> CSR:
        return _make_csr(csr_dir, name, **kwargs)

    return make


@pytest.fixture(scope="session")
def check_svid():
    """check_svid(chain, bundle, key=None, spiffe_id=None) -> Result of the shared conformance
    checker, run with this venv's Python."""

    def check(chain: Path, bundle: Path, key: Path | None = None, spiffe_id: str | None = None) -> Result:
        args = [sys.executable, CHECK_SVID, "--chain", chain, "--bundle", bundle]
        if key is not None:
            args += ["--key", key]
        if spiffe_id is not None:
            args += ["--spiffe-id", spiffe_id]
        return run(args, timeout=120)

    return check


@pytest.fixture(scope="session")
def assert_conformant(check_svid):
    """Runs the conformance checker and fails, showing its whole report, unless it ends '0 failed'."""

    def check(chain: Path, bundle: Path, key: Path | None = None, spiffe_id: str | None = None) -> Result:
        result = check_svid(chain, bundle, key, spiffe_id)
        assert result.returncode == 0 and result.stdout.rstrip().endswith(" 0 failed"), (
            f"check-svid.py did not pass:\n{result}"
        )
        return result

    return check
