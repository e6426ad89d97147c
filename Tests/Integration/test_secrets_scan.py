"""The secrets scan that closes every session (conftest.py's `secrets_scan` item) can fail: planted
tokens and keys in a log are found and named by file and line. These tests scan ledgers of their own,
so what they plant never reaches the session's real scan; the last tests check that the suite's helpers
really feed the session's ledger."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from sigil_harness import LEDGER, SecretLedger, TokenIssuer, b64url, dev_token, python_csr


def _token() -> str:
    issuer = TokenIssuer("https://kubernetes.default.svc")
    return issuer.token(issuer.add_key("planted", "ES256"))


def _key_body(key_pem: str) -> list[str]:
    return [line for line in key_pem.splitlines() if line and not line.startswith("-----")]


def test_scan_finds_a_planted_token_and_a_planted_key_by_file_and_line(tmp_path: Path):
    ledger = SecretLedger()
    token = _token()
    _, key = python_csr()
    ledger.token(token, "planted token")
    ledger.private_key(key, "planted key")
    log = tmp_path / "server.log"
    body = _key_body(key)
    log.write_text(
        "notice sigil: listening\n"
        f"debug sigil: verifying bearer {token}\n"  # line 2: the whole token
        "notice sigil: issued\n"
        f'debug sigil: {{"key": "{body[1]}"}}\n'  # line 4: one line of the key's base64 body
    )
    ledger.output(str(log), log)

    findings = ledger.scan()

    assert [(f.where, f.line) for f in findings if "planted token" in f.what] == [(str(log), 2)] * 2, findings
    assert [(f.where, f.line) for f in findings if "planted key" in f.what] == [(str(log), 4)], findings
    assert any(f.line == 2 and f.what == "a JWT-shaped string" for f in findings), findings
    # The report shows where, not the secret itself.
    assert all(token.split(".")[2] not in str(f) for f in findings), findings


def test_scan_finds_key_material_however_it_is_wrapped(tmp_path: Path):
    """A key re-wrapped on one line, JSON-escaped, or only named by its PEM marker."""
    ledger = SecretLedger()
    _, key = python_csr()
    ledger.private_key(key, "planted key")
    kek = secrets.token_bytes(32)
    ledger.raw_secret(kek, "planted key-encryption key")
    one_line = "".join(_key_body(key))
    ledger.output("escaped", json.dumps({"key": key}).replace("/", "\\/"))  # JSON with "\/", one line
    ledger.output("unwrapped", f"key={one_line}\n")
    ledger.output("marker", "-----BEGIN " + "PRIVATE KEY-----\n")
    ledger.output("kek", f"kek={kek.hex()}\nkek={b64url(kek)}\n")
    ledger.output("clean", "notice sigil: nothing to see\n")

    found = {(f.where, f.what) for f in ledger.scan()}

    assert ("escaped", "private key: planted key") in found, found
    assert ("escaped", "a PEM private key marker") in found, found
    assert ("unwrapped", "private key: planted key") in found, found
    assert ("marker", "a PEM private key marker") in found, found
    assert [f.line for f in ledger.scan() if f.where == "kek"] == [1, 2]
    assert not any(where == "clean" for where, _ in found)


def test_scan_finds_a_jwt_nobody_registered():
    ledger = SecretLedger()
    header, payload = b64url(b'{"alg":"RS256"}'), b64url(b'{"sub":"system:serviceaccount:default:web"}')
    ledger.output("agent log", f"warning sigil-agent: token {header}.{payload}.{b64url(secrets.token_bytes(64))} rejected\n")
    assert [(f.line, f.what) for f in ledger.scan()] == [(1, "a JWT-shaped string")]


def test_dev_token_stdout_is_the_one_output_not_scanned(sigil, tmp_path: Path):
    """`sigil dev token` prints a token on stdout on purpose: that stdout becomes a secret, not an output.
    Its stderr, and every other command's stdout, are scanned."""
    ledger = SecretLedger()
    token = _token()
    binary = str(sigil.binary)
    ledger.sigil_command([binary, "dev", "token", "--namespace", "default"], token + "\n", "")
    assert ledger.scan() == []
    ledger.sigil_command([binary, "dev", "token", "--namespace", "default"], token + "\n", f"debug: {token}\n")
    ledger.sigil_command([binary, "audit", "list", "--data-dir", str(tmp_path)], f"1 issue token={token}\n", "")
    where = sorted({f.where for f in ledger.scan()})
    assert where == [f"$ sigil audit list --data-dir {tmp_path} (stdout)", "$ sigil dev token --namespace default (stderr)"]


