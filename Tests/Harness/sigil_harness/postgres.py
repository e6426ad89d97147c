"""PostgreSQL for the tests: databases on the session's server, and throw-away clusters of a test's own."""
from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


from .process import Result, free_port, run

# --- PostgreSQL -------------------------------------------------------------------------------------

POSTGRES_ENV = "SIGIL_TEST_POSTGRES_URL"


def postgres_bindir() -> Path:
    dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not dirs or not (dirs[-1] / "initdb").exists():
        raise AssertionError("no PostgreSQL server under /usr/lib/postgresql (Debian package postgresql)")
    return dirs[-1]


def with_database(url: str, database: str, sslmode: bool = False) -> str:
    """`url` naming `database`; with `sslmode`, plain connections (the test servers speak no TLS)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, "sslmode=disable" if sslmode else parts.query, ""))


class PostgresDatabase:
    """A fresh database on an existing server (created from `server_url`, dropped by drop())."""

    def __init__(self, server_url: str, name: str | None = None, template: str | None = None):
        self.server_url = server_url
        self.name = name or f"sigil_it_{secrets.token_hex(6)}"
        create = f'CREATE DATABASE "{self.name}"' + (f' TEMPLATE "{template}"' if template else "")
        result = psql(server_url, create)
        assert result.returncode == 0, f"could not create database {self.name}:\n{result}"

    @property
    def url(self) -> str:
        """For sigil: postgres://user@host:port/NAME?sslmode=disable."""
        return with_database(self.server_url, self.name, sslmode=True)

    @property
    def psql_url(self) -> str:
        return with_database(self.server_url, self.name)

    def psql(self, sql: str) -> Result:
        return psql(self.psql_url, sql)

    def execute(self, sql: str) -> str:
        """Runs SQL with psql (unaligned, tuples only) and returns its stdout; fails the test on error."""
        result = self.psql(sql)
        assert result.returncode == 0, f"psql failed:\n{result}"
        return result.stdout

    def query(self, sql: str) -> list[list[str]]:
        result = self.psql(sql)
        assert result.returncode == 0, f"psql failed:\n{result}"
        return [line.split("|") for line in result.stdout.splitlines() if line]

    def clone(self) -> "PostgresDatabase":
        """A copy (CREATE DATABASE … TEMPLATE this); nobody may be connected to this one."""
        return PostgresDatabase(self.server_url, template=self.name)

    def drop(self) -> None:
        psql(self.server_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def psql(url: str, sql: str, timeout: float = 60) -> Result:
    return run(["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-A", "-t", "-c", sql], timeout=timeout)


class PostgresCluster:
    """A throw-away PostgreSQL cluster of the test's own (initdb into a temp dir owned by `postgres`
    when running as root, 127.0.0.1 on a free port, trust auth), so stopping it disturbs nobody."""

    def __init__(self):
        self.bindir = postgres_bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="sigil-it-pg."))
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.port = 0
        result = self._pg(
            "initdb", "-D", self.dir / "data", "-U", "sigil", "--auth=trust", "--no-locale", "--encoding=UTF8", "--no-sync"
        )
        assert result.returncode == 0, f"initdb failed:\n{result}"

    def _pg(self, tool: str, *args, timeout: float = 120) -> Result:
        return run([*self.run_as, self.bindir / tool, *args], timeout=timeout, cwd=self.dir)

    @property
    def server_url(self) -> str:
        return f"postgres://sigil@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """pg_ctl start -w (waits until the server accepts connections); the same port on restarts."""
        attempts = 1 if self.port else 5
        for _ in range(attempts):
            port = self.port or free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={self.dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            result = self._pg("pg_ctl", "-D", self.dir / "data", "-l", self.dir / "server.log", "-w", "-t", "60", "-o", options, "start")
            if result.returncode == 0:
                self.port = port
                return
        log = (self.dir / "server.log").read_text(errors="replace") if (self.dir / "server.log").exists() else ""
        raise AssertionError(f"PostgreSQL did not start:\n{result}\n{log[-3000:]}")

    def stop(self, mode: str = "fast") -> None:
        result = self._pg("pg_ctl", "-D", self.dir / "data", "-m", mode, "-w", "-t", "60", "stop")
        assert result.returncode == 0, f"pg_ctl stop failed:\n{result}"

    def destroy(self) -> None:
        if (self.dir / "data" / "postmaster.pid").exists():
            if self._pg("pg_ctl", "-D", self.dir / "data", "-m", "fast", "-w", "-t", "30", "stop").returncode != 0:
                self._pg("pg_ctl", "-D", self.dir / "data", "-m", "immediate", "-w", "-t", "30", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
