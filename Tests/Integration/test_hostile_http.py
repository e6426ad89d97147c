"""Hostile HTTP over real TLS: JSON bodies that are deep, huge, duplicated-key, malformed or wrong-typed; wrong content
types and methods; and, on raw sockets, protocol abuse (HTTP/0.9 and HTTP/2 lines, garbage, Content-Length lies,
smuggling shapes, huge and many headers, pipelining, plain text and broken handshakes on the TLS port) and slow
clients against `--request-timeout 1s`.

Requests that reach the issuance handler must get a 4xx problem+json with their exact code and a denial audit
record. Requests the HTTP parser refuses before Sigil's code runs cannot carry a problem document: for those the
test asks for a 4xx (or no answer) and a closed connection. After every raw case the server must still answer."""

from __future__ import annotations

import json
import os
import socket
import ssl

import pytest

from hostile_support import (
    RawConnection,
    assert_raw_problem,
    cases,
    get_ok,
    http_request,
    refusal,
    server_address,
    start_rig,
    tls_context,
    xfail,
)
from sigil_harness import WEB_ID, assert_issued, assert_problem, wait_until

BAD_REQUEST = refusal(400, "bad_request")
CSR_INVALID = refusal(400, "csr_invalid")
TTL_OUT_OF_RANGE = refusal(400, "ttl_out_of_range")
UNSUPPORTED = refusal(415, "unsupported_media_type")


@pytest.fixture(scope="module")
def rig(module_servers, tmp_path_factory):
    return start_rig(module_servers, tmp_path_factory.mktemp("hostile-http"))


@pytest.fixture(scope="module")
def slow_rig(module_servers, tmp_path_factory):
    """A second server whose clients get one second to send a whole request (two seconds of keep-alive idle)."""
    return start_rig(module_servers, tmp_path_factory.mktemp("hostile-slow"), "--request-timeout", "1s", "--idle-timeout", "2s")


DEADLINE = 4.0  # seconds: slow_rig's 1 s request timeout plus generous scheduling slack on a busy machine


# --- JSON bodies ----------------------------------------------------------------------------------------


def with_csr(template: str):
    """A body text with `%s` replaced by the good CSR as a JSON string."""
    return lambda rig: template.replace("%s", json.dumps(rig.good_csr))


def literal(text: str | bytes):
    return lambda rig: text


def nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth



