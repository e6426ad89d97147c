"""The startup storm (scripts/bench; issue 19): N proxies arrive at once, each with a token the server has never
seen, a fresh key and CSR, and a new TLS connection with a full handshake; then the same proxies come back for
renewal offering the TLS session they got (resumed handshakes). Measured with `sigil-load --storm`
(Benchmarks/sigil-load/Storm.swift) at each concurrency level:

- Sigil (release, SQLite, durable audit, rate limits off): time until the last proxy holds a certificate,
  certificates/s, p50/p99/max, errors, resumed handshakes, and the server's own CPU per issuance (from /proc);
- the crypto ceiling of this shape on one core, same run (`openssl speed`): a full-handshake issuance needs an
  X25519 key generation and derivation, the handshake's P-256 signature, an RS256 token verification, the CSR's
  P-256 verification and the leaf's P-256 signature; a resumed renewal (token already verified and cached) the
  X25519 pair, the CSR verification and the leaf signature. Efficiency = ceiling µs / server CPU µs;
- where the server's CPU goes in the storm: a perf profile at the highest level, inclusive time by phase;
- cfssl serve over TLS (P-256 server certificate, no token, no client auth, no durable store) in the same shape;
- with --postgres-url: one replica on PostgreSQL, then two replicas on the same database with the storm split
  between them; `sigil audit verify` on the shared chain after; and the cost of the chain's advisory lock per
  commit (pgbench: the same lock, an insert and a durable commit, one client).

Usage: storm.py --bin DIR --work DIR --out JSON [--proxies N] [--levels 64,256] [--no-cfssl] [--no-profile]
                [--postgres-url URL]
Prints progress on stderr; writes the JSON (raw results) and, beside it, storm.md (the report's section)."""
from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Tests" / "Harness"))
from sigil_harness import SigilServer, free_port, wait_until  # noqa: E402

# Phases of an issuance in the server's perf profile. Each phase is a list of disjoint subtrees; a subtree's share
# is the largest inclusive share among the symbols its pattern matches (its outermost frame).
PHASES = {
    "TLS handshake": [r"NIOSSLHandler\.doHandshakeStep"],
    "TLS close": [r"NIOSSLHandler\.doShutdownStep"],
    "token verification": [r"JWKSTokenVerifier\.verify|CachingTokenVerifier\.verify"],
    "CSR parse and check": [r"IssuanceRequest\.init", r"CertificateIssuer\.evaluate"],
    "signing": [r"CertificateSigner\.sign"],
    "store commit": [r"SerializedDatabase\.execute|PostgresStore\..*(issue|record|append)"],
    "system calls (kernel)": [r"do_syscall_64"],
}


def note(message: str) -> None:
    print(f"    {message}", file=sys.stderr, flush=True)


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, check=True, **kwargs)


def crypto_ceiling(work: Path) -> dict:
    """µs per operation on one core (pinned to CPU 0 when taskset exists), from `openssl speed -mr`."""
    command = ["openssl", "speed", "-seconds", "2", "-mr", "rsa2048", "ecdsap256", "ecdhx25519"]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    text = run(command, cwd=work).stdout
    per_second = {}
    for line in text.splitlines():
        parts = line.split(":")
        if line.startswith("+F2:") and parts[2] == "2048":
            per_second["rs256_verify"] = float(parts[4])
        elif line.startswith("+F4:") and parts[2] == "256":
            per_second["p256_sign"], per_second["p256_verify"] = float(parts[3]), float(parts[4])
        elif line.startswith("+F5:") and parts[2] == "253":
            per_second["x25519"] = float(parts[3])
    assert len(per_second) == 4, f"openssl speed printed no totals:\n{text}"
    us = {name: 1e6 / rate for name, rate in per_second.items()}
    full = 2 * us["x25519"] + us["p256_sign"] + us["rs256_verify"] + us["p256_verify"] + us["p256_sign"]
    resumed = 2 * us["x25519"] + us["p256_verify"] + us["p256_sign"]
    return {"us_per_op": {k: round(v, 1) for k, v in us.items()}, "full_us": round(full, 1),
            "resumed_us": round(resumed, 1)}


def mint(binary: Path, data_dir: Path, count: int, path: Path, prefix: str, *store: str) -> Path:
    """`count` tokens for `count` distinct identities (ns storm, sa PREFIX-i), one per line."""
    with open(path, "w") as out:
        subprocess.run([str(binary), "dev", "token", "--data-dir", str(data_dir), *store, "--namespace", "storm",
                        "--service-account", prefix, "--ttl", "2h", "--count", str(count), "--spread", str(count)],
                       stdout=out, check=True)
    return path


