"""Helpers for the rotation tests (test_rotation_*.py): `sigil serve` and `sigil agent` running in the
background with their output in files, the admin socket, consistent snapshots of an agent's output
files, and certificate checks with validators Sigil did not write (`openssl`, `check-svid.py`).

Everything lives in one short directory under /tmp (unix socket paths must stay under 104 bytes), and
every process started here is stopped by the `rig` fixture's finalizer. Nothing sleeps for timing:
waits are bounded polls with a deadline.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import sigil_harness
from sigil_harness import (
    CHECK_SVID, CRASH_MARKERS, LEDGER, POSTGRES_ENV, Result, Sigil, clean_env, psql, run, sha256_hex, stop_process,
    wait_until, with_database,
)

# The harness's listening line, searched for in a whole log file.
LISTENING = re.compile(sigil_harness.LISTENING.pattern, re.M)

# The shortest lifetimes the configuration rules allow for the rotation runs the issue asks for
# (leaf 20 s, intermediate 2 min): intermediate <= root/2, default leaf TTL x 6 <= intermediate,
# backdate < min TTL.
SHORT_LIFETIMES = {
    "authority": {"root_ttl": "30m", "intermediate_ttl": "2m"},
    "policy": {"default_ttl": "20s", "min_ttl": "10s", "max_ttl": "1m", "backdate": "5s"},
}


# --- background processes ---------------------------------------------------------------------------


class Background:
    """A process whose stdout and stderr go to files in `directory` (no pipe can fill up)."""

    def __init__(self, name: str, args: list, directory: Path, env: dict[str, str] | None = None):
        self.name = name
        self.args = [str(a) for a in args]
        self.directory = directory
        self.env = env
        self.stdout_path = directory / f"{name}.stdout"
        self.stderr_path = directory / f"{name}.stderr"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Background":
        # A restart under the same name overwrites the output files: hand the last life's output to the
        # secrets scan first (the rig deletes these files at teardown, before the scan runs).
        if self.stdout() or self.stderr():
            LEDGER.sigil_process_stopped(self.args, self.stdout(), self.stderr())
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=clean_env(self.env), start_new_session=True
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, wait up to `timeout` s, then SIGKILL. Returns the exit status (negative: signal)."""
        if self.process is None:
            return None
        status = stop_process(self.process, timeout)
        LEDGER.sigil_process_stopped(self.args, self.stdout(), self.stderr())
        return status

    def kill(self) -> None:
        """SIGKILL: a crash, as far as everybody else can tell."""
        if self.running:
            self.process.kill()
            self.process.wait(30)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def describe(self) -> str:
        status = "not started" if self.process is None else ("running" if self.running else f"exit {self.process.returncode}")
        return (
            f"--- {self.name}: $ {' '.join(self.args)}\n{status}\n"
            f"--- {self.name} stdout (tail) ---\n{self.stdout()[-3000:]}"
            f"--- {self.name} stderr (tail) ---\n{self.stderr()[-6000:]}"
        )


