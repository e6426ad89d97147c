"""The secrets ledger: every secret the harness makes, and everything sigil printed or recorded while it ran,
so that one scan at the end of a session can grep all of sigil's output for token and key material."""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 §5), as JWTs use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- the secrets ledger -------------------------------------------------------------------------------
# Every secret the suite makes, and everything sigil printed or recorded while it ran, so that one scan at
# the end of the session (conftest.py's last item) can grep all of sigil's output for token and key
# material. The helpers above register as they go: run() (every `sigil` command), SigilServer (its
# stdout/stderr, the bearer tokens sent to it, its data dir, audit sink and store), TokenIssuer, make_csr,
# python_csr and make_upstream_ca. conftest.py adds rotation_support's background processes.

SCAN_WINDOW = 16  # shortest secret fragment looked for, and the length of the index key
_SECRET_RUN = re.compile(r"[A-Za-z0-9+/_=-]{%d,}" % SCAN_WINDOW)  # where a base64(url)/hex fragment can be
_JWT_SHAPED = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# A PEM private-key BEGIN/END line (spelt in two pieces: the repository's key scan flags the marker in source).
_KEY_MARKER = re.compile(r"-----(?:BEGIN|END) [A-Z0-9 ]*PRIVATE" + r" KEY-----")


@dataclass(frozen=True)
class Finding:
    """One line of sigil output holding something it must never print."""

    where: str
    line: int
    what: str
    text: str  # the line, each secret in it cut to its first characters

    def __str__(self) -> str:
        return f"{self.where}:{self.line}: {self.what}\n    {self.text}"


def _flag_values(args: list[str], flag: str) -> list[str]:
    values = []
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith(flag + "="):
            values.append(arg[len(flag) + 1 :])
    return values


def _is_sigil(args: list) -> bool:
    return bool(args) and Path(str(args[0])).name == "sigil"


