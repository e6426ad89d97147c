"""Driver of scripts/soak: measure the maximum, hold a fraction of it for N minutes, sample RSS, report.

The harness (Tests/Harness) starts the server; the load comes from the release `sigil-load` (keep-alive
HTTPS, pre-made CSRs and tokens), run in one-minute chunks so errors, throughput and latency are reported per
minute."""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "Tests" / "Harness"))
from sigil_harness import Sigil, SigilServer  # noqa: E402
from sigil_harness.procfs import rss_mib  # noqa: E402

CONCURRENCY = 64
CHUNK_SECONDS = 60
SAMPLE_SECONDS = 5
RSS_TOLERANCE = 0.10


def load(bin_dir: Path, url: str, bundle: Path, tokens: Path, seconds: float, rate: float = 0) -> dict:
    command = [
        str(bin_dir / "sigil-load"), "--url", url + "/v1/certificates", "--ca-bundle", str(bundle), "--tokens", str(tokens),
        "--csrs", "2000", "--concurrency", str(CONCURRENCY), "--duration", str(seconds), "--warmup", "0",
    ]
    if rate:
        command += ["--rate", f"{rate:.1f}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    if result.returncode != 0:
        raise RuntimeError(f"sigil-load failed ({result.returncode}): {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--fraction", type=float, default=0.8)
    parser.add_argument("--identities", type=int, default=1000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sigil-soak."))
    data = work / "pki"
    sigil = Sigil(args.bin / "sigil")
    server = SigilServer(
        sigil.binary, data, "--log-level", "warning", "--rate-limit-client", "0", "--rate-limit-identity", "0"
    ).start()
    try:
        url = server.url
        tokens = work / "tokens.txt"
        minted = sigil.ok(
            "dev", "token", "--data-dir", data, "--namespace", "soak", "--service-account", "load",
            "--ttl", f"{args.minutes + 30}m", "--count", "2000", "--spread", args.identities,
        )
        tokens.write_text(minted.stdout)
        bundle = server.bundle

        print(f"==> Maximum: concurrency {CONCURRENCY}, 15 s", flush=True)
        load(args.bin, url, bundle, tokens, 5)  # warm-up
        maximum = load(args.bin, url, bundle, tokens, 15)
        if maximum["errors"]:
            raise RuntimeError(f"errors while measuring the maximum: {maximum}")
        rate = maximum["issued_per_second"] * args.fraction
        print(f"    {maximum['issued_per_second']:.0f}/s → soak at {rate:.0f}/s for {args.minutes} min", flush=True)

        samples: list[tuple[float, float]] = []
        stop = threading.Event()
        started = time.monotonic()

        def sample() -> None:
            while not stop.is_set():
                samples.append((time.monotonic() - started, rss_mib(server.process.pid)))
                stop.wait(SAMPLE_SECONDS)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        chunks = []
        for minute in range(1, args.minutes + 1):
            chunk = load(args.bin, url, bundle, tokens, CHUNK_SECONDS, rate)
            chunk["minute"] = minute
            chunk["rss_mib"] = rss_mib(server.process.pid)
            chunks.append(chunk)
            print(
                f"    minute {minute:2d}: {chunk['issued_per_second']:6.0f}/s  p99 {chunk['p99_ms']:6.1f} ms  "
                f"errors {chunk['errors']}  RSS {chunk['rss_mib']:.1f} MiB",
                flush=True,
            )
        stop.set()
        sampler.join()
    finally:
        server.stop(30)
    verify = sigil.run("audit", "verify", "--data-dir", data)

    warm = [rss for at, rss in samples if at >= CHUNK_SECONDS]
    baseline = warm[0]
    low, high = min(warm), max(warm)
    drift = max(abs(low - baseline), abs(high - baseline)) / baseline
    errors = sum(chunk["errors"] for chunk in chunks)
    issued = sum(chunk["issued"] for chunk in chunks)
    passed = errors == 0 and drift <= RSS_TOLERANCE and verify.returncode == 0

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "samples.csv").write_text("seconds,rss_mib\n" + "".join(f"{at:.1f},{rss:.2f}\n" for at, rss in samples))
    (args.out / "chunks.jsonl").write_text("".join(json.dumps(chunk, sort_keys=True) + "\n" for chunk in chunks))
    report = [
        f"# Soak: {args.minutes} min at {args.fraction:.0%} of the maximum",
        "",
        f"- load: 2,000 tokens for {args.identities:,} workload identities",
        f"- maximum at concurrency {CONCURRENCY}: {maximum['issued_per_second']:.0f}/s; soak target {rate:.0f}/s",
        f"- issued {issued:,} certificates, {errors} errors",
        f"- p99 per minute: {min(c['p99_ms'] for c in chunks):.1f}–{max(c['p99_ms'] for c in chunks):.1f} ms",
        f"- RSS after the first minute: {low:.1f}–{high:.1f} MiB, {drift:.1%} from {baseline:.1f} MiB at the end of "
        f"warm-up (limit ±{RSS_TOLERANCE:.0%}); peak over the run {max(rss for _, rss in samples):.1f} MiB",
        f"- `sigil audit verify`: {'passed' if verify.returncode == 0 else 'FAILED: ' + verify.stderr.strip()}",
        f"- result: {'PASS' if passed else 'FAIL'}",
    ]
    (args.out / "report.md").write_text("\n".join(report) + "\n")
    print("\n".join(report))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