class Server(Background):
    """`sigil serve --data-dir D --listen 127.0.0.1:0 --admin-socket S …`; start() returns once it printed
    its listening line and its admin socket exists."""

    def __init__(self, sigil: Sigil, name: str, data_dir: Path, socket: Path, args: list, directory: Path,
                 listen: str = "127.0.0.1:0"):
        super().__init__(
            name,
            [sigil.binary, "serve", "--data-dir", data_dir, "--listen", listen, "--admin-socket", socket, *args],
            directory,
        )
        self.sigil = sigil
        self.data_dir = data_dir
        self.socket = socket
        self.url = ""
        # Every root this test has seen in the data dir's bundle.pem, to check the server's TLS
        # certificate across root rotations.
        self.trust_path = directory / f"{name}.trust.pem"

    def start(self, timeout: float = 90) -> "Server":
        super().start()

        def listening():
            match = LISTENING.search(self.stdout())
            return match or (not self.running and "exited")

        match = wait_until(listening, timeout, f"{self.name} to print its listening line", describe=self.describe)
        assert match != "exited", f"sigil serve exited before listening:\n{self.describe()}"
        self.url = match["url"]
        wait_until(self.socket.exists, 30, f"{self.name}'s admin socket {self.socket}", describe=self.describe)
        self.refresh_trust()
        return self

    @property
    def bundle(self) -> Path:
        return self.data_dir / "bundle.pem"

    def refresh_trust(self) -> None:
        known = self.trust_path.read_text() if self.trust_path.exists() else ""
        current = self.bundle.read_text()
        added = [pem for pem in split_pem(current) if pem not in known]
        if added or not known:
            self.trust_path.write_text(known + "".join(added))

    def get(self, path: str, **kwargs) -> requests.Response:
        """GET over HTTPS, the server's certificate checked against every root seen in bundle.pem."""
        self.refresh_trust()
        kwargs.setdefault("timeout", 30)
        response = requests.get(self.url + path, verify=str(self.trust_path), **kwargs)
        assert response.status_code < 500, f"GET {path} -> {response.status_code}\n{response.text[:2000]}\n{self.describe()}"
        return response

    def admin(self, *args, timeout: float = 60) -> Result:
        """`sigil admin <args> --socket S` (the socket flag goes after the subcommand and its role)."""
        return self.sigil.run("admin", *args, "--socket", self.socket, timeout=timeout)

    def admin_ok(self, *args) -> Result:
        result = self.admin(*args)
        assert result.returncode == 0, f"sigil admin failed:\n{result}\n{self.describe()}"
        return result

    def status(self) -> dict:
        return json.loads(self.admin_ok("status", "--json").stdout)


class Agent(Background):
    """`sigil agent --server URL --token-file F [--out-dir O] --ca-bundle B …` running in the background (without
    --out-dir when out_dir is None: give --socket in args)."""

    def __init__(self, sigil: Sigil, name: str, server: Server, token: Path, out_dir: Path | None, args: list,
                 directory: Path, ca_bundle: Path | None = None):
        self.out_dir = out_dir
        self.token = token
        files = ["--out-dir", out_dir] if out_dir is not None else []
        super().__init__(
            name,
            [sigil.binary, "agent", "--server", server.url, "--token-file", token, *files,
             "--ca-bundle", ca_bundle or server.bundle, *args],
            directory,
        )

    def snapshot(self) -> "Snapshot | None":
        assert self.out_dir is not None, f"{self.name} writes no files"
        return read_snapshot(self.out_dir)

    def wait_for(self, predicate: Callable[["Snapshot"], bool], timeout: float, what: str) -> "Snapshot":
        def check():
            snap = self.snapshot()
            return snap if snap is not None and predicate(snap) else None

        return wait_until(check, timeout, f"{self.name}: {what}", interval=0.1, describe=self.describe)

    def wait_for_first(self, timeout: float = 60) -> "Snapshot":
        return self.wait_for(lambda s: True, timeout, "its first SVID")


class Rig:
    """Servers, agents and files of one test, in one short temp dir; stop_all() ends every process."""

    def __init__(self, sigil: Sigil, directory: Path):
        self.sigil = sigil
        self.dir = directory
        self.processes: list[Background] = []

    def path(self, name: str) -> Path:
        return self.dir / name

    def config(self, settings: dict, name: str = "config.json") -> Path:
        path = self.dir / name
        path.write_text(json.dumps(settings))
        return path

    def serve(self, *args, name: str = "server", data_dir: Path | None = None, socket: Path | None = None,
              timeout: float = 90, listen: str = "127.0.0.1:0") -> Server:
        data_dir = data_dir or self.dir / "pki"
        socket = socket or self.dir / f"{name}.sock"
        server = Server(self.sigil, name, data_dir, socket, list(args), self.dir, listen)
        self.processes.append(server)
        return server.start(timeout)

    def token(self, data_dir: Path, service_account: str = "web", namespace: str = "default", *args) -> Path:
        """A projected-token-shaped JWT from the data dir's local development issuer, in a file."""
        result = self.sigil.ok(
            "dev", "token", "--data-dir", data_dir, "--namespace", namespace, "--service-account", service_account,
            "--ttl", "1h", *args,
        )
        path = self.dir / f"token-{namespace}-{service_account}-{secrets.token_hex(3)}"
        path.write_text(result.stdout)
        return path

    def agent(self, server: Server, token: Path, *args, name: str = "agent", ca_bundle: Path | None = None,
              files: bool = True) -> Agent:
        out_dir = self.dir / f"{name}-out" if files else None
        agent = Agent(self.sigil, name, server, token, out_dir, list(args), self.dir, ca_bundle)
        self.processes.append(agent)
        agent.start()
        return agent

    def describe(self) -> str:
        return "\n".join(p.describe() for p in self.processes)

    def stop_all(self) -> None:
        for process in reversed(self.processes):  # agents before the servers they talk to
            process.stop()


