"""Crash consistency of `sigil serve` (the driver behind scripts/crashtest; its header has the usage).

Runs concurrent issuance load against `sigil serve`, kills the server with SIGKILL at random moments
(some of them while a rotation is in flight, some during start-up) and restarts it, round after round.
Every certificate a client *received* (a 201 with the certificate in it) goes into a client-side ledger.
After every kill, with the server dead (the store exactly as the crash left it), and again at the end,
it checks:

  - every received certificate has its `issue` audit record (`sigil audit export`) and its inventory row,
    both naming the same identity, authority and key as the certificate itself;
  - every received chain verifies (leaf signed by its intermediate, intermediate by a bundle root);
  - the store holds exactly one active intermediate and one active root (`sigil inspect --json`), and each
    authority appears in the audit chain;
  - `sigil audit verify` passes;
  - after every restart one issuance succeeds, and the final restart comes up, issues and stops cleanly.

No CLI looks up one inventory row by serial (`sigil inspect` gives only live counts per authority), so the
inventory check reads the store's `certificates` table read-only (SQLite `mode=ro`, or psql in a read-only
transaction). The live counts of `sigil inspect --json` are cross-checked against the ledger as well.

The seed fixes the schedule (round kinds, delays, rotation roles); timing on a busy machine still varies,
so a seed reproduces the schedule, not the exact instruction the kill lands on.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "Tests" / "Harness"))
import sigil_harness as harness  # noqa: E402  (the shared test harness)
from sigil_harness import CRASH_MARKERS, REPO_ROOT, clean_env, with_database  # noqa: E402
from sigil_harness.server import LISTENING  # noqa: E402

# Rate limits would throttle the load and turn it into 429s: off for this test.
SERVE_FLAGS = ["--rate-limit-client", "0", "--rate-limit-identity", "0"]

# Short lifetimes (the shortest the configuration rules allow, as in Tests/Integration/rotation_support.py)
# so that the rotation planner has work to do: start-up repairs and scheduled prepare/activate steps.
CONFIG = {
    "authority": {"root_ttl": "30m", "intermediate_ttl": "2m"},
    "policy": {"default_ttl": "20s", "min_ttl": "10s", "max_ttl": "1m", "backdate": "5s"},
}
TRUST_DOMAIN = "cluster.local"
NAMESPACE = "crash"
PROBE_TTL = 10  # seconds: the policy's min_ttl, so that a probe fits under an intermediate close to its end

# Round kinds, as shares of the rounds (the order is shuffled by the seeded RNG).
ROTATION_SHARE = 0.4
STARTUP_SHARE = 0.15
# Share of rotation rounds (SQLite only) whose kill is aimed into the rotation; the others are blind.
TARGETED_SHARE = 2 / 3
# Rotations asked for over the admin socket in rotation rounds: (role, extra flags, weight).
ROTATIONS = [("intermediate", [], 7), ("intermediate", ["--taint-old"], 2), ("root", [], 1)]

# Audit actions about an authority itself (not the certificates it issues).
LIFECYCLE = {"init", "key_import", "prepare", "activate", "retire", "rotate", "taint", "revoke", "admin_rotate",
             "admin_revoke"}

PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\n.*?\n-----END CERTIFICATE-----\n?", re.S)


def log(text: str = "") -> None:
    print(text, flush=True)


def normal_serial(text: str) -> str:
    return text.strip().lower().lstrip("0") or "0"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Failure:
    round: int | str
    what: str
    detail: str = ""

    def __str__(self) -> str:
        text = f"[round {self.round}] {self.what}"
        return text + ("\n      " + self.detail.replace("\n", "\n      ") if self.detail else "")


class Fatal(Exception):
    """The run cannot go on (the server does not come back, a tool is missing)."""


# --- the sigil binary -------------------------------------------------------------------------------


class Sigil(harness.Sigil):
    """The harness's runner, in an environment without SIGIL_* variables, with the store flags of this run."""

    def __init__(self, binary: Path, store_args: list[str]):
        super().__init__(binary)
        self.store_args = store_args

    def run(self, *args, timeout: float = 120, check: bool = False) -> harness.Result:
        result = super().run(*args, timeout=timeout, env=clean_env())
        if check and result.returncode != 0:
            raise Fatal(f"$ {' '.join(result.args)}\nexit {result.returncode}\n"
                        f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
        return result


def snapshot_binary(source: Path, target: Path, wait: float = 180) -> None:
    """Copies the binary into the work dir, so a relink of .build/debug/sigil during the run changes nothing
    here; waits for it while it is missing (being relinked)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            shutil.copy2(source, target)
            ok = subprocess.run([str(target), "--help"], capture_output=True, timeout=60).returncode == 0
        except (FileNotFoundError, OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return
        if time.monotonic() > deadline:
            raise Fatal(f"no working sigil binary at {source} (waited {wait:.0f}s; build it first)")
        time.sleep(1)


# --- sigil serve --------------------------------------------------------------------------------------


class Server:
    """One `sigil serve` process; its stdout and stderr go to files in the work dir."""

    def __init__(self, harness: "Harness", name: str):
        self.h = harness
        self.name = name
        self.stdout_path = harness.work / f"{name}.stdout"
        self.stderr_path = harness.work / f"{name}.stderr"
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.started = 0.0
        self.listening_after: float | None = None

    def spawn(self) -> "Server":
        args = [str(self.h.sigil.binary), "serve", "--data-dir", str(self.h.data), "--listen", "127.0.0.1:0",
                "--config", str(self.h.config), "--log-level", "notice", *self.h.sigil.store_args, *SERVE_FLAGS]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.started = time.monotonic()
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=clean_env(),
                                            start_new_session=True)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_listening(self, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = LISTENING.match(self.stdout().split("\n", 1)[0]) if self.stdout() else None
            if match:
                self.url = match["url"]
                self.listening_after = time.monotonic() - self.started
                return True
            if not self.running:
                return False
            time.sleep(0.01)
        return False

    def kill(self) -> None:
        """SIGKILL: a crash, as far as the store can tell."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(30)

    def terminate(self, timeout: float = 30) -> int | None:
        if self.process is None:
            return None
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        return self.process.returncode

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def describe(self) -> str:
        if self.process is None:
            status = "not started"
        else:
            status = "running" if self.running else f"exit {self.process.returncode}"
        return f"{self.name}: {status}\n--- stderr (tail) ---\n{self.stderr()[-3000:]}"


# --- clients and the ledger -----------------------------------------------------------------------------


@dataclass
class Received:
    """One certificate a client received in a 2xx response."""

    round: int
    client: str
    serial: str  # normalised hex
    spiffe_id: str
    sha256: str  # of the leaf's DER
    key_sha256: str  # of the leaf's SubjectPublicKeyInfo
    issuer_sha256: str  # of the intermediate's DER (chain[1])
    not_before: float
    not_after: float
    received_at: float  # wall time, epoch seconds


class Gate:
    """Where the clients send requests: the current server's URL, or None while it is down. close() waits
    until no request to the old server is in flight, so no request crosses a round boundary."""

    def __init__(self):
        self.cond = threading.Condition()
        self.url: str | None = None
        self.round = 0
        self.inflight = 0
        self.stopped = False

    def open(self, url: str, round_no: int) -> None:
        with self.cond:
            self.url, self.round = url, round_no
            self.cond.notify_all()

    def close(self, timeout: float = 30) -> bool:
        with self.cond:
            self.url = None
            deadline = time.monotonic() + timeout
            while self.inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
        return True

    def stop(self) -> None:
        with self.cond:
            self.url, self.stopped = None, True
            self.cond.notify_all()

    def enter(self) -> tuple[str, int] | None:
        with self.cond:
            while self.url is None and not self.stopped:
                self.cond.wait(0.5)
            if self.stopped:
                return None
            self.inflight += 1
            return self.url, self.round

    def leave(self) -> None:
        with self.cond:
            self.inflight -= 1
            self.cond.notify_all()


class Ledger:
    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.entries: list[Received] = []
        self.failed_requests: dict[int, int] = {}  # round -> requests that got no answer (server died)
        self.refusals: dict[str, int] = {}  # "HTTP status code" -> count
        self.problems: list[Failure] = []  # bad certificates received (chain, identity, …)
        self.bad_serials: set[str] = set()
        self._file = open(path, "a", buffering=1)

    def add(self, entry: Received) -> None:
        with self.lock:
            self.entries.append(entry)
            self._file.write(json.dumps(entry.__dict__) + "\n")

    def failed(self, round_no: int) -> None:
        with self.lock:
            self.failed_requests[round_no] = self.failed_requests.get(round_no, 0) + 1

    def refused(self, status: int, code: str) -> None:
        with self.lock:
            key = f"{status} {code}"
            self.refusals[key] = self.refusals.get(key, 0) + 1

    def problem(self, failure: Failure, serial: str | None = None) -> None:
        with self.lock:
            self.problems.append(failure)
            if serial:
                self.bad_serials.add(serial)

    def of_round(self, round_no: int) -> list[Received]:
        with self.lock:
            return [e for e in self.entries if e.round == round_no]

    def all(self) -> list[Received]:
        with self.lock:
            return list(self.entries)

    def close(self) -> None:
        self._file.close()


class Client:
    """One workload: its own P-256 key and CSR, a dev token for its own identity."""

    def __init__(self, harness: "Harness", name: str, token: str):
        self.h = harness
        self.name = name
        self.spiffe_id = f"spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{name}"
        self.token = token
        key = ec.generate_private_key(ec.SECP256R1())
        self.key_sha256 = sha256_hex(
            key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(self.spiffe_id)]), critical=False)
            .sign(key, hashes.SHA256())
        )
        self.csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode()
        self.session: requests.Session | None = None
        self.session_url = ""

    def issue(self, url: str, round_no: int, ttl: int | None = None, timeout: float = 15) -> str:
        """One POST /v1/certificates. Returns "issued", "refused" or "failed" (no answer: the server died)."""
        if self.session is None or self.session_url != url:
            if self.session is not None:
                self.session.close()
            self.session, self.session_url = requests.Session(), url
        body: dict = {"csr": self.csr_pem}
        if ttl is not None:
            body["ttl_seconds"] = ttl
        try:
            response = self.session.post(
                url + "/v1/certificates", data=json.dumps(body), timeout=(5, timeout), verify=str(self.h.trust_path),
                headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            )
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
            self.h.ledger.failed(round_no)
            self.session.close()
            self.session = None
            return "failed"
        # requests has read the whole body (a cut one raises above): from here on the client holds the answer.
        if response.status_code // 100 != 2:
            try:
                problem = "problem+json" in response.headers.get("Content-Type", "")
                code = response.json().get("code", "") if problem else ""
            except ValueError:
                code = "(unreadable problem document)"
            self.h.ledger.refused(response.status_code, code)
            return "refused"
        self.accept(response, round_no)
        return "issued"

    def accept(self, response: requests.Response, round_no: int) -> None:
        """Records a received certificate in the ledger, after checking what the client can check alone."""
        received_at = time.time()
        problems = []
        try:
            document = response.json()
            chain = [x509.load_pem_x509_certificate(p.encode()) for p in document["chain"]]
            roots = [x509.load_pem_x509_certificate(p.encode()) for p in document["trust_bundle"]]
            leaf = chain[0]
            der = leaf.public_bytes(serialization.Encoding.DER)
            serial = normal_serial(document["serial"])
        except Exception as error:  # a 2xx the client cannot use is a finding
            self.h.ledger.problem(Failure(round_no, f"{self.name}: unreadable HTTP {response.status_code} response",
                                          f"{type(error).__name__}: {error}\n{response.text[:500]}"))
            return
        if normal_serial(format(leaf.serial_number, "x")) != serial:
            problems.append(f"body serial {document['serial']} != leaf serial {leaf.serial_number:x}")
        try:
            san = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
            uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        if uris != [self.spiffe_id] or document.get("spiffe_id") != self.spiffe_id:
            problems.append(f"identity {uris} / {document.get('spiffe_id')} != {self.spiffe_id}")
        key_sha256 = sha256_hex(
            leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
        if key_sha256 != self.key_sha256:
            problems.append("the leaf does not carry the CSR's public key")
        if len(chain) < 2:
            problems.append(f"chain of {len(chain)} certificate(s)")
        else:
            problems += chain_problems(chain, roots)
        if problems:
            failure = Failure(round_no, f"{self.name}: bad certificate serial {serial}", "\n".join(problems))
            self.h.ledger.problem(failure, serial)
        issuer = chain[1].public_bytes(serialization.Encoding.DER) if len(chain) > 1 else b""
        self.h.ledger.add(Received(
            round=round_no, client=self.name, serial=serial, spiffe_id=self.spiffe_id, sha256=sha256_hex(der),
            key_sha256=key_sha256, issuer_sha256=sha256_hex(issuer) if issuer else "",
            not_before=leaf.not_valid_before_utc.timestamp(), not_after=leaf.not_valid_after_utc.timestamp(),
            received_at=received_at,
        ))
        self.h.add_trust(document["trust_bundle"])

    def run_load(self) -> None:
        gate = self.h.gate
        while True:
            entered = gate.enter()
            if entered is None:
                return
            url, round_no = entered
            try:
                outcome = self.issue(url, round_no)
            finally:
                gate.leave()
            if outcome == "failed":
                time.sleep(0.01)  # the server is going away; the gate closes in a moment


def chain_problems(chain: list[x509.Certificate], roots: list[x509.Certificate]) -> list[str]:
    """Each certificate signed by the next, the last one by a root of the trust bundle."""
    problems = []
    for child, parent in zip(chain, chain[1:]):
        try:
            child.verify_directly_issued_by(parent)
        except Exception as error:
            name = child.subject.rfc4514_string() or "leaf"
            problems.append(f"{name} not signed by {parent.subject.rfc4514_string()}: {error}")
    top = chain[-1]
    for root in roots:
        try:
            top.verify_directly_issued_by(root)
            return problems
        except Exception:
            continue
    problems.append(f"{top.subject.rfc4514_string()} chains to no root of the response's trust bundle")
    return problems


# --- the store, read for the checks ------------------------------------------------------------------------


class Store:
    """Read-only access to the inventory (no CLI looks up a row by serial; see the module docstring)."""

    def __init__(self, data: Path, url: str | None):
        self.data = data
        self.url = url

    def inventory(self, serials: list[str]) -> dict[str, dict]:
        """Inventory rows by normalised serial, for the serials asked for."""
        wanted = sorted(set(serials))
        rows: dict[str, dict] = {}
        if not wanted:
            return rows
        columns = ["serial", "spiffe_id", "authority_id", "not_before", "not_after", "key_sha256"]
        if self.url is None:
            db = sqlite3.connect(f"file:{self.data / 'sigil.db'}?mode=ro", uri=True, timeout=30)
            try:
                for row in db.execute(f"SELECT {', '.join(columns)} FROM certificates"):
                    serial = normal_serial(row[0])
                    rows[serial] = dict(zip(columns, row))
            finally:
                db.close()
        else:
            result = subprocess.run(
                ["psql", self.url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-A", "-t", "-F", "\t", "-c",
                 f"SELECT {', '.join(columns)} FROM certificates"],
                capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                env={**os.environ, "PGOPTIONS": "-c default_transaction_read_only=on"},
            )
            if result.returncode != 0:
                raise Fatal(f"psql could not read the inventory:\n{result.stderr}")
            for line in result.stdout.splitlines():
                if not line:
                    continue
                values = line.split("\t")
                row = dict(zip(columns, values))
                row["not_before"], row["not_after"] = float(row["not_before"]), float(row["not_after"])
                rows[normal_serial(row["serial"])] = row
        return {s: rows[s] for s in wanted if s in rows}


class AuthorityWatch:
    """Timing only, never a check: notices within about a millisecond when a rotation's first new authority
    row (or its last audit record) is committed to the SQLite store, read-only, so that kills can be aimed
    into rotations. Connections live for one wait, so that none of ours stays open across a crash."""

    AUTHORITIES = "SELECT count(*) FROM authorities"
    FINISHED = "SELECT count(*) FROM audit WHERE reason = ? AND action IN ('retire', 'taint')"

    def __init__(self, path: Path):
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)

    def count(self, sql: str = AUTHORITIES, *params) -> int:
        db = self._connect()
        try:
            return db.execute(sql, params).fetchall()[0][0]
        finally:
            db.close()

    def wait_for_more(self, count: int, give_up, timeout: float, sql: str = AUTHORITIES, *params) -> float | None:
        """The time (monotonic) the query first counted more than `count`, or None if give_up() or time ran out."""
        deadline = time.monotonic() + timeout
        db = self._connect()
        try:
            while time.monotonic() < deadline:
                try:
                    if db.execute(sql, params).fetchall()[0][0] > count:
                        return time.monotonic()
                except sqlite3.OperationalError:
                    pass  # busy: look again
                if give_up():
                    return None
                time.sleep(0.0005)
        finally:
            db.close()
        return None