def storm(load: Path, url: str, bundle: Path, pid: int, proxies: int, levels: str, tokens: Path | None = None,
          api: str = "sigil", wait: bool = True):
    """Runs `sigil-load --storm`; its JSON lines, or (wait=False, to run several at once) the process for finish()."""
    command = [str(load), "--storm", str(proxies), "--url", url, "--ca-bundle", str(bundle), "--api", api,
               "--server-pid", str(pid), "--concurrency", levels]
    if tokens:
        command += ["--tokens", str(tokens)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return process
    return finish(process)


def finish(process: subprocess.Popen) -> list[dict]:
    out, err = process.communicate()
    assert process.returncode == 0, f"sigil-load --storm failed: {err[-2000:]}"
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    for line in lines:
        note(json.dumps({k: line[k] for k in ("api", "pass", "concurrency", "issued", "errors", "seconds",
                                              "issued_per_second", "p99_ms", "resumed") if k in line}
                        | {"cpu_us": line.get("server_cpu_us_per_issuance")}))
    return lines


def serve(binary: Path, data_dir: Path, *args: str) -> SigilServer:
    return SigilServer(binary, data_dir, "--rate-limit-client", "0", "--rate-limit-identity", "0", *args).start(120)


def profile(binary_dir: Path, server: SigilServer, work: Path, proxies: int, level: str) -> dict:
    """perf record of the server over one storm pass pair at `level`; inclusive share per phase."""
    tokens = mint(binary_dir / "sigil", server.data_dir, proxies, work / "profile-tokens.txt", "profiled")
    data = work / "storm-perf.data"
    perf = subprocess.Popen(["perf", "record", "-F", "499", "--call-graph", "dwarf,16384", "-p",
                             str(server.process.pid), "-o", str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attaches
    storm(binary_dir / "sigil-load", f"{server.url}/v1/certificates", server.bundle, server.process.pid, proxies,
          level, tokens)
    perf.send_signal(signal.SIGINT)
    perf.wait(60)
    report = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--children", "--sort", "symbol",
                             "-g", "none", "--percent-limit", "0.2"], capture_output=True, text=True)
    demangled = subprocess.run(["swift", "demangle", "--simplified"], input=report.stdout, capture_output=True,
                               text=True).stdout
    (work / "storm-perf-inclusive.txt").write_text(demangled)
    rows = []
    for line in demangled.splitlines():
        match = re.match(r"\s+([0-9.]+)%\s+([0-9.]+)%\s+\[[.k]\]\s+(.*?)(\s{2,}|$)", line)
        if match:
            rows.append((float(match[1]), float(match[2]), match[3]))
    phases = {
        name: round(sum(max((c for c, _, symbol in rows if re.search(pattern, symbol)), default=0.0)
                        for pattern in patterns), 1)
        for name, patterns in PHASES.items()
    }
    top = [{"children": c, "self": s, "symbol": sym[:160]} for c, s, sym in sorted(rows, key=lambda r: -r[1])[:25]]
    return {"phases_percent": phases, "top_self": top, "samples_file": str(data.name)}


def cfssl_storm(load: Path, work: Path, proxies: int, levels: str) -> list[dict]:
    directory = work / "cfssl-storm"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca-csr.json").write_text(json.dumps(
        {"CN": "cfssl storm CA", "key": {"algo": "ecdsa", "size": 256}, "names": [{"O": "sigil bench"}]}))
    (directory / "config.json").write_text(json.dumps({"signing": {"default": {
        "expiry": "1h", "usages": ["digital signature", "key encipherment", "client auth", "server auth"]}}}))
    (directory / "server-csr.json").write_text(json.dumps(
        {"CN": "127.0.0.1", "hosts": ["127.0.0.1"], "key": {"algo": "ecdsa", "size": 256}}))
    subprocess.run("cfssl gencert -initca ca-csr.json | cfssljson -bare ca && "
                   "cfssl gencert -ca ca.pem -ca-key ca-key.pem -config config.json server-csr.json | "
                   "cfssljson -bare server", shell=True, cwd=directory, check=True, capture_output=True)
    port = free_port()
    log = open(directory / "cfssl.log", "w")
    process = subprocess.Popen(["cfssl", "serve", "-address", "127.0.0.1", "-port", str(port), "-ca", "ca.pem",
                                "-ca-key", "ca-key.pem", "-config", "config.json", "-tls-cert", "server.pem",
                                "-tls-key", "server-key.pem", "-loglevel", "2"], cwd=directory, stdout=log,
                               stderr=log)
    try:
        def up():
            return subprocess.run(["curl", "-s", "-o", "/dev/null", "--cacert", str(directory / "ca.pem"),
                                   f"https://127.0.0.1:{port}/"]).returncode == 0
        wait_until(up, 30, "cfssl serve to answer over TLS")
        return storm(load, f"https://127.0.0.1:{port}/api/v1/cfssl/sign", directory / "ca.pem", process.pid,
                     proxies, levels, api="cfssl")
    finally:
        process.terminate()
        process.wait(15)
        log.close()