@contextlib.contextmanager
def make_rig(sigil: Sigil):
    """A Rig in a fresh short directory under /tmp; every process stopped and the directory removed
    afterwards (kept when SIGIL_IT_KEEP is set, for debugging)."""
    directory = Path(tempfile.mkdtemp(prefix="sigil-rot.", dir="/tmp"))
    the_rig = Rig(sigil, directory)
    try:
        yield the_rig
    finally:
        the_rig.stop_all()
        if not os.environ.get("SIGIL_IT_KEEP"):
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def rig(sigil: Sigil):
    with make_rig(sigil) as the_rig:
        yield the_rig


# --- PostgreSQL -------------------------------------------------------------------------------------


@pytest.fixture
def postgres_store():
    """A fresh database on $SIGIL_TEST_POSTGRES_URL's server, as sigil's --store URL (sslmode=disable);
    dropped afterwards. Skips when the variable is unset."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set (scripts/test starts a throw-away PostgreSQL and sets it)")
    if shutil.which("psql") is None:
        pytest.skip("the PostgreSQL tests need the `psql` command")
    name = f"sigil_rot_{secrets.token_hex(5)}"
    created = psql(url, f'CREATE DATABASE "{name}"')
    assert created.returncode == 0, f"could not create database {name}:\n{created}"
    try:
        yield with_database(url, name, sslmode=True)
    finally:
        psql(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- certificates -----------------------------------------------------------------------------------


def split_pem(text: str) -> list[str]:
    return re.findall(r"-----BEGIN CERTIFICATE-----\n.*?\n-----END CERTIFICATE-----\n?", text, re.S)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def write_pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_text("".join(pem(c) for c in certs))
    return path


@dataclass
class Snapshot:
    """One consistent reading of an agent's out dir (all three files unchanged between two reads)."""

    chain_pem: bytes
    key_pem: bytes
    bundle_pem: bytes
    chain: list[x509.Certificate]
    bundle: list[x509.Certificate]

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def intermediate(self) -> x509.Certificate:
        return self.chain[1]

    @property
    def serial(self) -> str:
        return format(self.leaf.serial_number, "x")

    @property
    def issuer_fingerprint(self) -> str:
        """SHA-256 of the intermediate that issued the leaf (the chain's second certificate)."""
        return sha256_hex(self.intermediate)

    def write(self, directory: Path) -> tuple[Path, Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        chain, key, bundle = directory / "svid.pem", directory / "svid.key", directory / "bundle.pem"
        chain.write_bytes(self.chain_pem)
        key.write_bytes(self.key_pem)
        bundle.write_bytes(self.bundle_pem)
        return chain, key, bundle


def read_snapshot(out_dir: Path) -> Snapshot | None:
    """The agent's svid.pem, svid.key and bundle.pem as one set, read the way the README tells a workload
    to: resolve `..data` once and read all three from the version directory it names (again if the agent
    removed that version meanwhile). None while there is no set yet. Whatever this returns must be
    consistent: the checks on it would catch a chain paired with another chain's key."""
    names = ("svid.pem", "svid.key", "bundle.pem")
    for _ in range(100):
        try:
            version = out_dir / os.readlink(out_dir / "..data")
            chain_pem, key_pem, bundle_pem = ((version / n).read_bytes() for n in names)
        except FileNotFoundError:
            if not (out_dir / "..data").is_symlink():
                return None
            continue
        return Snapshot(
            chain_pem, key_pem, bundle_pem,
            x509.load_pem_x509_certificates(chain_pem), x509.load_pem_x509_certificates(bundle_pem),
        )
    raise AssertionError(f"the version named by {out_dir}/..data kept vanishing before it could be read")


def check_svid(chain: Path, bundle: Path, key: Path | None = None, spiffe_id: str | None = None) -> Result:
    """The shared conformance checker, run with this venv's Python."""
    args = [sys.executable, CHECK_SVID, "--chain", chain, "--bundle", bundle]
    if key is not None:
        args += ["--key", key]
    if spiffe_id is not None:
        args += ["--spiffe-id", spiffe_id]
    return run(args, timeout=120)


def conformant(result: Result) -> bool:
    return result.returncode == 0 and result.stdout.rstrip().endswith(" 0 failed")


def openssl_verify(cafile: Path, cert: Path, untrusted: Path | None = None, crl: Path | None = None) -> Result:
    """`openssl verify -CAfile … [-untrusted …] [-crl_check -CRLfile …] cert` (checks validity times too)."""
    args = ["openssl", "verify", "-CAfile", cafile]
    if untrusted is not None:
        args += ["-untrusted", untrusted]
    if crl is not None:
        args += ["-crl_check", "-CRLfile", crl]
    return run(args + [cert])


def verified(result: Result) -> bool:
    return result.returncode == 0 and result.stdout.rstrip().endswith(": OK")


def bundle_roots(body: dict) -> list[x509.Certificate]:
    """The roots of a SPIFFE trust bundle (JWKS): one x5c certificate per X.509-SVID key."""
    import base64

    return [
        x509.load_der_x509_certificate(base64.b64decode(key["x5c"][0]))
        for key in body.get("keys", [])
        if key.get("use") == "x509-svid"
    ]


# --- audit ------------------------------------------------------------------------------------------


def audit_records(sigil: Sigil, data_dir: Path, store: str | None = None) -> list[dict]:
    args = ["audit", "list", "--json", "--limit", "100000", "--data-dir", data_dir]
    if store:
        args += ["--store", store]
    result = sigil.ok(*args)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def find_records(records: list[dict], **fields) -> list[dict]:
    """Records whose fields equal the given values; `reason_has="…"` matches a substring of the reason."""
    needle = fields.pop("reason_has", None)
    found = [r for r in records if all(r.get(k) == v for k, v in fields.items())]
    if needle is not None:
        found = [r for r in found if needle in (r.get("reason") or "")]
    return found


def assert_no_crash(text: str, what: str) -> None:
    for marker in CRASH_MARKERS:
        assert marker not in text, f"crash marker {marker!r} in {what}:\n{text[-4000:]}"


# --- the server's own TLS certificate ---------------------------------------------------------------


class TLSWatcher:
    """Handshakes with a server every `interval` s in a thread, verifying its certificate against the
    roots the test has seen, and records (seconds since start, serial) of each certificate presented,
    or the error."""

    def __init__(self, server: Server, interval: float = 0.25):
        import threading

        self.server = server
        self.interval = interval
        self.observations: list[tuple[float, str]] = []
        self.errors: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0.0

    def start(self) -> "TLSWatcher":
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        import socket
        import ssl

        host, port = urlsplit(self.server.url).hostname, urlsplit(self.server.url).port
        while not self._stop.is_set():
            at = time.monotonic() - self._started
            try:
                context = ssl.create_default_context(cafile=str(self.server.trust_path))
                with socket.create_connection((host, port), timeout=10) as raw:
                    with context.wrap_socket(raw, server_hostname=host) as tls:
                        der = tls.getpeercert(binary_form=True)
                self.observations.append((at, format(x509.load_der_x509_certificate(der).serial_number, "x")))
            except Exception as error:  # recorded, judged by the test
                self.errors.append((at, f"{type(error).__name__}: {error}"))
            self._stop.wait(self.interval)

    def most_certificates_within(self, window: float) -> tuple[int, float]:
        """The largest number of distinct certificates presented within any `window` seconds, and when."""
        best, when = 0, 0.0
        for i, (start, _) in enumerate(self.observations):
            serials = {s for t, s in self.observations[i:] if t - start <= window}
            if len(serials) > best:
                best, when = len(serials), start
        return best, when