BODIES = {
    # deep
    "arrays-30000-deep-beside-the-csr": BAD_REQUEST(with_csr('{"csr": %s, "x": ' + nested(30_000) + "}")),
    "objects-10000-deep-beside-the-csr": BAD_REQUEST(
        with_csr('{"csr": %s, "x": ' + '{"a":' * 10_000 + "1" + "}" * 10_000 + "}")
    ),
    "csr-is-arrays-30000-deep": BAD_REQUEST(literal('{"csr": ' + nested(30_000) + "}")),
    "unclosed-arrays-60000-deep": BAD_REQUEST(literal("[" * 60_000)),
    "unclosed-objects-10000-deep": BAD_REQUEST(literal('{"csr":' * 8_000)),
    # wrong types
    "csr-an-object": BAD_REQUEST(literal('{"csr": {"pem": "x"}}')),
    "csr-a-boolean": BAD_REQUEST(literal('{"csr": true}')),
    "csr-1e999": BAD_REQUEST(literal('{"csr": 1e999}')),
    "ttl-a-boolean": BAD_REQUEST(with_csr('{"csr": %s, "ttl_seconds": true}')),
    "ttl-an-array": BAD_REQUEST(with_csr('{"csr": %s, "ttl_seconds": [600]}')),
    "ttl-an-object": BAD_REQUEST(with_csr('{"csr": %s, "ttl_seconds": {"s": 600}}')),
    "ttl-1e400": BAD_REQUEST(with_csr('{"csr": %s, "ttl_seconds": 1e400}')),
    "ttl-beyond-int64": BAD_REQUEST(with_csr('{"csr": %s, "ttl_seconds": 99999999999999999999999}')),
    "ttl-nan": BAD_REQUEST(with_csr('{"csr": %s, "ttl_seconds": NaN}')),
    "ttl-infinity": BAD_REQUEST(with_csr('{"csr": %s, "ttl_seconds": Infinity}')),
    "ttl-hex": BAD_REQUEST(with_csr('{"csr": %s, "ttl_seconds": 0x258}')),
    "ttl-leading-zero": BAD_REQUEST(with_csr('{"csr": %s, "ttl_seconds": 0600}')),
    "ttl-plus-sign": BAD_REQUEST(with_csr('{"csr": %s, "ttl_seconds": +600}')),
    "top-level-null": BAD_REQUEST(literal("null")),
    "top-level-number": BAD_REQUEST(literal("42")),
    "top-level-true": BAD_REQUEST(literal("true")),
    "empty-object": BAD_REQUEST(literal("{}")),
    "csr-key-uppercase": BAD_REQUEST(with_csr('{"CSR": %s}')),
    "csr-key-with-a-trailing-space": BAD_REQUEST(with_csr('{"csr ": %s}')),
    "4000-unknown-keys-and-no-csr": BAD_REQUEST(literal(json.dumps({f"k{i}": i for i in range(4000)}))),
    # not JSON (RFC 8259)
    "comment-before-the-object": BAD_REQUEST(with_csr('/* hi */ {"csr": %s}')),
    "single-quoted": BAD_REQUEST(literal("{'csr': 'x'}")),
    "unquoted-keys": BAD_REQUEST(literal('{csr: "x"}')),
    "raw-control-character-in-a-string": BAD_REQUEST(literal('{"csr": "a\x01b"}')),
    "invalid-utf8": BAD_REQUEST(literal(b'{"csr": "\xff\xfe\xfd"}')),
    "nul-after-the-object": BAD_REQUEST(with_csr('{"csr": %s}\x00')),
    "garbage-after-the-object": BAD_REQUEST(with_csr('{"csr": %s} and more')),
    "two-objects": BAD_REQUEST(with_csr('{"csr": %s}{"csr": %s}')),
    "unterminated-string": BAD_REQUEST(literal('{"csr": "-----BEGIN CERTIFICATE REQUEST-----')),
    "lone-low-surrogate-escape": BAD_REQUEST(literal('{"csr": "\\udc00"}')),
    "trailing-comma": BAD_REQUEST(with_csr('{"csr": %s,}')),
    # duplicate members
    "duplicate-csr-good-then-garbage": BAD_REQUEST(with_csr('{"csr": %s, "csr": "garbage"}')),
    "duplicate-csr-garbage-then-good": BAD_REQUEST(with_csr('{"csr": "garbage", "csr": %s}')),
    "duplicate-ttl-600-then-a-year": BAD_REQUEST(
        with_csr('{"csr": %s, "ttl_seconds": 600, "ttl_seconds": 31536000}')
    ),
    "duplicate-ttl-a-year-then-600": BAD_REQUEST(
        with_csr('{"csr": %s, "ttl_seconds": 31536000, "ttl_seconds": 600}')
    ),
    # well-formed JSON, bad values
    "csr-60-kib-string": CSR_INVALID(literal(json.dumps({"csr": "A" * 60_000}))),
    "csr-escaped-nul-bytes": CSR_INVALID(literal('{"csr": "\\u0000\\u0000-----BEGIN CERTIFICATE REQUEST-----"}')),
    "ttl-negative-zero": TTL_OUT_OF_RANGE(with_csr('{"csr": %s, "ttl_seconds": -0}')),
    "ttl-int64-min": TTL_OUT_OF_RANGE(with_csr('{"csr": %s, "ttl_seconds": -9223372036854775808}')),
    "ttl-int64-max": TTL_OUT_OF_RANGE(with_csr('{"csr": %s, "ttl_seconds": 9223372036854775807}')),
    "ttl-59-seconds": TTL_OUT_OF_RANGE(with_csr('{"csr": %s, "ttl_seconds": 59}')),
}


