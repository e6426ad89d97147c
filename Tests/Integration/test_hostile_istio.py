"""Hostile input on Istio's CA API (`sigil serve --grpc-listen`), as on the HTTPS API: malformed protobuf, huge
metadata, the wrong content type, and HTTP/2 abuse (more streams than allowed, a rapid-reset flood), sent with
grpcio and with raw HTTP/2 frames (the `h2` library over Python's `ssl`, ALPN h2). After each: no crash, the
server still issues, its memory stays bounded, and refusals of calls that reached the API are audited."""
from __future__ import annotations

import json
import socket
import ssl

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from hyperframe.frame import ContinuationFrame, HeadersFrame, RstStreamFrame

from istio_support import METHOD, IstioClient, assert_refused
from sigil_harness import TokenIssuer, audit_records, python_csr
from sigil_harness.procfs import rss_mib

ISSUER = "https://kubernetes.default.svc.cluster.local"
# Growth of the server's resident memory allowed across one attack (the attacks send tens of MiB).
RSS_BUDGET_MIB = 64


@pytest.fixture(scope="module")
def issuer(tmp_path_factory) -> TokenIssuer:
    issuer = TokenIssuer(ISSUER)
    issuer.add_key("ec", "ES256")
    issuer.jwks_file = tmp_path_factory.mktemp("jwks") / "jwks.json"
    issuer.jwks_file.write_text(json.dumps(issuer.jwks()))
    return issuer


@pytest.fixture(scope="module")
def server(module_servers, issuer, tmp_path_factory):
    return module_servers(tmp_path_factory.mktemp("istio-hostile") / "pki", "--token-issuer", issuer.issuer,
                          "--token-jwks", issuer.jwks_file, "--grpc-listen", "127.0.0.1:0",
                          "--rate-limit-client", "100000", "--rate-limit-client-burst", "100000")


def token(issuer) -> str:
    return issuer.token("ec", audience=("istio-ca",))


def assert_still_serves(server, issuer, rss_before: float) -> None:
    assert server.running, server.describe()
    with IstioClient(server) as client:
        assert len(client.create(python_csr()[0], token(issuer))) == 3
    grown = rss_mib(server.process.pid) - rss_before
    assert grown < RSS_BUDGET_MIB, f"resident memory grew by {grown:.0f} MiB"