class SecretLedger:
    """Secrets (as the fragments to look for: JWT payloads and signatures, opaque tokens, the base64 lines
    of private keys, key-encryption keys in hex and base64) and outputs (texts, files read at scan time,
    live process output), then scan() -> [Finding].

    A data dir is read at scan time (or, for one about to be deleted, by snapshot_data_dir): its `kek`
    and `dev-issuer.key` join the secrets and the rows of its SQLite audit table join the outputs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._needles: dict[str, str] = {}  # fragment -> what it is
        self._outputs: dict[str, Callable[[], str | None]] = {}
        self._snapshots: set[tuple[str, int]] = set()  # (name, hash) of texts already kept
        self._data_dirs: dict[Path, str] = {}  # read at scan time: path -> who used it
        self._snapshotted_dirs: set[Path] = set()
        self._scanned: dict[str, int] = {}  # output name -> hash of the text last scanned
        self._gaps: dict[str, None] = {}
        self.stats = ""

    @property
    def gaps(self) -> list[str]:
        """What could not be read (reported with the scan's summary, not failed)."""
        return list(self._gaps)

    def _gap(self, text: str) -> None:
        self._gaps.setdefault(text, None)

    # secrets

    def _add(self, needle: str, what: str) -> None:
        if len(needle) >= SCAN_WINDOW:
            with self._lock:
                self._needles.setdefault(needle, what)

    def token(self, token: str, origin: str) -> None:
        """A bearer token: a JWT's payload and signature (its header is public), or an opaque token whole."""
        token = token.strip()
        parts = token.split(".")
        if len(parts) >= 2:
            for label, part in zip(("payload", "signature"), parts[1:3]):
                self._add(part, f"{label} of {origin}")
        elif len(token) >= 20 and len(set(token)) >= 10:  # not junk like "aaaa…" sent to test limits
            self._add(token, origin)

    def private_key(self, pem: str, origin: str) -> None:
        for line in pem.splitlines():
            line = line.strip()
            if line and not line.startswith("-----") and ":" not in line:
                self._add(line, f"private key: {origin}")

    def raw_secret(self, value: bytes, origin: str) -> None:
        """Binary key material, as it would appear printed: hex and base64."""
        for form in (value.hex(), base64.b64encode(value).decode().rstrip("="), b64url(value)):
            self._add(form, origin)

    @property
    def output_names(self) -> list[str]:
        with self._lock:
            return list(self._outputs)

    @property
    def data_dirs(self) -> list[Path]:
        """Data dirs to read at scan time."""
        with self._lock:
            return list(self._data_dirs)

    def knows(self, text: str) -> bool:
        """Whether some registered fragment occurs in `text` (for the ledger's own tests)."""
        return any(needle in text for needle in self._needles)

    # outputs

    def output(self, name: str, source: str | Path | Callable[[], str | None]) -> None:
        """Text to scan: a string (kept once per distinct content), a file (read at scan time) or a
        callable (called at scan time, e.g. a live process's output)."""
        if isinstance(source, str):
            if not source:
                return
            key = (name, hash(source))
            with self._lock:
                if key in self._snapshots:
                    return
                self._snapshots.add(key)
            getter: Callable[[], str | None] = lambda: source  # noqa: E731
        elif isinstance(source, Path):
            getter = lambda: source.read_text(errors="replace") if source.exists() else None  # noqa: E731
        else:
            getter = source
        with self._lock:
            unique, n = name, 1
            while unique in self._outputs:
                n += 1
                unique = f"{name} #{n}"
            self._outputs[unique] = getter

    def data_dir(self, path: Path, origin: str) -> None:
        """A data dir to read at scan time; ignored unless it exists (a refused command made none)."""
        path = Path(path).resolve()
        if path.is_dir():
            with self._lock:
                self._data_dirs.setdefault(path, origin)

    def snapshot_data_dir(self, path: Path, origin: str) -> None:
        """Reads a data dir now (its owner deletes it before the session ends)."""
        path = Path(path).resolve()
        audit = self._read_data_dir(path)
        if audit:
            self.output(f"audit table of {path}/sigil.db (read when {origin} stopped)", audit)
        with self._lock:
            self._snapshotted_dirs.add(path)

    def _read_data_dir(self, path: Path) -> str | None:
        """Registers the data dir's own secrets; returns its audit records, one JSON object a line."""
        import sqlite3

        if (path / "kek").is_file():
            self.raw_secret((path / "kek").read_bytes(), f"key-encryption key {path}/kek")
        if (path / "dev-issuer.key").is_file():
            self.private_key((path / "dev-issuer.key").read_text(errors="replace"), f"{path}/dev-issuer.key")
        database = path / "sigil.db"
        if not database.is_file():
            return None
        try:
            connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
            try:
                connection.row_factory = sqlite3.Row
                rows = connection.execute("SELECT * FROM audit ORDER BY seq").fetchall()
            finally:
                connection.close()
        except sqlite3.Error as error:
            self._gap(f"audit table of {database}: {error}")
            return None
        return "".join(json.dumps(dict(row), default=str) + "\n" for row in rows)

    def snapshot_postgres_audit(self, url: str, origin: str) -> None:
        """Reads a PostgreSQL store's audit table now (its database is dropped before the session ends)."""
        sql = "SELECT row_to_json(a)::text FROM audit a ORDER BY seq"
        try:
            completed = subprocess.run(
                ["psql", url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
                env={**os.environ, "PGCONNECT_TIMEOUT": "3"},
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            self._gap(f"audit table of {url}: {error}")
            return
        if completed.returncode != 0:
            self._gap(f"audit table of {url} (when {origin} stopped): {completed.stderr.strip()[:200]}")
            return
        self.output(f"audit table of {url} (read when {origin} stopped)", completed.stdout)

    # sigil processes

    def sigil_command(self, args: list[str], stdout: str, stderr: str, cwd: Path | None = None) -> None:
        """A finished `sigil …` command: its output, and the files its flags name."""
        command = [str(a) for a in args[1:]]
        label = _shorten("$ sigil " + " ".join(command))
        if command[:2] == ["dev", "token"] or command[:2] == ["admin", "console-login"]:
            # Printing a token on stdout is what `sigil dev token` is for (README: TOKEN=$(sigil dev token …)), and
            # a one-time login URL what `sigil admin console-login` is for: that stdout is registered as a secret
            # (the URL's token), and is the one output not scanned. Its stderr is.
            if stdout.strip():
                secret = stdout.strip().split("token=")[-1] if "console-login" in command else stdout
                self.token(secret, f"token from {label}")
        else:
            self.output(f"{label} (stdout)", stdout)
        self.output(f"{label} (stderr)", stderr)
        self.sigil_files(command, label, cwd=cwd, now=False)

    def sigil_files(self, command: list[str], label: str, cwd: Path | None = None, now: bool = False) -> list[str]:
        """Registers what a sigil command line names: data dir, audit sink, TokenReview credential, an
        agent's key. now=True reads what may be deleted soon at once. Returns its postgres:// stores."""
        base = Path(cwd) if cwd else Path.cwd()
        settings: dict = {}
        for config in _flag_values(command, "--config"):
            try:
                settings.update(json.loads((base / config).read_text()))
            except (OSError, ValueError):
                pass

        def paths(flag: str, key: str) -> list[Path]:
            values = _flag_values(command, flag) + ([str(settings[key])] if isinstance(settings.get(key), str) else [])
            return [base / value for value in values]

        for directory in paths("--data-dir", "data_dir"):
            if now:
                self.snapshot_data_dir(directory, label)
            else:
                self.data_dir(directory, label)
        for sink in paths("--audit-sink", "audit_sink"):
            if sink.name != "stdout":  # `--audit-sink stdout` is part of the process's stdout
                self.output(f"audit sink {sink}", sink.read_text(errors="replace") if now and sink.exists() else sink)
        for credential in paths("--token-review-credential", "token_review_credential"):
            if credential.is_file():
                self.token(credential.read_text(errors="replace"), f"TokenReview credential {credential}")
        for out_dir in _flag_values(command, "--out-dir"):
            key = base / out_dir / "svid.key"
            if key.is_file():
                self.private_key(key.read_text(errors="replace"), f"agent key {key}")
        return [s for s in _flag_values(command, "--store") + [str(settings.get("store", ""))] if s.startswith("postgres")]

    def sigil_process_stopped(self, args: list[str], stdout: str, stderr: str) -> None:
        """A background `sigil serve|agent` whose files are about to be deleted: read everything now."""
        command = [str(a) for a in args[1:]]
        label = _shorten("$ sigil " + " ".join(command))
        self.output(f"{label} (stdout)", stdout)
        self.output(f"{label} (stderr)", stderr)
        for store in self.sigil_files(command, label, now=True):
            self.snapshot_postgres_audit(store, label)

    # the scan

    def _texts(self) -> list[tuple[str, str]]:
        with self._lock:
            directories = [(p, o) for p, o in self._data_dirs.items()]
            snapshotted = set(self._snapshotted_dirs)
        for path, origin in directories:
            if path.is_dir():
                audit = self._read_data_dir(path)
                if audit:
                    self.output(f"audit table of {path}/sigil.db", audit)
            elif path not in snapshotted:
                self._gap(f"data dir {path} ({origin}) was gone before the scan")
        with self._lock:
            outputs = list(self._outputs.items())
        texts = []
        for name, getter in outputs:
            try:
                text = getter()
            except OSError as error:
                self._gap(f"{name}: {error}")
                continue
            if text:
                texts.append((name, text))
        return texts

    def scan(self, only_changed: bool = False) -> list[Finding]:
        """Every line of every output against every secret, JWT-shaped strings and the PEM private-key
        marker. only_changed: skip outputs whose text is what an earlier scan saw."""
        started = time.monotonic()
        texts = self._texts()  # first: reading the data dirs registers their keys
        with self._lock:
            needles = dict(self._needles)
        index: dict[str, list[str]] = {}
        for needle in needles:
            index.setdefault(needle[:SCAN_WINDOW], []).append(needle)
        findings: list[Finding] = []
        size = 0
        for name, text in texts:
            digest = hash(text)
            if only_changed and self._scanned.get(name) == digest:
                continue
            self._scanned[name] = digest
            size += len(text)
            findings += _scan_text(name, text, index, needles)
        if not only_changed:
            self.stats = (
                f"{len(texts)} outputs ({size / 1e6:.1f} MB) against {len(needles)} secret fragments"
                f" in {time.monotonic() - started:.1f} s"
            )
        return findings


def _scan_text(name: str, text: str, index: dict[str, list[str]], needles: dict[str, str]) -> list[Finding]:
    findings = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.replace("\\/", "/")  # JSON may escape "/", which base64 uses
        found: list[tuple[str, str]] = []  # (what, the secret text to cut short in the report)
        for run_match in _SECRET_RUN.finditer(line):
            start, end = run_match.span()
            for position in range(start, end - SCAN_WINDOW + 1):
                for needle in index.get(line[position : position + SCAN_WINDOW], ()):
                    if line.startswith(needle, position):
                        found.append((needles[needle], needle))
        for match in _JWT_SHAPED.finditer(line):
            found.append(("a JWT-shaped string", match.group()))
        for match in _KEY_MARKER.finditer(line):
            found.append(("a PEM private key marker", ""))
        if found:
            shown, where = line, name  # a command line may hold the secret too
            for _, secret in found:
                if secret:
                    cut = f"{secret[:8]}…[{len(secret)} chars]"
                    shown, where = shown.replace(secret, cut), where.replace(secret, cut)
            shown = shown if len(shown) <= 400 else shown[:400] + "…"
            for what in dict.fromkeys(what for what, _ in found):
                findings.append(Finding(where, number, what, shown))
    return findings


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


LEDGER = SecretLedger()