@pytest.mark.parametrize("make, status, code", cases(BODIES))
def test_hostile_json_body_is_refused(rig, make, status, code):
    rig.refused(rig.post(make(rig), rig.token()), status, code)


# --- content types --------------------------------------------------------------------------------------


CONTENT_TYPES = {
    "application-xml": UNSUPPORTED("application/xml"),
    "multipart-form-data": UNSUPPORTED("multipart/form-data; boundary=x"),
    "application-problem+json": UNSUPPORTED("application/problem+json"),
    "application-octet-stream": UNSUPPORTED("application/octet-stream"),
    "text-json": UNSUPPORTED("text/json"),
    "application-x-json": UNSUPPORTED("application/x-json"),
    "empty-value": UNSUPPORTED(""),
    "json-listed-after-text-plain": UNSUPPORTED("text/plain, application/json"),
    "application-jsonp": UNSUPPORTED("application/jsonp"),
    "application-json-patch+json": UNSUPPORTED("application/json-patch+json"),
    "application-json-listed-before-text-plain": UNSUPPORTED("application/json, text/plain"),
}


@pytest.mark.parametrize("content_type, status, code", cases(CONTENT_TYPES))
def test_wrong_content_type_is_refused(rig, content_type, status, code):
    rig.refused(rig.post(json.dumps({"csr": rig.good_csr}), rig.token(), content_type), status, code)


@pytest.mark.parametrize(
    "order",
    [
        pytest.param(
            "json-first"
        ),
        "json-last",
    ],
)
def test_two_content_type_fields_are_refused(rig, order):
    """Two Content-Type fields (sent raw; clients refuse to) are one ambiguous media type."""
    fields = [("Content-Type", "application/json"), ("Content-Type", "text/plain")]
    if order == "json-last":
        fields.reverse()
    token = rig.token()
    body = json.dumps({"csr": rig.good_csr}).encode()
    with RawConnection(rig.server) as connection:
        connection.send(http_request("POST", "/v1/certificates", [*fields, ("Authorization", f"Bearer {token}")], body))
        response = connection.read_response()
    assert response is not None
    problem = assert_raw_problem(response, 415, "unsupported_media_type")
    assert rig.audit_record(problem["request_id"])["code"] == "unsupported_media_type"


# --- body sizes and lying lengths -----------------------------------------------------------------------


def test_one_mib_body_is_refused(rig):
    rig.refused(rig.post(json.dumps({"csr": "A" * (1 << 20)}), rig.token()), 413, "payload_too_large")


def test_one_mib_chunked_body_is_refused(rig):
    def chunks():
        yield b'{"csr": "'
        for _ in range(1024):
            yield b"A" * 1024
        yield b'"}'

    rig.refused(rig.post(chunks(), rig.token()), 413, "payload_too_large")


@pytest.mark.parametrize("length", ["10000000000", "9223372036854775807"], ids=["10-gb", "int64-max"])
def test_declared_giant_length_is_refused_before_reading(rig, length):
    """A Content-Length of 10 GB (or 2^63-1) on a 2-byte body is refused at once, not waited for."""
    token = rig.token()
    request = http_request(
        "POST",
        "/v1/certificates",
        [("Content-Type", "application/json"), ("Authorization", f"Bearer {token}"), ("Content-Length", length)],
        b"{}",
    )
    with RawConnection(rig.server) as connection:
        connection.send(request)
        response = connection.read_response()
    assert response is not None, "no answer to a giant declared length"
    problem = assert_raw_problem(response, 413, "payload_too_large")
    assert rig.audit_record(problem["request_id"])["code"] == "payload_too_large"


