#!/usr/bin/env python3
"""Istio's CA API under load (scripts/bench): CreateCertificate throughput and latency at a fixed concurrency,
through grpcio's asyncio client (grpc C-core) on one TLS channel, as an Istio agent fleet would call a CA.

Usage: istio_load.py SIGIL_BIN WORK_DIR OUT_JSON [--concurrency 64] [--duration 20] [--warmup 3] [--identities 64]

Starts its own `sigil serve --grpc-listen` (the test harness's `SigilServer`) (local mode, SQLite with durable audit, rate limits opened), mints one
dev token per identity for audience istio-ca and one CSR per identity, then runs `concurrency` callers in a loop
for `duration` seconds after `warmup`; writes {certs_per_second, p50_ms, p99_ms, errors, …} to OUT_JSON."""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "Tests" / d) for d in ("Integration", "Harness")]
from istio_support import stubs  # noqa: E402
from sigil_harness import SigilServer  # noqa: E402


def csr_for(identity: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "istio")]))
               .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=False)
               .sign(key, hashes.SHA256()))
    return request.public_bytes(serialization.Encoding.PEM).decode()


async def load(target: str, bundle: bytes, calls: list[tuple[str, str]], concurrency: int, warmup: float,
               duration: float) -> dict:
    ca_pb2, ca_pb2_grpc = stubs()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    async with grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(bundle)) as channel:
        stub = ca_pb2_grpc.IstioCertificateServiceStub(channel)
        start = time.monotonic()
        measure_from, end = start + warmup, start + warmup + duration

        async def caller(index: int) -> None:
            token, csr = calls[index % len(calls)]
            request = ca_pb2.IstioCertificateRequest(csr=csr, validity_duration=86400)
            metadata = (("authorization", f"Bearer {token}"), ("clusterid", "Kubernetes"))
            while (now := time.monotonic()) < end:
                try:
                    response = await stub.CreateCertificate(request, metadata=metadata, timeout=30)
                    assert len(response.cert_chain) == 3
                    if now >= measure_from:
                        latencies.append(time.monotonic() - now)
                except grpc.aio.AioRpcError as error:
                    errors[error.code().name] = errors.get(error.code().name, 0) + 1

        await asyncio.gather(*(caller(i) for i in range(concurrency)))
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else None
    return {"concurrency": concurrency, "duration_s": duration, "certificates": len(latencies),
            "certs_per_second": len(latencies) / duration, "p50_ms": pick(0.50), "p99_ms": pick(0.99),
            "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sigil", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--identities", type=int, default=64)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / "pki"
    server = SigilServer(
        args.sigil, data, "--grpc-listen", "127.0.0.1:0", "--rate-limit-client", "1000000",
        "--rate-limit-client-burst", "1000000", "--rate-limit-identity", "1000000", "--rate-limit-identity-burst",
        "1000000", "--log-level", "warning").start()
    try:
        target = server.grpc_target
        calls = []
        for n in range(args.identities):
            account = f"load-{n}"
            token = subprocess.run(
                [str(args.sigil), "dev", "token", "--data-dir", str(data), "--namespace", "bench",
                 "--service-account", account, "--audience", "istio-ca", "--ttl", "1h"],
                check=True, capture_output=True, text=True).stdout.strip()
            calls.append((token, csr_for(f"spiffe://cluster.local/ns/bench/sa/{account}")))
        result = asyncio.run(load(target, (data / "bundle.pem").read_bytes(), calls, args.concurrency,
                                  args.warmup, args.duration))
    finally:
        server.stop()
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