def test_scan_reads_a_data_dirs_keys_and_audit_table(sigil, start_server, tmp_path: Path):
    """A data dir named on a command line: its key-encryption key is a secret, and its audit table an
    output (here with a token written into a record's reason, as a leaking server would)."""
    server = start_server(tmp_path / "pki")
    server.post_csr("not a csr", dev_token(sigil, server.data_dir))
    server.stop()
    # A copy: the server's own data dir is in the session's ledger, whose scan must stay clean.
    data_dir = Path(shutil.copytree(server.data_dir, tmp_path / "copy")).resolve()
    ledger = SecretLedger()
    ledger.data_dir(data_dir, "test")
    token = _token()
    ledger.token(token, "planted token")
    ledger.output("leaky log", f"kek {(data_dir / 'kek').read_bytes().hex()}\n")
    with sqlite3.connect(data_dir / "sigil.db") as connection:
        connection.execute("UPDATE audit SET reason = ? WHERE action = 'deny'", (f"bad token {token}",))
    connection.close()

    found = {(f.where, f.what) for f in ledger.scan()}

    audit = f"audit table of {data_dir}/sigil.db"
    assert found == {
        ("leaky log", f"key-encryption key {data_dir}/kek"),
        (audit, "payload of planted token"),
        (audit, "signature of planted token"),
        (audit, "a JWT-shaped string"),
    }, found


def test_the_suites_helpers_feed_the_session_ledger(sigil, start_server, make_csr, tmp_path: Path):
    """What the real scan at the end of the session sees: keys from make_csr and python_csr, tokens from
    `sigil dev token` and PyJWT, the server's output, its data dir."""
    csr = make_csr("ledger")
    _, key = python_csr()
    assert LEDGER.knows(csr.key.read_text()) and LEDGER.knows(key)
    assert LEDGER.knows(_token())
    server = start_server(tmp_path / "pki")
    token = dev_token(sigil, server.data_dir)
    assert LEDGER.knows(token)
    assert server.data_dir.resolve() in LEDGER.data_dirs
    label = f"$ sigil serve --data-dir {server.data_dir} --listen 127.0.0.1:0"
    assert {f"{label} (stdout)", f"{label} (stderr)"} <= set(LEDGER.output_names)


def test_a_session_in_which_sigil_prints_a_token_fails(sigil_bin, tmp_path: Path):
    """End to end, in a pytest session of its own (this directory's conftest and helpers, copied): a test
    makes the real sigil print a token's signature (in an error naming a file), and that session's last
    item fails, naming the command and the line."""
    here = Path(__file__).parent
    for name in ("conftest.py", "rotation_support.py", "pytest.ini"):
        shutil.copy(here / name, tmp_path / name)
    (tmp_path / "test_leak.py").write_text(
        "from sigil_harness import TokenIssuer\n\n\n"
        "def test_sigil_prints_a_token(sigil, tmp_path):\n"
        '    issuer = TokenIssuer("https://issuer.test")\n'
        '    signature = issuer.token(issuer.add_key("k", "ES256")).split(".")[2]\n'
        '    sigil.run("inspect", "cert", str(tmp_path / signature))\n'
    )
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
        timeout=120, stdin=subprocess.DEVNULL,
        env={**os.environ, "SIGIL_BIN": str(sigil_bin), "PYTHONPATH": str(here.parent / "Harness")},
    )
    report = inner.stdout + inner.stderr
    assert inner.returncode == 1, report
    assert "FAILED conftest.py::secrets_scan" in report and "1 failed, 1 passed" in report, report
    assert "$ sigil inspect cert" in report and "(stderr):1: signature of TokenIssuer token (k)" in report, report
    assert "cannot read certificate" in report, report