# --- methods --------------------------------------------------------------------------------------------

METHODS = [
    ("PATCH", "/v1/certificates", "POST"),
    ("DELETE", "/v1/certificates", "POST"),
    ("OPTIONS", "/v1/certificates", "POST"),
    ("TRACE", "/v1/certificates", "POST"),
    ("PROPFIND", "/v1/certificates", "POST"),
    ("POST", "/v1/bundle", "GET"),
    ("POST", "/v1/bundle.pem", "GET"),
    ("POST", "/v1/authorities", "GET"),
    ("POST", "/v1/crl", "GET"),
    ("POST", "/healthz", "GET"),
    ("POST", "/readyz", "GET"),
    ("POST", "/metrics", "GET"),
    ("PUT", "/v1/crl", "GET"),
    ("DELETE", "/v1/authorities", "GET"),
]


@pytest.mark.parametrize("method, path, allowed", METHODS, ids=[f"{m}-{p}" for m, p, _ in METHODS])
def test_wrong_method_is_405_with_allow(rig, method, path, allowed):
    token = rig.token()
    response = rig.server.request(
        method,
        path,
        data=json.dumps({"csr": rig.good_csr}),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    assert_problem(response, 405, "method_not_allowed", forbidden=(token,))
    assert response.headers.get("Allow") == allowed, response.headers


def test_head_on_the_issuance_route_gets_405_and_the_connection_stays_usable(rig):
    """HEAD has no body by definition: a 405 head, and the same connection then serves a normal request."""
    with RawConnection(rig.server) as connection:
        connection.send(http_request("HEAD", "/v1/certificates"))
        response = connection.read_response(head=True)
        assert response is not None and response.status == 405, response
        assert response.headers.get("allow") == "POST", response.headers
        connection.send(http_request("GET", "/healthz"))
        follow_up = connection.read_response()
        assert follow_up is not None and follow_up.status == 200, follow_up


@pytest.mark.xfail(
    strict=True,
    reason=(
        "CONNECT /v1/certificates gets a 405 head with Content-Type application/problem+json but no Content-Length, no "
        "body and no close: by RFC 9112 §6.3 the client must then read until close, so it hangs until a timeout"
    ),
)
def test_connect_on_the_issuance_route_gets_a_complete_405(rig):
    with RawConnection(rig.server, timeout=5) as connection:
        connection.send(http_request("CONNECT", "/v1/certificates"))
        response = connection.read_response(head=True)
        assert response is not None and response.status == 405, response
        if "content-length" in response.headers:
            body = connection._read_exact(int(response.headers["content-length"]))
            assert json.loads(body)["code"] == "method_not_allowed"
        else:
            assert connection.wait_closed(3), "a 405 without framing, and the connection left open"
    get_ok(rig.server)


@pytest.mark.parametrize("method", ["FOO", "post", "GET\x00"], ids=["unknown-token", "lowercase-post", "nul-in-method"])
def test_unknown_method_is_refused_by_the_parser(rig, method):
    with RawConnection(rig.server) as connection:
        connection.send(f"{method} /v1/certificates HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode("latin-1"))
        response = connection.read_response()
        assert response is None or 400 <= response.status < 500, response
        assert connection.wait_closed(5)
    get_ok(rig.server)


# --- protocol abuse on raw sockets (the HTTP parser answers before Sigil's code) ------------------------


def post_head(*fields: tuple[str, str]) -> list[tuple[str, str]]:
    return [("Content-Type", "application/json"), *fields]


RAW = {
    "http-0.9-request-line": b"GET /healthz\r\n\r\n",
    "http2-preface-without-alpn": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "random-bytes": os.urandom(256),
    "text-that-is-not-http": b"hello, is it me you're looking for?\r\n\r\n",
    "version-http-1.2": http_request("GET", "/healthz", version="HTTP/1.2"),
    "version-http-2.0-as-text": http_request("GET", "/healthz", version="HTTP/2.0"),
    "version-http-9.9": http_request("GET", "/healthz", version="HTTP/9.9"),
    "version-lowercase": http_request("GET", "/healthz", version="http/1.1"),
    "content-length-negative": http_request(
        "POST", "/v1/certificates", post_head(("Content-Length", "-1")), b"{}", False
    ),
    "content-length-not-a-number": http_request(
        "POST", "/v1/certificates", post_head(("Content-Length", "abc")), b"{}", False
    ),
    "content-length-40-digits": http_request(
        "POST", "/v1/certificates", post_head(("Content-Length", "9" * 40)), b"{}", False
    ),
    "two-different-content-lengths": http_request(
        "POST", "/v1/certificates", post_head(("Content-Length", "2"), ("Content-Length", "5")), b"{}", False
    ),
    "two-equal-content-lengths": http_request(
        "POST", "/v1/certificates", post_head(("Content-Length", "2"), ("Content-Length", "2")), b"{}", False
    ),
    "content-length-and-chunked": http_request(
        "POST",
        "/v1/certificates",
        post_head(("Content-Length", "5"), ("Transfer-Encoding", "chunked")),
        b"0\r\n\r\n",
        False,
    ),
    "transfer-encoding-gzip": http_request(
        "POST", "/v1/certificates", post_head(("Transfer-Encoding", "gzip")), b"xx", False
    ),
    "transfer-encoding-chunkedx": http_request(
        "POST", "/v1/certificates", post_head(("Transfer-Encoding", "chunkedx")), b"xx", False
    ),
    "chunk-size-not-hex": http_request(
        "POST", "/v1/certificates", post_head(("Transfer-Encoding", "chunked")), b"zz\r\nabc\r\n0\r\n\r\n", False
    ),
    "chunk-size-overflows": http_request(
        "POST",
        "/v1/certificates",
        post_head(("Transfer-Encoding", "chunked")),
        b"f" * 20 + b"\r\nabc\r\n0\r\n\r\n",
        False,
    ),
    "body-longer-than-content-length": http_request(
        "POST", "/v1/certificates", post_head(("Content-Length", "2")), b"{}GARBAGE / HTTP/1.1\r\n\r\n", False
    ),
    "200-kb-header": http_request("GET", "/healthz", {"X-Big": "a" * 200_000}),
    "20000-headers": http_request("GET", "/healthz", [(f"X-H{i}", "v") for i in range(20_000)]),
    "200-kb-url": http_request("GET", "/healthz?" + "a" * 200_000),
    "header-without-colon": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nNoColonHere\r\n\r\n",
    "space-in-header-name": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Name: v\r\n\r\n",
    "nul-in-header-value": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX: a\x00b\r\n\r\n",
    "obsolete-line-folding": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX: a\r\n  b\r\n\r\n",
    "bare-lf-line-endings": b"GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n",
    "bare-cr-line-endings": b"GET /healthz HTTP/1.1\rHost: 127.0.0.1\r\r",
    "target-without-leading-slash": b"GET healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "raw-utf8-in-target": "GET /h\u00e9althz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(),
    "tls-record-inside-tls": b"\x16\x03\x01\x00\x05hello",
}


@pytest.mark.parametrize("data", list(RAW.values()), ids=list(RAW))
def test_malformed_http_is_refused_and_the_connection_closed(rig, data):
    """Parser level: a 4xx (or no answer) and a closed connection, never a 5xx; the server keeps serving."""
    with RawConnection(rig.server) as connection:
        connection.send(data)
        response = connection.read_response()
        assert response is None or 400 <= response.status < 500, response
        if response is not None and response.headers.get("content-type", "").startswith("application/problem+json"):
            assert_raw_problem(response, response.status, response.json()["code"])
        assert connection.wait_closed(5), "the server kept a connection open after a malformed request"
    get_ok(rig.server)


HOST_RFC = (
    "RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request with two Host fields; HTTPTypes keeps one "
    "authority, so Sigil cannot see the second and the request is served (200)"
)


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"GET /healthz HTTP/1.1\r\n\r\n", id="no-host"),
        pytest.param(
            b"GET /healthz HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
            id="two-hosts",
            marks=xfail(HOST_RFC),
        ),
    ],
)
def test_http11_request_without_exactly_one_host_is_refused(rig, head):
    with RawConnection(rig.server) as connection:
        connection.send(head)
        response = connection.read_response()
    assert response is not None and response.status == 400, response
    get_ok(rig.server)


