"""The agent's socket under a stopwatch (scripts/bench; issue 18): against a warm `sigil serve` of its own,

- agent start → the first SDS response a client receives (a grpcio StreamSecrets call that waits for the socket,
  reconnecting every 10 ms), 5 runs;
- the agent has a renewed SVID → Envoy holds it: a backend Envoy 1.40 fed by the agent, a Workload API stream
  timing each new SVID's arrival and /certs polled every 2 ms, over 3 break-glass re-issues;
- the agent's RSS (VmRSS, and its anonymous and file-backed parts) idle and with 10 open streams (5 FetchX509SVID,
  5 StreamSecrets), each past its first message.

Usage: agent_socket.py SIGIL_BINARY WORK_DIR OUT_JSON  (run with the test venv: grpcio, cryptography, harness)"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Tests" / "Harness"))
from sigil_harness import Envoy, SigilServer, Sigil, bootstrap, free_port, wait_until  # noqa: E402
from sigil_harness.procfs import status_mib  # noqa: E402

ID = "spiffe://cluster.local/ns/bench/sa/socket"
PEER = "spiffe://cluster.local/ns/bench/sa/peer"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
FAST_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 10), ("grpc.min_reconnect_backoff_ms", 10),
                  ("grpc.max_reconnect_backoff_ms", 10)]


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (every length here is below 128)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


SDS_REQUEST = field(3, b"default") + field(4, SECRET_TYPE.encode())


class Agent:
    def __init__(self, binary: Path, server: SigilServer, token: Path, socket: Path, log: Path):
        self.socket = socket
        self.log = log
        self.command = [str(binary), "agent", "--server", server.url, "--token-file", str(token), "--ca-bundle",
                        str(server.bundle), "--socket", str(socket), "--poll-interval", "1s"]
        self.process: subprocess.Popen | None = None

    def start(self) -> "Agent":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(f"unix://{self.socket}", options=FAST_RECONNECT)


def first_sds_response(agent: Agent) -> float:
    """ms from spawning the agent to the first StreamSecrets response in hand."""
    started = time.monotonic()
    agent.start()
    with agent.channel() as channel:
        call = channel.stream_stream("/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets")(
            iter([SDS_REQUEST]), wait_for_ready=True, timeout=30)
        next(iter(call))
        elapsed = (time.monotonic() - started) * 1000
        call.cancel()
    agent.stop()
    return elapsed


def main() -> None:
    binary, work, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    work.mkdir(parents=True, exist_ok=True)
    sigil = Sigil(binary)
    admin = work / "admin.sock"
    server = SigilServer(binary, work / "pki", "--admin-socket", admin, "--rate-limit-client", "0").start()
    agents: list[Agent] = []
    envoy: Envoy | None = None
    try:
        token = work / "token"
        token.write_text(sigil.ok("dev", "token", "--data-dir", server.data_dir, "--namespace", "bench",
                                  "--service-account", "socket", "--ttl", "1h").stdout)
        first = []
        for run in range(5):
            agent = Agent(binary, server, token, work / f"start-{run}" / "agent.sock", work / f"start-{run}.log")
            agents.append(agent)
            first.append(round(first_sds_response(agent), 1))

        agent = Agent(binary, server, token, work / "run" / "agent.sock", work / "run.log").start()
        agents.append(agent)
        arrivals: dict[bytes, float] = {}

        def watch():
            with agent.channel() as channel:
                stream = channel.unary_stream("/SpiffeWorkloadAPI/FetchX509SVID")(
                    b"", metadata=(("workload.spiffe.io", "true"),), wait_for_ready=True, timeout=600)
                try:
                    for message in stream:
                        arrivals.setdefault(message, time.monotonic())
                except grpc.RpcError:
                    pass  # the agent stopped

        threading.Thread(target=watch, daemon=True).start()
        envoy = Envoy(bootstrap("backend", agent.socket, free_port(), free_port(), ID, PEER, names="istio"),
                      work / "envoy", name="bench-envoy").start()
        envoy.wait_until_ready(60)
        propagation = []
        for run in range(3):
            held = envoy.cert_serials("cert_chain")
            known = len(arrivals)
            sigil.ok("admin", "rotate", "intermediate", "--taint-old", "--reason", f"bench {run}", "--socket", admin)
            new = wait_until(lambda: envoy.cert_serials("cert_chain") - held, 30, "Envoy to take the re-issued SVID",
                             interval=0.002)
            seen = time.monotonic()
            wait_until(lambda: len(arrivals) > known, 5, "the Workload API stream to see it")
            pushed = max(arrivals.values())
            propagation.append(round(max(seen - pushed, 0) * 1000, 1))
            assert new, "no new serial"

        memory = ("VmRSS", "RssAnon", "RssFile")
        idle = status_mib(agent.process.pid, *memory)
        channel = agent.channel()
        calls = []
        for _ in range(5):
            calls.append(channel.unary_stream("/SpiffeWorkloadAPI/FetchX509SVID")(
                b"", metadata=(("workload.spiffe.io", "true"),), wait_for_ready=True, timeout=600))
            calls.append(channel.stream_stream("/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets")(
                iter([SDS_REQUEST]), wait_for_ready=True, timeout=600))  # half-closed; the agent keeps it open
        for call in calls:
            next(iter(call))
        busy = status_mib(agent.process.pid, *memory)
        for call in calls:
            call.cancel()
        channel.close()
        result = {
            "sds_first_response_ms": first, "sds_first_response_median_ms": statistics.median(first),
            "envoy_after_renewal_ms": propagation, "envoy_after_renewal_max_ms": max(propagation),
            "rss_idle_mib": round(idle["VmRSS"], 1), "rss_10_streams_mib": round(busy["VmRSS"], 1),
            "rss_anon_10_streams_mib": round(busy["RssAnon"], 1), "rss_file_10_streams_mib": round(busy["RssFile"], 1),
        }
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result))
    finally:
        if envoy:
            envoy.stop()
        for agent in agents:
            agent.stop()
        server.stop()


if __name__ == "__main__":
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    main()