def replicas(binary_dir: Path, work: Path, proxies: int, url: str) -> dict:
    sigil, load = binary_dir / "sigil", binary_dir / "sigil-load"
    data_dir = work / "replicas-pki"
    store = ("--store", url)
    first = serve(sigil, data_dir, *store)
    second = serve(sigil, data_dir, *store)
    try:
        level = "256"
        alone_tokens = mint(sigil, data_dir, proxies, work / "replica-alone.txt", "alone", *store)
        note("one replica on PostgreSQL")
        alone = storm(load, f"{first.url}/v1/certificates", first.bundle, first.process.pid, proxies, level,
                      alone_tokens)
        half = proxies // 2
        runs = []
        for name, server in (("a", first), ("b", second)):
            tokens = mint(sigil, data_dir, half, work / f"replica-{name}.txt", f"replica-{name}", *store)
            runs.append(storm(load, f"{server.url}/v1/certificates", server.bundle, server.process.pid, half, "128",
                              tokens, wait=False))
        note("two replicas on one PostgreSQL, the storm split between them (128 + 128)")
        both = [finish(process) for process in runs]
    finally:
        second.stop()
        first.stop()
    verify = subprocess.run([str(sigil), "audit", "verify", "--data-dir", str(data_dir), *store],
                            capture_output=True, text=True)
    note(f"audit verify: exit {verify.returncode}: {verify.stdout.strip()[-200:]}")
    return {"alone": alone, "both": both, "audit_verify_exit": verify.returncode,
            "audit_verify": (verify.stdout + verify.stderr).strip()[-400:], "lock": advisory_lock_cost(url, work)}