class AdminCommand:
    """`sigil admin …` in the background, output in a file; a thread notes when it exits."""

    def __init__(self, harness: "Harness", name: str, *args: str):
        self.output = harness.work / f"{name}.admin.txt"
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                [str(harness.sigil.binary), "admin", *args, "--socket", str(harness.socket)], stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, env=clean_env())
        self.started = time.monotonic()
        self.exited_at: float | None = None
        self._thread = threading.Thread(target=self._wait, daemon=True)
        self._thread.start()
        harness.admin_commands.append(self)

    def _wait(self) -> None:
        self.process.wait()
        self.exited_at = time.monotonic()

    @property
    def finished(self) -> bool:
        return self.exited_at is not None

    def wait(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return self.finished

    def kill(self) -> None:
        if not self.finished:
            self.process.kill()
        self._thread.join(30)

    def text(self) -> str:
        return self.output.read_text(errors="replace")


# --- the run ---------------------------------------------------------------------------------------------


@dataclass
class RoundReport:
    number: int
    kind: str
    detail: str = ""
    issued: int = 0
    failed: int = 0
    up_after: float | None = None
    rotation: str = ""  # completed / interrupted / not started (rotation rounds)
    failures: int = 0


@dataclass
class Totals:
    rotation_rounds: int = 0
    kills_during_rotation: int = 0
    rotations_completed: int = 0
    rotations_not_started: int = 0
    startup_kills_before_listening: int = 0
    probes: int = 0
    verified: int = 0
    final: str = ""
    audit_verify: str = "not run"


class Harness:
    def __init__(self, options: argparse.Namespace, work: Path):
        self.options = options
        self.work = work
        self.rng = random.Random(options.seed)
        self.data = work / "pki"
        self.config = work / "config.json"
        self.trust_path = work / "trust.pem"
        self.trust_lock = threading.Lock()
        self.trusted: list[str] = []
        self.failures: list[Failure] = []
        self.rounds: list[RoundReport] = []
        self.totals = Totals()
        self.gate = Gate()
        self.ledger = Ledger(work / "ledger.jsonl")
        self.store_url: str | None = None
        self.database: tuple[str, str] | None = None  # (server URL, database name) we created
        self.sigil: Sigil | None = None
        self.store: Store | None = None
        self.server: Server | None = None
        self.clients: list[Client] = []
        self.threads: list[threading.Thread] = []
        self.probe: Client | None = None
        # Seconds from `sigil admin rotate` starting to its exit, and from the rotation's first new authority
        # row to its last audit record: measured under load in round 0.
        self.rotation_time = 0.3
        self.rotation_rest = 0.01
        self.watch: AuthorityWatch | None = None
        self.startup_times: list[float] = []
        self.admin_commands: list[AdminCommand] = []
        self.reported_problems = 0
        self.unaudited: set[tuple[str, str]] = set()  # (authority, problem) already reported

    # -- helpers

    def fail(self, round_no, what: str, detail: str = "") -> None:
        failure = Failure(round_no, what, detail)
        self.failures.append(failure)
        log(f"    FAIL {failure}")

    def add_trust(self, pems: list[str]) -> None:
        with self.trust_lock:
            normal = [p if p.endswith("\n") else p + "\n" for p in pems]
            added = [p for p in dict.fromkeys(normal) if p not in self.trusted]
            if not added:
                return
            self.trusted += added
            tmp = self.trust_path.with_suffix(".tmp")
            tmp.write_text("".join(self.trusted))
            os.replace(tmp, self.trust_path)

    def refresh_trust(self) -> None:
        bundle = self.data / "bundle.pem"
        if bundle.exists():
            self.add_trust(PEM_CERT.findall(bundle.read_text()))

    def store_args(self) -> list[str]:
        return ["--store", self.store_url] if self.store_url else []

    def inspect(self) -> dict:
        result = self.sigil.run("inspect", "--data-dir", self.data, *self.store_args(), "--json")
        if result.returncode != 0:
            raise Fatal(f"sigil inspect --json failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
        return json.loads(result.stdout)

    # -- set-up

    def set_up(self) -> None:
        options = self.options
        binary = self.work / "sigil"
        snapshot_binary(Path(options.binary), binary)
        if options.store and options.store != "sqlite":
            if not options.store.startswith(("postgres://", "postgresql://")):
                raise Fatal(f"--store must be sqlite or a postgres:// URL, not {options.store}")
            if shutil.which("psql") is None:
                raise Fatal("--store postgres://… needs the psql command (Debian package postgresql-client)")
            name = f"sigil_crash_{secrets.token_hex(5)}"
            created = subprocess.run(["psql", options.store, "-X", "-q", "-c", f'CREATE DATABASE "{name}"'],
                                     capture_output=True, text=True, timeout=60)
            if created.returncode != 0:
                raise Fatal(f"could not create database {name} on {options.store}:\n{created.stderr}")
            self.database = (options.store, name)
            self.store_url = with_database(options.store, name)
        self.sigil = Sigil(binary, self.store_args())
        help_text = self.sigil.run("serve", "--help").stdout
        unknown = [flag for flag in SERVE_FLAGS if flag.startswith("--") and flag not in help_text]
        if unknown:
            raise Fatal(f"this sigil binary does not know {', '.join(unknown)} (sigil serve --help); the crash test "
                        "turns rate limiting off with them")
        self.store = Store(self.data, self.store_url)
        self.config.write_text(json.dumps(CONFIG))

    def tear_down(self, keep: bool) -> None:
        self.gate.stop()
        for thread in self.threads:
            thread.join(30)
        if self.server is not None and self.server.running:
            self.server.kill()
        for admin in self.admin_commands:
            admin.kill()
        self.ledger.close()
        if self.database and not keep:
            server_url, name = self.database
            subprocess.run(["psql", server_url, "-X", "-q", "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                           capture_output=True, timeout=60)

    # -- round 0: a clean first start (CA initialisation), tokens, clients, one measured rotation

    def first_start(self) -> None:
        server = Server(self, "round-00").spawn()
        self.server = server
        if not server.wait_listening(120):
            raise Fatal(f"the first sigil serve did not come up:\n{server.describe()}")
        self.refresh_trust()
        if self.store_url is None:
            self.watch = AuthorityWatch(self.data / "sigil.db")
        tokens = {}
        names = [f"client-{i}" for i in range(self.options.clients)] + ["probe"]
        for name in names:
            result = self.sigil.run("dev", "token", "--data-dir", self.data, *self.store_args(), "--namespace",
                                    NAMESPACE, "--service-account", name, "--ttl", "24h", check=True)
            tokens[name] = result.stdout.strip()
        self.clients = [Client(self, name, tokens[name]) for name in names[:-1]]
        self.probe = Client(self, "probe", tokens["probe"])
        self.probe_issuance(0, server)
        for client in self.clients:
            thread = threading.Thread(target=client.run_load, name=client.name, daemon=True)
            thread.start()
            self.threads.append(thread)
        self.gate.open(server.url, 0)
        # One rotation under load, which must work, measures the kill windows of the rotation rounds: how long
        # `sigil admin rotate` takes from start to exit (a debug binary starting on two busy cores is slow to
        # even reach the server), and how long the server takes from its first new authority row to the last
        # audit record of the rotation (a few milliseconds).
        reason = "crashtest: calibration"
        count = self.watch.count() if self.watch else 0
        admin = AdminCommand(self, "round-00", "rotate", "intermediate", "--reason", reason)
        began = done = None
        if self.watch:
            began = self.watch.wait_for_more(count, lambda: admin.finished, 60)
            done = self.watch.wait_for_more(0, lambda: admin.finished, 60, AuthorityWatch.FINISHED, reason)
        if not admin.wait(120) or admin.process.returncode != 0:
            raise Fatal(f"sigil admin rotate intermediate failed:\n{admin.text()}\n{server.describe()}")
        self.rotation_time = admin.exited_at - admin.started
        if began and done:
            self.rotation_rest = max(0.001, done - began)
        self.probe_issuance(0, server)
        delay = self.rng.uniform(0.2, 1.0)
        time.sleep(delay)
        server.kill()
        measured = f"rotation under load: command {self.rotation_time * 1000:.0f} ms" + (
            f", server {self.rotation_rest * 1000:.1f} ms" if began and done else "")
        detail = f"CA initialised, up in {server.listening_after:.2f}s; {measured}; killed after {delay:.2f}s of load"
        self.end_round(RoundReport(0, "first", detail), server)

    @property
    def socket(self) -> Path:
        return self.data / "admin.sock"

    def probe_issuance(self, round_no: int, server: Server) -> bool:
        """One issuance right after the server came up: it must succeed within 15 s."""
        deadline = time.monotonic() + 15
        outcome = ""
        while time.monotonic() < deadline:
            outcome = self.probe.issue(server.url, round_no, ttl=PROBE_TTL)
            if outcome == "issued":
                self.totals.probes += 1
                return True
            if not server.running:
                break
            time.sleep(0.2)
        self.fail(round_no, "no certificate issued after the restart",
                  f"last attempt: {outcome}; refusals so far {self.ledger.refusals}\n{server.describe()}")
        return False

    # -- rounds

    def schedule(self) -> list[str]:
        rounds = self.options.rounds
        rotation = max(1, round(rounds * ROTATION_SHARE)) if rounds >= 2 else 0
        startup = round(rounds * STARTUP_SHARE) if rounds >= 4 else 0
        kinds = ["rotation"] * rotation + ["startup"] * startup
        kinds += ["load"] * (rounds - len(kinds))
        self.rng.shuffle(kinds)
        return kinds

    def run_round(self, number: int, kind: str) -> None:
        report = RoundReport(number, kind)
        server = Server(self, f"round-{number:02d}").spawn()
        self.server = server
        if kind == "startup":
            # Kill somewhere in start-up: opening the store, repair, first rotation step, listening.
            typical = statistics.median(self.startup_times) if self.startup_times else 0.5
            delay = self.rng.uniform(0, 1.2 * typical)
            time.sleep(max(0.0, delay - (time.monotonic() - server.started)))
            up = LISTENING.match(server.stdout().split("\n", 1)[0]) is not None
            if not server.running:
                self.fail(number, "sigil serve exited on its own during start-up", server.describe())
            server.kill()
            if not up:
                self.totals.startup_kills_before_listening += 1
            report.detail = f"killed {delay * 1000:.0f} ms after spawn ({'after' if up else 'before'} listening)"
            self.end_round(report, server)
            return
        if not server.wait_listening(60):
            self.fail(number, "sigil serve did not come back after the crash", server.describe())
            raise Fatal("the server does not restart; stopping the run")
        report.up_after = server.listening_after
        self.startup_times.append(server.listening_after)
        self.refresh_trust()
        self.probe_issuance(number, server)
        self.gate.open(server.url, number)
        if kind == "load":
            delay = self.rng.uniform(0.2, 1.5)
            time.sleep(delay)
            alive = server.running
            server.kill()
            report.detail = f"killed after {delay:.2f}s of load"
            if not alive:
                self.fail(number, "sigil serve exited on its own under load", server.describe())
        else:
            self.rotation_round(number, server, report)
        self.end_round(report, server)

    def rotation_round(self, number: int, server: Server, report: RoundReport) -> None:
        """`sigil admin rotate` under load, and a SIGKILL around it. Targeted (SQLite): the kill lands a random
        fraction of the rotation's measured duration after its first new authority row is committed. Blind
        (PostgreSQL, and a third of the rounds on SQLite): a random fraction of the whole command's duration
        after it was started, so that it may also land before the server began or after it finished."""
        self.totals.rotation_rounds += 1
        role, flags, _ = self.rng.choices(ROTATIONS, weights=[w for _, _, w in ROTATIONS])[0]
        lead = self.rng.uniform(0.1, 0.8)
        fraction = self.rng.uniform(0, 1)
        targeted = self.rng.random() < TARGETED_SHARE and self.watch is not None
        time.sleep(lead)
        before = {a["id"] for a in self.inspect()["authorities"]}
        count = self.watch.count() if targeted else 0
        reason = f"crashtest round {number}"
        admin = AdminCommand(self, f"round-{number:02d}", "rotate", role, *flags, "--reason", reason)
        began = None
        if targeted:
            began = self.watch.wait_for_more(count, lambda: admin.finished or not server.running, timeout=20)
            kill_after = fraction * 1.25 * self.rotation_rest  # a fifth of them after the server is done
            time.sleep(kill_after)
            timing = f"killed {kill_after * 1000:.1f} ms after its first new authority row" if began else \
                "never saw it begin"
        else:
            kill_after = fraction * 1.5 * self.rotation_time  # up to half again its duration: some land after it
            time.sleep(kill_after)
            timing = f"killed {kill_after * 1000:.0f} ms after the command started (blind)"
        finished = admin.finished
        alive = server.running
        server.kill()
        self.gate.close()
        # `sigil admin` keeps retrying a refused connection until its 60 s deadline: do not wait for that.
        if not admin.wait(3):
            admin.kill()
        if not alive:
            self.fail(number, "sigil serve exited on its own during the round", server.describe())
        completed = finished and admin.process.returncode == 0
        if completed:
            # A finished command refines the blind window for the next ones.
            self.rotation_time = 0.6 * self.rotation_time + 0.4 * (admin.exited_at - admin.started)
        after = {a["id"]: a["state"] for a in self.inspect()["authorities"]}
        new = {i: s for i, s in after.items() if i not in before}
        # The server's last step of a rotation is the retire (or taint) record of what it replaced.
        done = any(r.get("reason") == reason and r.get("action") in ("retire", "taint") for r in self.audit_export())
        if completed or done:
            self.totals.rotations_completed += 1
            report.rotation = "it completed before the kill" + ("" if completed else " (before the command returned)")
            if targeted and began:
                self.rotation_rest = max(0.001, 0.7 * self.rotation_rest)  # aim earlier next time
        elif new:
            self.totals.kills_during_rotation += 1
            report.rotation = "KILLED MID-ROTATION, new: " + ", ".join(f"{i} {s}" for i, s in sorted(new.items()))
        else:
            self.totals.rotations_not_started += 1
            report.rotation = "killed before the server began it"
            if not targeted:
                # The command had not even reached the server: under load it starts slower than when measured.
                self.rotation_time = min(2.0, self.rotation_time * 1.5)
        what = f"{role}{' ' + ' '.join(flags) if flags else ''}"
        report.detail = f"admin rotate {what} {lead:.2f}s into the load, {timing}"

    def end_round(self, report: RoundReport, server: Server) -> None:
        """After the kill: no request in flight, then the checks on the store exactly as the crash left it."""
        server.kill()
        if not self.gate.close():
            self.fail(report.number, "client requests still in flight 30 s after the server died")
        if any(marker in server.stderr() for marker in CRASH_MARKERS):
            self.fail(report.number, "crash marker in the server's stderr", server.describe())
        entries = self.ledger.of_round(report.number)
        report.issued = len(entries)
        report.failed = self.ledger.failed_requests.get(report.number, 0)
        before = len(self.failures)
        with self.ledger.lock:
            problems = self.ledger.problems[self.reported_problems:]
            self.reported_problems = len(self.ledger.problems)
        for problem in problems:
            log(f"    FAIL {problem}")
        self.check_store(report.number, entries)
        report.failures = len(self.failures) - before + len(problems)
        self.rounds.append(report)
        self.print_round(report)

    def print_round(self, r: RoundReport) -> None:
        width = len(str(self.options.rounds))
        label = "round 0" if r.number == 0 else f"round {r.number:>{width}}/{self.options.rounds}"
        parts = [f"{label}  {r.kind:<8}"]
        if r.up_after is not None:
            parts.append(f"up {r.up_after:.2f}s")
        parts.append(f"+{r.issued} certs, {r.failed} requests cut")
        parts.append(r.detail)
        if r.rotation:
            parts.append(r.rotation)
        parts.append("checks ok" if r.failures == 0 else f"{r.failures} FAILED CHECK(S)")
        log("  " + " · ".join(p for p in parts if p))

    # -- checks

    def check_store(self, round_no, entries: list[Received]) -> int:
        """With the server dead (or stopped): authorities, the audit chain, and every certificate in `entries`.
        Returns how many of `entries` passed."""
        authorities = self.inspect()["authorities"]
        records = self.audit_export()
        self.check_authorities(round_no, authorities, records)
        verify = self.sigil.run("audit", "verify", "--data-dir", self.data, *self.store_args())
        self.totals.audit_verify = (verify.stdout + verify.stderr).strip()
        if verify.returncode != 0:
            self.fail(round_no, "sigil audit verify failed", self.totals.audit_verify)
            self.keep_evidence(round_no)
        return self.check_certificates(round_no, entries, authorities, records)

    def check_authorities(self, round_no, authorities: list[dict], records: list[dict]) -> None:
        for role in ("intermediate", "root"):
            active = [a["id"] for a in authorities if a["role"] == role and a["state"] == "active"]
            if len(active) != 1:
                states = ", ".join(f"{a['id']}={a['state']}" for a in authorities)
                self.fail(round_no, f"{len(active)} active {role}(s) in the store, expected exactly one", states)
                self.keep_evidence(round_no)
        # Every authority the store holds was written by an audited step (init, prepare, rotate, …), and an
        # active one was made active by one (init, key_import, activate, rotate, admin_rotate). Issue records
        # name their authority too, so they do not count.
        named = {r.get("authority_id") for r in records if r.get("action") in LIFECYCLE}
        activated = {r.get("authority_id") for r in records if r.get("outcome") == "success"
                     and r.get("action") in ("init", "key_import", "activate", "rotate", "admin_rotate")}
        for authority in authorities:
            what = f"{authority['role']} {authority['id']} ({authority['state']})"
            if authority["id"] not in named:
                problem = ("has no audit record", "it is in the store, but no record of an authority step "
                                                  "(init, prepare, activate, rotate, …) names it")
            elif authority["state"] == "active" and authority["id"] not in activated:
                problem = ("is active without an audit record of its activation",
                           "no init/key_import/activate/rotate/admin_rotate record names it")
            else:
                continue
            if (authority["id"], problem[0]) not in self.unaudited:  # report each once, not after every later kill
                self.unaudited.add((authority["id"], problem[0]))
                self.fail(round_no, f"{what} {problem[0]}", problem[1])
                self.keep_evidence(round_no)

    def audit_export(self) -> list[dict]:
        args = ["audit", "export", "--data-dir", self.data, *self.store_args()]
        result = self.sigil.run(*args, timeout=300)
        if result.returncode != 0:
            raise Fatal(f"sigil audit export failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def check_certificates(self, round_no, entries: list[Received], authority_list: list[dict],
                           records: list[dict]) -> int:
        """Each received certificate: an issue audit record and an inventory row that agree with it."""
        authorities = {a["sha256_fingerprint"]: a for a in authority_list}
        issued: dict[str, list[dict]] = {}
        for record in records:
            if record.get("action") in ("issue", "renew") and record.get("outcome") == "success" \
                    and record.get("serial"):
                issued.setdefault(normal_serial(record["serial"]), []).append(record)
        rows = self.store.inventory([e.serial for e in entries])
        bad = 0
        failed: set[str] = set()
        for entry in entries:
            problems = []
            authority = authorities.get(entry.issuer_sha256)
            authority_id = authority["id"] if authority else None
            if authority is None:
                problems.append(f"its intermediate (sha256 {entry.issuer_sha256[:16]}…) is not in the store")
            found = issued.get(entry.serial, [])
            if not found:
                problems.append("no issue audit record")
            elif len(found) > 1:
                problems.append(f"{len(found)} issue audit records")
            else:
                record = found[0]
                expected = {"subject": entry.spiffe_id, "public_key_sha256": entry.key_sha256,
                            "authority_id": authority_id}
                for name, want in expected.items():
                    if want is not None and record.get(name) != want:
                        problems.append(f"audit record seq {record.get('seq')}: {name} {record.get(name)!r} "
                                        f"!= {want!r}")
            row = rows.get(entry.serial)
            if row is None:
                problems.append("no inventory row")
            else:
                expected = {"spiffe_id": entry.spiffe_id, "key_sha256": entry.key_sha256, "authority_id": authority_id}
                for name, want in expected.items():
                    if want is not None and row[name] != want:
                        problems.append(f"inventory row: {name} {row[name]!r} != {want!r}")
                for name, want in (("not_before", entry.not_before), ("not_after", entry.not_after)):
                    if abs(float(row[name]) - want) > 1:
                        problems.append(f"inventory row: {name} {row[name]} != {want}")
            if problems:
                bad += 1
                failed.add(entry.serial)
                if bad <= 10:
                    self.fail(round_no, f"certificate serial {entry.serial} ({entry.spiffe_id}, received in round "
                                        f"{entry.round}, sha256 {entry.sha256[:16]}…)", "; ".join(problems))
        if bad > 10:
            self.fail(round_no, f"... {bad - 10} more certificate(s) with the same kind of problem")
        if bad:
            self.keep_evidence(round_no)
        # Verified: both records agree with it, and it passed the client's own checks when received.
        return sum(1 for e in entries if e.serial not in failed and e.serial not in self.ledger.bad_serials)

    def check_live_counts(self) -> None:
        """The supported interface's view: `sigil inspect --json` live counts cover the ledger's live certificates."""
        now = time.time()
        tree = self.inspect()
        by_fingerprint = {a["sha256_fingerprint"]: a for a in tree["authorities"]}
        expected: dict[str, int] = {}
        for entry in self.ledger.all():
            if entry.not_after > now + 10 and entry.issuer_sha256 in by_fingerprint:
                expected[entry.issuer_sha256] = expected.get(entry.issuer_sha256, 0) + 1
        for fingerprint, count in expected.items():
            authority = by_fingerprint[fingerprint]
            if authority.get("live_certificates", 0) < count:
                self.fail("final", f"sigil inspect counts {authority.get('live_certificates')} live certificate(s) "
                                   f"under {authority['id']}, the clients hold {count} live ones from it")

    def keep_evidence(self, round_no) -> None:
        """A copy of the data dir as the crash left it (the work dir is kept with --keep)."""
        target = self.work / f"evidence-round-{round_no}"
        if not target.exists():
            shutil.copytree(self.data, target, ignore=shutil.ignore_patterns("*.sock"), dirs_exist_ok=True)

    # -- the end

    def final(self) -> None:
        number = len(self.rounds)
        server = Server(self, "final").spawn()
        self.server = server
        if not server.wait_listening(60):
            self.fail("final", "sigil serve did not come up for the final run", server.describe())
            self.totals.final = "did not come up"
            raise Fatal("the server does not restart")
        self.refresh_trust()
        issued = self.probe_issuance(number, server)
        self.gate.open(server.url, number)
        time.sleep(0.5)
        self.gate.close()
        self.gate.stop()
        for thread in self.threads:
            thread.join(30)
        status = self.sigil.run("admin", "status", "--json", "--socket", self.socket)
        if status.returncode != 0:
            self.fail("final", "sigil admin status failed on the final server", status.stderr)
        else:
            active = [a["id"] for a in json.loads(status.stdout)["authorities"]
                      if a["role"] == "intermediate" and a["state"] == "active"]
            if len(active) != 1:
                self.fail("final", f"sigil admin status shows {len(active)} active intermediates",
                          status.stdout[-2000:])
        code = server.terminate()
        if code != 0:
            self.fail("final", f"the final sigil serve did not stop cleanly on SIGTERM (exit {code})",
                      server.describe())
        if any(marker in server.stderr() for marker in CRASH_MARKERS):
            self.fail("final", "crash marker in the final server's stderr", server.describe())
        self.totals.final = (f"up in {server.listening_after:.2f}s, {'issued' if issued else 'DID NOT ISSUE'}, "
                             f"SIGTERM exit {code}")
        entries = self.ledger.all()
        self.rounds.append(RoundReport(number, "final", issued=len(self.ledger.of_round(number))))
        # Everything once more, over the whole ledger and the whole chain.
        self.totals.verified = self.check_store("final", entries)
        self.check_live_counts()


def summary(h: Harness, started: float, aborted: str | None) -> bool:
    t = h.totals
    entries = h.ledger.all()
    failures = h.failures + h.ledger.problems
    kinds = {}
    for r in h.rounds:
        if r.number and r.kind != "final":
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
    cut = sum(h.ledger.failed_requests.values())
    passed = not failures and aborted is None
    log()
    log(f"crashtest: {'PASS' if passed else 'FAIL'}")
    rows = [
        ("seed", f"{h.options.seed}  (again: scripts/crashtest --seed {h.options.seed} --rounds {h.options.rounds}"
                 f"{' --store ' + h.options.store if h.options.store != 'sqlite' else ''})"),
        ("store", "SQLite in the data dir" if not h.store_url else f"PostgreSQL {h.store_url}"),
        ("SIGKILLs", f"{sum(kinds.values())} rounds + the first start  ("
                     + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ")"),
        ("kills during rotation", f"{t.kills_during_rotation} of {t.rotation_rounds} rotation rounds (the server had "
                                  f"begun it, its last audit record was not written); {t.rotations_completed} after "
                                  f"it completed, {t.rotations_not_started} before it began"),
        ("start-up kills", f"{kinds.get('startup', 0)}, {t.startup_kills_before_listening} of them before the "
                           f"listening line"),
        ("certificates received", f"{len(entries)}  (from {len(h.clients)} client threads and {t.probes} probe "
                                  f"issuances after starts)"),
        ("certificates verified", f"{t.verified} of {len(entries)}: issue audit record + inventory row + chain"),
        ("requests cut by kills", f"{cut}"),
        ("refusals", ", ".join(f"{n}× {k}" for k, n in sorted(h.ledger.refusals.items())) or "none"),
        ("audit verify", t.audit_verify),
        ("final restart", t.final or "not reached"),
        ("time", f"{time.monotonic() - started:.0f}s"),
    ]
    for name, value in rows:
        log(f"  {name:<24}{value}")
    if aborted:
        log(f"  aborted: {aborted}")
    if failures:
        log(f"\n{len(failures)} failure(s):")
        for failure in failures[:40]:
            log(f"  {failure}")
        if len(failures) > 40:
            log(f"  ... and {len(failures) - 40} more")
    if not passed and not h.options.keep:
        log("  (--keep keeps the work dir of a failed run: server logs, ledger, data dir, evidence-round-*/)")
    return passed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/crashtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--store", default="sqlite")
    parser.add_argument("--binary", default=str(REPO_ROOT / ".build" / "debug" / "sigil"))
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--keep", action="store_true")
    options = parser.parse_args(argv)
    if options.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not 1 <= options.clients <= 64:
        parser.error("--clients must be between 1 and 64")
    if options.seed is None:
        options.seed = int.from_bytes(os.urandom(4), "big")
    started = time.monotonic()

    def terminated(signum, frame):
        raise KeyboardInterrupt  # clean up (servers, work dir) as on Ctrl-C

    signal.signal(signal.SIGTERM, terminated)
    work = Path(tempfile.mkdtemp(prefix="sigil-crash.", dir="/tmp"))
    log(f"crashtest: seed {options.seed}, {options.rounds} rounds, {options.clients} clients, "
        f"store {options.store}, work dir {work}")
    harness = Harness(options, work)
    aborted = None
    passed = False
    try:
        harness.set_up()
        harness.first_start()
        for number, kind in enumerate(harness.schedule(), start=1):
            harness.run_round(number, kind)
        harness.final()
    except Fatal as error:
        aborted = str(error)
    except KeyboardInterrupt:
        aborted = "interrupted"
    except Exception:  # a bug here, or a store the checks cannot read: FAIL with the whole story
        aborted = traceback.format_exc()
    finally:
        harness.gate.stop()
        passed = summary(harness, started, aborted) if harness.sigil else False
        if not harness.sigil:
            log(f"crashtest: FAIL (set-up: {aborted})")
        keep = options.keep and not passed
        harness.tear_down(keep)
        if keep:
            log(f"  work dir kept: {work} (ledger.jsonl, round-*.stderr, pki/, evidence-round-*/)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