# --- pipelining -----------------------------------------------------------------------------------------


def test_fifty_pipelined_requests_are_answered_in_order(rig):
    with RawConnection(rig.server) as connection:
        connection.send(http_request("GET", "/healthz") * 25 + http_request("GET", "/v1/bundle.pem") * 25)
        responses = [connection.read_response() for _ in range(50)]
    assert [r.status for r in responses] == [200] * 50
    assert all(b"ok" in r.body for r in responses[:25])
    assert all(r.body.startswith(b"-----BEGIN CERTIFICATE-----") for r in responses[25:])


def test_pipelined_garbage_after_a_good_request_closes_the_connection(rig):
    with RawConnection(rig.server) as connection:
        connection.send(http_request("GET", "/healthz") + b"\x16\x03\x01 not http at all\r\n\r\n")
        first = connection.read_response()
        assert first is not None and first.status == 200
        second = connection.read_response()
        assert second is None or 400 <= second.status < 500, second
        assert connection.wait_closed(5)
    get_ok(rig.server)


def test_pipelined_refusal_then_issuance_on_one_connection(rig):
    """A refused POST does not poison the connection: the next pipelined request on it is served normally."""
    token = rig.token()
    auth = [("Content-Type", "application/json"), ("Authorization", f"Bearer {token}")]
    with RawConnection(rig.server) as connection:
        connection.send(
            http_request("POST", "/v1/certificates", auth, b"{")
            + http_request("POST", "/v1/certificates", auth, json.dumps({"csr": rig.good_csr}).encode())
            + http_request("GET", "/healthz")
        )
        refused, issued, health = (connection.read_response() for _ in range(3))
    problem = assert_raw_problem(refused, 400, "bad_request")
    assert rig.audit_record(problem["request_id"])["code"] == "bad_request"
    assert issued.status == 201 and issued.json()["spiffe_id"] == WEB_ID, issued
    assert health.status == 200