class RawH2:
    """One TLS connection speaking HTTP/2 frame by frame."""

    def __init__(self, server):
        host, port = server.grpc_target.rsplit(":", 1)
        context = ssl.create_default_context(cafile=str(server.bundle))
        context.set_alpn_protocols(["h2"])
        self.sock = context.wrap_socket(socket.create_connection((host, int(port)), timeout=10),
                                        server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def headers(self, stream_id: int, content_type: str = "application/grpc", extra=()) -> list:
        return [(":method", "POST"), (":scheme", "https"), (":path", METHOD), (":authority", "localhost"),
                ("content-type", content_type), ("te", "trailers"), *extra]

    def events(self, until=lambda events: False, limit: int = 1 << 22) -> list:
        """Reads until `until(events)` holds, the connection closes, or `limit` bytes arrived."""
        seen, received = [], 0
        while received < limit and not until(seen):
            try:
                data = self.sock.recv(65536)
            except (ConnectionError, ssl.SSLError, TimeoutError, socket.timeout):
                break
            if not data:
                break
            received += len(data)
            try:
                seen += self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                break
            self.flush()
        return seen

    def close(self) -> None:
        self.sock.close()


def test_malformed_protobuf_is_invalid_argument_and_audited(sigil, server, issuer):
    before = rss_mib(server.process.pid)
    with IstioClient(server) as client:
        raw = client.channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        for garbage in (b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x22\x05\x0a\x03\x22\x01"):
            assert_refused(lambda: raw(garbage, metadata=[("authorization", f"Bearer {token(issuer)}")], timeout=10),
                           grpc.StatusCode.INVALID_ARGUMENT, "bad_request")
    denials = [r for r in audit_records(sigil, "--data-dir", server.data_dir)
               if r["action"] == "deny" and r["code"] == "bad_request"]
    assert len(denials) >= 3 and all(d["actor"].startswith("spiffe://") for d in denials), denials
    assert_still_serves(server, issuer, before)


def test_deeply_nested_metadata_is_refused(server, issuer):
    with IstioClient(server) as client:
        nested: dict = {}
        for _ in range(40):
            nested = {"n": nested}
        assert_refused(lambda: client.create(python_csr()[0], token(issuer), metadata={"deep": nested}),
                       grpc.StatusCode.INVALID_ARGUMENT, "bad_request")


def test_a_message_over_the_body_limit_is_refused(server, issuer):
    with IstioClient(server) as client:
        with pytest.raises(grpc.RpcError) as raised:
            client.create(python_csr()[0], token(issuer), metadata={"pad": "x" * (256 * 1024)})
        # grpc-swift resets the stream as soon as the message outgrows the limit, before reading it all.
        assert raised.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED), raised.value


def test_huge_header_metadata_closes_the_stream_not_the_server(server, issuer):
    """One header block of 64 KiB and one of 4 MiB (HEADERS and CONTINUATION frames, HPACK without Huffman
    coding: the h2 library's pure-Python Huffman coder would take minutes for megabytes), far over the 16 KiB
    header list the server announces: the call is refused or the connection closed, never served."""
    before = rss_mib(server.process.pid)
    for size in (64 * 1024, 4 * 1024 * 1024):
        h2c = RawH2(server)
        block = h2c.conn.encoder.encode(h2c.headers(1, extra=[("x-pad", "p" * size)]), huffman=False)
        chunks = [block[at:at + 16384] for at in range(0, len(block), 16384)]
        frames = HeadersFrame(1, chunks[0], flags=["END_STREAM"]).serialize()
        for index, chunk in enumerate(chunks[1:], start=1):
            frames += ContinuationFrame(1, chunk, flags=["END_HEADERS"] if index == len(chunks) - 1 else []
                                        ).serialize()
        try:
            h2c.sock.sendall(frames)
        except (ConnectionError, ssl.SSLError, TimeoutError, socket.timeout):
            pass  # the server may close before it read everything
        received = read_frames(h2c.sock)
        h2c.close()
        assert any(kind in (GOAWAY, RST_STREAM) for kind, _, _ in received), f"{size} bytes: {received[:10]}"
        assert not any(kind == 1 and stream == 1 for kind, stream, _ in received), "the call was answered"
    assert_still_serves(server, issuer, before)


def test_wrong_content_type_is_refused(server, issuer):
    h2c = RawH2(server)
    h2c.conn.send_headers(1, h2c.headers(1, content_type="application/json"), end_stream=False)
    h2c.conn.send_data(1, b'{"csr": "x"}', end_stream=True)
    h2c.flush()
    events = h2c.events(lambda seen: any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset))
                                         for e in seen))
    h2c.close()
    statuses = [dict(e.headers).get(":status") for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert statuses == ["415"], events


def read_frames(sock) -> list[tuple[int, int, bytes]]:
    """(type, stream, payload) of every frame the server sends until it closes or goes quiet (raw: the h2
    state machine does not know of streams it did not open itself)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionError, ssl.SSLError, TimeoutError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    frames, at = [], 0
    while at + 9 <= len(data):
        length = int.from_bytes(data[at:at + 3], "big")
        kind, stream = data[at + 3], int.from_bytes(data[at + 5:at + 9], "big") & 0x7FFFFFFF
        frames.append((kind, stream, data[at + 9:at + 9 + length]))
        at += 9 + length
    return frames


GOAWAY, RST_STREAM = 7, 3


def test_more_streams_than_allowed_are_refused(server, issuer):
    """The server allows 100 concurrent streams; a client that opens 1,000 (sent as raw frames: h2 itself would
    respect the limit) has the excess refused or the connection closed, and the server goes on."""
    before = rss_mib(server.process.pid)
    h2c = RawH2(server)
    h2c.events(lambda seen: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in seen))
    assert h2c.conn.remote_settings.max_concurrent_streams == 100
    frames = b"".join(
        HeadersFrame(stream, h2c.conn.encoder.encode(h2c.headers(stream)), flags=["END_HEADERS"]).serialize()
        for stream in range(1, 2001, 2))
    try:
        h2c.sock.sendall(frames)
    except (ConnectionError, ssl.SSLError):
        pass
    received = read_frames(h2c.sock)
    h2c.close()
    refused = [f for f in received if f[0] == RST_STREAM]
    goaway = [f for f in received if f[0] == GOAWAY]
    assert len(refused) >= 900 or goaway, f"neither refused streams nor GOAWAY: {received[:10]}"
    assert_still_serves(server, issuer, before)


def test_a_rapid_reset_flood_is_cut_off(server, issuer):
    """HEADERS then RST_STREAM, 20,000 times on one connection (CVE-2023-44487): the server answers GOAWAY and
    closes instead of doing the work of every stream."""
    before = rss_mib(server.process.pid)
    h2c = RawH2(server)
    cut_off = False
    for batch in range(20):
        frames = b""
        for n in range(1000):
            stream = 2 * (batch * 1000 + n) + 1
            frames += HeadersFrame(stream, h2c.conn.encoder.encode(h2c.headers(stream)),
                                   flags=["END_HEADERS"]).serialize()
            frames += RstStreamFrame(stream, error_code=8).serialize()  # CANCEL
        try:
            h2c.sock.sendall(frames)
        except (ConnectionError, ssl.SSLError, TimeoutError, socket.timeout):
            cut_off = True
            break
    received = read_frames(h2c.sock)
    h2c.close()
    goaway = [f for f in received if f[0] == GOAWAY]
    assert cut_off or goaway, "the server went on reading a reset flood"
    if goaway:
        error = int.from_bytes(goaway[-1][2][4:8], "big")
        assert error in (1, 11), f"GOAWAY error {error}"  # PROTOCOL_ERROR or ENHANCE_YOUR_CALM
    assert_still_serves(server, issuer, before)