def advisory_lock_cost(url: str, work: Path) -> dict | None:
    """pgbench, one client, 5 s each: a durable insert+commit with and without the chain's advisory lock."""
    pgbench = shutil.which("pgbench")
    if not pgbench:
        return None
    subprocess.run(["psql", url, "-q", "-c", "CREATE TABLE IF NOT EXISTS storm_lock (id bigserial, note text)"],
                   check=True, capture_output=True)
    results = {}
    for name, lock in (("without_lock", ""), ("with_lock", "SELECT pg_advisory_xact_lock(7001);\n")):
        script = work / f"pgbench-{name}.sql"
        script.write_text(f"BEGIN;\n{lock}INSERT INTO storm_lock (note) VALUES ('x');\nCOMMIT;\n")
        out = subprocess.run([pgbench, "-n", "-c", "1", "-T", "5", "-f", str(script), url], capture_output=True,
                             text=True)
        match = re.search(r"latency average = ([0-9.]+) ms", out.stdout)
        results[name + "_ms"] = float(match[1]) if match else None
    subprocess.run(["psql", url, "-q", "-c", "DROP TABLE storm_lock"], capture_output=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--proxies", type=int, default=10_000)
    parser.add_argument("--levels", default="64,256")
    parser.add_argument("--no-cfssl", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--postgres-url")
    options = parser.parse_args()
    options.work.mkdir(parents=True, exist_ok=True)
    levels = options.levels
    result: dict = {"proxies": options.proxies, "levels": [int(x) for x in levels.split(",")]}

    note("crypto ceiling of this shape (openssl speed, one core)")
    result["ceiling"] = ceiling = crypto_ceiling(options.work)
    note(json.dumps(ceiling))

    sigil, load = options.bin / "sigil", options.bin / "sigil-load"
    server = serve(sigil, options.work / "storm-pki")
    try:
        count = len(result["levels"])
        tokens = mint(sigil, server.data_dir, options.proxies * count, options.work / "storm-tokens.txt", "proxy")
        note(f"sigil serve on {server.url}: {options.proxies} proxies per level at {levels}")
        result["sigil"] = storm(load, f"{server.url}/v1/certificates", server.bundle, server.process.pid,
                                options.proxies, levels, tokens)
        if not options.no_profile and shutil.which("perf"):
            note("perf profile of the server during one more storm at the highest level")
            try:
                result["profile"] = profile(options.bin, server, options.work, options.proxies,
                                            str(max(result["levels"])))
                note(json.dumps(result["profile"]["phases_percent"]))
            except Exception as error:  # the profile is informative; its failure only skips it
                note(f"profile failed: {error}")
    finally:
        server.stop()

    if not options.no_cfssl and shutil.which("cfssl"):
        note("cfssl serve over TLS, same shape")
        result["cfssl"] = cfssl_storm(load, options.work, options.proxies, levels)
    if options.postgres_url:
        result["replicas"] = replicas(options.bin, options.work, options.proxies, options.postgres_url)

    options.out.write_text(json.dumps(result, indent=2))
    (options.out.parent / "storm.md").write_text(markdown(result))


def efficiency(ceiling: float, cpu: float | None) -> str:
    return f"{ceiling / cpu:.2f}" if cpu else "–"


def markdown(result: dict) -> str:
    ceiling = result["ceiling"]
    lines = [
        f"### Startup storm: {result['proxies']} proxies per level, a new token, key, CSR and TLS connection each",
        "",
        f"Crypto ceiling on one core: full-handshake issuance {ceiling['full_us']} µs, resumed renewal "
        f"{ceiling['resumed_us']} µs ({', '.join(f'{k} {v} µs' for k, v in ceiling['us_per_op'].items())}).",
        "",
        "| server | pass | concurrency | all served in | certificates/s | p50 ms | p99 ms | max ms | errors "
        "| resumed | server CPU µs/issuance | efficiency |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def rows(name: str, passes: list[dict]) -> None:
        for p in passes:
            full = p["pass"] == "full"
            crypto = ceiling["full_us"] if full else ceiling["resumed_us"]
            cpu = p.get("server_cpu_us_per_issuance")
            lines.append(
                f"| {name} | {p['pass']} | {p['concurrency']} | {p['seconds']:.2f} s | {p['issued_per_second']:.0f} "
                f"| {p['p50_ms']:.1f} | {p['p99_ms']:.1f} | {p['max_ms']:.1f} | {p['errors']} | {p['resumed']} "
                f"| {cpu if cpu is not None else '–'} | {efficiency(crypto, cpu) if name == 'sigil' else '–'} |")

    rows("sigil", result.get("sigil", []))
    rows("cfssl (TLS, no token, no store)", result.get("cfssl", []))
    sigil_full = {p["concurrency"]: p for p in result.get("sigil", []) if p["pass"] == "full"}
    sigil_resumed = {p["concurrency"]: p for p in result.get("sigil", []) if p["pass"] == "resumed"}
    cfssl_full = {p["concurrency"]: p for p in result.get("cfssl", []) if p["pass"] == "full"}
    lines.append("")
    for level, full in sorted(sigil_full.items()):
        parts = [f"concurrency {level}:"]
        if level in cfssl_full and cfssl_full[level]["issued_per_second"]:
            parts.append(f"Sigil/cfssl {full['issued_per_second'] / cfssl_full[level]['issued_per_second']:.2f}×")
        if level in sigil_resumed and full["issued_per_second"]:
            parts.append(f"resumed/full {sigil_resumed[level]['issued_per_second'] / full['issued_per_second']:.2f}×")
        lines.append("- " + " ".join(parts))
    if profile := result.get("profile"):
        lines += ["", "Server CPU in the storm by phase (perf, inclusive share of samples; phases overlap where one "
                  "calls another): " + ", ".join(f"{k} {v:.1f} %" for k, v in profile["phases_percent"].items())]
    if replica := result.get("replicas"):
        alone = replica["alone"]
        both = replica["both"]
        full_alone = [p for p in alone if p["pass"] == "full"][0]
        walls = [[p for p in run if p["pass"] == "full"][0] for run in both]
        issued = sum(p["issued"] for p in walls)
        errors = sum(p["errors"] for p in walls)
        wall = max(p["seconds"] for p in walls)
        lines += ["", f"Replicas on one PostgreSQL (full handshakes): one replica {full_alone['issued_per_second']:.0f}/s "
                  f"({full_alone['errors']} errors); two replicas {issued / wall:.0f}/s together "
                  f"({errors} errors, CPU µs/issuance {', '.join(str(p.get('server_cpu_us_per_issuance')) for p in walls)}); "
                  f"`sigil audit verify` exit {replica['audit_verify_exit']}."]
        if lock := replica.get("lock"):
            lines.append(f"Advisory-locked chain append, pgbench one client: {lock.get('with_lock_ms')} ms per durable "
                         f"commit with the lock, {lock.get('without_lock_ms')} ms without.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