# --- not TLS, or broken TLS, on the TLS port ------------------------------------------------------------


def raw_tcp(rig, data: bytes, timeout: float = 5) -> tuple[bytes, bool]:
    """Sends plain bytes on the TLS port; returns (what came back, whether the server closed within timeout)."""
    with socket.create_connection(server_address(rig.server), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    return received, True
                received += chunk
        except socket.timeout:
            return received, False
        except ConnectionResetError:
            return received, True


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", id="plain-http-request"),
        pytest.param(
            b"POST /v1/certificates HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}", id="plain-http-post"
        ),
        pytest.param(os.urandom(512), id="random-bytes"),
        pytest.param(b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + os.urandom(37), id="sslv2-client-hello"),
        pytest.param(b"\x16\x03\x01\xff\xff" + os.urandom(64), id="tls-record-with-lying-length"),
        pytest.param(b"\x15\x03\x03\x00\x02\x02\x28", id="fatal-alert-first"),
    ],
)
def test_non_tls_bytes_on_the_tls_port_are_dropped(slow_rig, data):
    """Plain HTTP, SSLv2, garbage or a lying TLS record on the TLS port: no plain-text answer, and the connection is
    closed (at the latest by the request timeout, for a record still 'in flight')."""
    received, closed = raw_tcp(slow_rig, data, timeout=DEADLINE)
    assert b"HTTP/" not in received, f"the TLS port answered in plain text: {received[:200]!r}"
    assert closed, "the server kept a non-TLS connection open"
    get_ok(slow_rig.server)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["tls-1.0", "tls-1.1"])
