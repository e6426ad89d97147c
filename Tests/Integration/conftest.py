"""Fixtures for the integration tests: the real `sigil` binary, fresh data dirs, CSRs made with the
`openssl` command, the shared conformance checker; `sigil serve` processes, PostgreSQL databases and
a throw-away PostgreSQL cluster. At the end of every session, one more item greps everything sigil
printed or recorded for the tokens and keys the suite made (sigil_harness.LEDGER)."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from sigil_harness import (
    CHECK_SVID,
    CSR,
    LEDGER,
    POSTGRES_ENV,
    REPO_ROOT,
    PostgresCluster,
    PostgresDatabase,
    Result,
    Sigil,
    SigilServer,
    make_csr as _make_csr,
    run,
)


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


# --- `sigil serve` and its surroundings (test_server_*.py, test_audit_*.py) -------------------------


class ServerPool:
    """Starts `sigil serve` processes and stops every one of them (SIGTERM, wait, SIGKILL) at teardown."""

    def __init__(self, binary: Path):
        self.binary = binary
        self.servers: list[SigilServer] = []

    def __call__(self, data_dir: Path, *args, env: dict[str, str] | None = None, timeout: float = 60) -> SigilServer:
        server = SigilServer(self.binary, data_dir, *args, env=env)
        self.servers.append(server)
        return server.start(timeout)

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            server.stop()


@pytest.fixture
def start_server(sigil_bin: Path):
    """start_server(data_dir, *serve_args) -> a running SigilServer, stopped after the test."""
    pool = ServerPool(sigil_bin)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="module")
def module_servers(sigil_bin: Path):
    """Like start_server, for servers shared by one test module."""
    pool = ServerPool(sigil_bin)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """$SIGIL_TEST_POSTGRES_URL (set by scripts/test); tests needing PostgreSQL skip without it."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set (scripts/test starts a throw-away PostgreSQL and sets it)")
    if shutil.which("psql") is None:
        pytest.skip("the PostgreSQL tests need the `psql` command")
    return url


class DatabasePool:
    def __init__(self, server_url: str):
        self.server_url = server_url
        self.databases: list[PostgresDatabase] = []

    def __call__(self) -> PostgresDatabase:
        database = PostgresDatabase(self.server_url)
        self.databases.append(database)
        return database

    def clone(self, database: PostgresDatabase) -> PostgresDatabase:
        copy = database.clone()
        self.databases.append(copy)
        return copy

    def drop_all(self) -> None:
        for database in self.databases:
            database.drop()


@pytest.fixture
def postgres_database(postgres_server_url: str):
    """postgres_database() -> a fresh PostgresDatabase on the test server, dropped after the test."""
    pool = DatabasePool(postgres_server_url)
    yield pool
    pool.drop_all()


@pytest.fixture(scope="module")
def module_postgres_database(postgres_server_url: str):
    pool = DatabasePool(postgres_server_url)
    yield pool
    pool.drop_all()


@pytest.fixture
def postgres_cluster():
    """A throw-away PostgreSQL cluster of this test's own (started), destroyed after the test."""
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql (Debian package postgresql)")
    if shutil.which("runuser") is None and os.geteuid() == 0:
        pytest.skip("running as root without `runuser` to start PostgreSQL as `postgres`")
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


# --- schemathesis items (test_api_conformance.py) -----------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis (under schemathesis) keeps caches in ./.hypothesis: a temp dir instead, not the work tree."""
    if "HYPOTHESIS_STORAGE_DIRECTORY" not in os.environ:
        directory = tempfile.mkdtemp(prefix="sigil-it-hypothesis.")
        os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = directory
        config.add_cleanup(lambda: shutil.rmtree(directory, ignore_errors=True))


def pytest_itemcollected(item: pytest.Item) -> None:
    """`@schema.parametrize()` names its items `test_x[POST /v1/certificates]`, but pytest 9.2 builds a
    node ID from the function's original name, which schemathesis 4.32 sets to the bare `test_x`: every
    operation got the same ID (in -v output, the failure summary and --deselect). Give each item its
    operation as the parameter part of its ID, as the item name already has it."""
    label = getattr(item, "operation_label", None)
    node_id = getattr(item, "_id", None)
    if label and node_id is not None and node_id.params is None and item.name.endswith(f"[{label}]"):
        item._id = node_id.with_params(label)


# --- the secrets scan ---------------------------------------------------------------------------------
# sigil_harness.LEDGER collects every secret the suite makes and every output sigil produces (rotation_support's
# background processes hand theirs over each time one stops or restarts).


class SecretsLeaked(AssertionError):
    pass


_LATE_FINDINGS = pytest.StashKey[list]()


class SecretsScan(pytest.Item):
    """The last item of every session: every line of sigil's output (processes, commands, audit sinks and
    audit tables) against every token and private key the suite made, JWT-shaped strings and the PEM
    private-key marker. Last, so every other module's servers have stopped and printed everything."""

    def runtest(self) -> None:
        findings = LEDGER.scan()
        if findings:
            shown = "\n".join(str(f) for f in findings[:40])
            more = f"\n… and {len(findings) - 40} more" if len(findings) > 40 else ""
            raise SecretsLeaked(
                f"{len(findings)} line(s) of sigil output hold a secret ({LEDGER.stats}):\n{shown}{more}"
            )

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, SecretsLeaked):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, "secrets scan of all sigil output"


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: the scan always runs when anything else does
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if items and not config.getoption("collectonly"):
        scan = SecretsScan.from_parent(session, name="secrets_scan", path=Path(__file__), nodeid="conftest.py::secrets_scan")
        items.append(scan)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Output printed after the scan item (session-scoped fixtures' servers stopping): scanned here."""
    if LEDGER.stats:
        late = LEDGER.scan(only_changed=True)
        if late:
            session.config.stash[_LATE_FINDINGS] = late
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    late = config.stash.get(_LATE_FINDINGS, [])
    if late:
        terminalreporter.write_sep("=", "secrets in sigil output printed after the scan item", red=True)
        for finding in late:
            terminalreporter.write_line(str(finding))
    if LEDGER.stats:
        terminalreporter.write_line(f"secrets scan: {LEDGER.stats}")
    for gap in LEDGER.gaps:
        terminalreporter.write_line(f"secrets scan could not read: {gap}")