def test_obsolete_tls_versions_are_refused(rig, version):
    """A client offering at most TLS 1.0/1.1 gets the server's protocol_version alert."""
    context = tls_context(rig.server)
    try:
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = version
        context.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this Python/OpenSSL cannot offer that TLS version")
    with socket.create_connection(server_address(rig.server), timeout=10) as raw:
        with pytest.raises(ssl.SSLError) as refused:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(http_request("GET", "/healthz"))
                tls.recv(100)
    if "NO_PROTOCOLS_AVAILABLE" in str(refused.value):
        pytest.skip("the local OpenSSL will not offer that TLS version")
    assert "PROTOCOL_VERSION" in str(refused.value), refused.value
    get_ok(rig.server)


def test_client_certificate_that_is_not_an_svid_is_refused(rig, tmp_path):
    """A self-signed client certificate passes the handshake (possession) but never authenticates."""
    from sigil_harness import make_upstream_ca

    cert, key = make_upstream_ca(tmp_path, ca=False)
    response = rig.server.request(
        "POST",
        "/v1/certificates",
        data=json.dumps({"csr": rig.good_csr}),
        headers={"Content-Type": "application/json"},
        cert=(str(cert), str(key)),
    )
    rig.refused(response, 401, "unauthenticated")


# --- slow clients (`--request-timeout 1s`) -------------------------------------------------------------


def trickle_until_closed(
    connection: RawConnection, data: bytes, pace: float = 0.2, limit: float = 8.0
) -> tuple[bool, float, int]:
    """Sends data one byte at a time, waiting up to `pace` s for the server's EOF between bytes (the wait is the
    pacing: no sleep). Returns (closed, seconds until closed, bytes sent)."""
    import time

    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < limit:
        if sent < len(data) and not connection.send(data[sent : sent + 1]):
            return True, time.monotonic() - start, sent
        sent += 1
        if connection.wait_closed(pace):
            return True, time.monotonic() - start, sent
    return False, time.monotonic() - start, sent


def test_slowly_trickled_headers_get_the_connection_closed(slow_rig):
    """Slowloris: a byte every 0.2 s keeps the connection busy but never completes the head; the request timeout
    counts from connecting, not from the last byte, so the connection is closed within seconds."""
    with RawConnection(slow_rig.server) as connection:
        head = http_request("GET", "/healthz", {"X-Padding": "a" * 200})
        closed, after, sent = trickle_until_closed(connection, head)
        assert closed, f"still open after {after:.1f} s and {sent} trickled bytes"
        assert after < DEADLINE, f"closed only after {after:.1f} s"
        assert sent < len(head), "the whole head went through before the timeout"
    get_ok(slow_rig.server)


def incomplete_body_denial(rig, service_account: str) -> dict:
    """The bad_request denial of the authenticated request (by `service_account`) whose body never completed."""
    actor = f"spiffe://cluster.local/ns/default/sa/{service_account}"

    def find():
        return next((r for r in rig.audit_records() if r.get("actor") == actor and r["action"] == "deny"), None)

    record = wait_until(find, 5, interval=0.05, what=f"the denial of {actor}'s incomplete body")
    assert record["code"] == "bad_request" and record["outcome"] == "failure", record
    return record


def test_slowly_trickled_body_gets_the_connection_closed_and_audited(slow_rig):
    """The head arrives at once, the body a byte at a time: the connection is closed at the deadline and the
    issuance handler, which had authenticated the caller, records the refusal."""
    token = slow_rig.token(service_account="trickled-body")
    body = json.dumps({"csr": slow_rig.good_csr}).encode()
    with RawConnection(slow_rig.server) as connection:
        connection.send(
            http_request(
                "POST",
                "/v1/certificates",
                [
                    ("Content-Type", "application/json"),
                    ("Authorization", f"Bearer {token}"),
                    ("Content-Length", str(len(body))),
                ],
                b"",
                False,
            )
        )
        closed, after, sent = trickle_until_closed(connection, body)
        assert closed and after < DEADLINE, f"closed={closed} after {after:.1f} s"
        assert sent < len(body), "the whole body went through before the timeout"
        response = connection.read_response() if connection.buffer else None
        assert response is None or 400 <= response.status < 500, response
    incomplete_body_denial(slow_rig, "trickled-body")


@pytest.mark.parametrize("framing", ["content-length-lie", "chunked-never-ends"])
def test_body_that_never_completes_is_cut_off_and_audited(slow_rig, framing):
    token = slow_rig.token(service_account=framing)
    fields = [("Content-Type", "application/json"), ("Authorization", f"Bearer {token}")]
    if framing == "content-length-lie":
        request = http_request("POST", "/v1/certificates", [*fields, ("Content-Length", "1000")], b'{"csr": "', False)
    else:
        request = http_request(
            "POST", "/v1/certificates", [*fields, ("Transfer-Encoding", "chunked")], b'9\r\n{"csr": "\r\n', False
        )
    with RawConnection(slow_rig.server) as connection:
        connection.send(request)
        assert connection.wait_closed(DEADLINE), "an incomplete body kept the connection open"
    incomplete_body_denial(slow_rig, framing)
    get_ok(slow_rig.server)


def test_tls_handshake_then_nothing_is_closed(slow_rig):
    with RawConnection(slow_rig.server) as connection:
        assert connection.wait_closed(DEADLINE), "a connection that never sends a request stayed open"


@pytest.mark.parametrize("data", [b"", b"\x16\x03\x01\x02\x00\x01"], ids=["tcp-only", "partial-client-hello"])
def test_connection_that_never_finishes_the_tls_handshake_is_closed(slow_rig, data):
    received, closed = raw_tcp(slow_rig, data, timeout=DEADLINE)
    assert closed, "a connection stuck before the end of the TLS handshake stayed open"


def test_second_request_trickled_on_a_kept_alive_connection_is_cut_off(slow_rig):
    """After a response, a next request head sent slowly is bounded by --idle-timeout (2 s here; README:
    request_timeout covers the first request and each body, idle_timeout the gap and head that follow)."""
    with RawConnection(slow_rig.server) as connection:
        connection.send(http_request("GET", "/healthz"))
        first = connection.read_response()
        assert first is not None and first.status == 200
        closed, after, sent = trickle_until_closed(
            connection, http_request("GET", "/healthz", {"X-Padding": "b" * 200}), limit=DEADLINE + 1
        )
        assert closed and after < DEADLINE, f"closed={closed} after {after:.1f} s ({sent} bytes trickled)"


def test_many_slow_clients_do_not_starve_a_normal_one(slow_rig):
    """40 connections each holding half a request: a normal client is still served, and all 40 are closed."""
    connections = [RawConnection(slow_rig.server) for _ in range(40)]
    try:
        for connection in connections:
            connection.send(b"POST /v1/certificates HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
        assert_issued(slow_rig.post_csr(slow_rig.good_csr), WEB_ID)
        still_open = [c for c in connections if not c.wait_closed(DEADLINE)]
        assert not still_open, f"{len(still_open)} of 40 slow connections were not closed"
    finally:
        for connection in connections:
            connection.abort()


def test_a_normal_client_still_works_under_the_short_timeout(slow_rig):
    body = slow_rig.assert_serves()
    assert body["spiffe_id"] == WEB_ID


# --- the servers survived -------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["rig", "slow_rig"])
def test_server_survived_every_hostile_request(request, sigil, which):
    request.getfixturevalue(which).assert_survived(sigil)
