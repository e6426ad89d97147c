"""A client of Istio's CA API (`sigil serve --grpc-listen`) built from the committed .proto by grpcio-tools, as a
third-party gRPC stack (grpc C-core) would call it: TLS verified against the server's bundle, ALPN h2, a bearer
token and the `ClusterID` header as Istio's agent sends them."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import grpc
import pytest

from sigil_harness.ledger import LEDGER

PROTO_DIR = Path(__file__).resolve().parents[2] / "Sources/SigilIstioGRPC/proto"
METHOD = "/istio.v1.auth.IstioCertificateService/CreateCertificate"

_stubs: tuple | None = None


def stubs():
    """(ca_pb2, ca_pb2_grpc), generated once per process by grpcio-tools from the committed ca.proto."""
    global _stubs
    if _stubs is None:
        from grpc_tools import protoc

        out = tempfile.mkdtemp(prefix="sigil-istio-stubs-")
        status = protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--grpc_python_out={out}",
                              "security/v1alpha1/ca.proto"])
        assert status == 0, f"grpc_tools.protoc failed on {PROTO_DIR}/security/v1alpha1/ca.proto"
        sys.path.insert(0, out)
        from security.v1alpha1 import ca_pb2, ca_pb2_grpc

        _stubs = (ca_pb2, ca_pb2_grpc)
    return _stubs


class IstioClient:
    """One gRPC channel to the server's Istio CA API; `certificate`/`key` (PEM) make it an mTLS channel."""

    def __init__(self, server, certificate: bytes | None = None, key: bytes | None = None):
        assert server.grpc_target, "the server runs without --grpc-listen"
        credentials = grpc.ssl_channel_credentials(
            root_certificates=server.bundle.read_bytes(), private_key=key, certificate_chain=certificate)
        self.channel = grpc.secure_channel(server.grpc_target, credentials)
        self.stub = stubs()[1].IstioCertificateServiceStub(self.channel)

    def request(self, csr_pem: str, ttl: int = 0, metadata: dict | None = None):
        request = stubs()[0].IstioCertificateRequest(csr=csr_pem, validity_duration=ttl)
        if metadata:
            request.metadata.update(metadata)
        return request

    def create(self, csr_pem: str, token: str | None = None, ttl: int = 0, cluster: str | None = "Kubernetes",
               metadata: dict | None = None, headers: list[tuple[str, str]] | None = None, timeout: float = 30):
        """CreateCertificate; returns the response's cert_chain, or raises grpc.RpcError."""
        call_metadata = list(headers or [])
        if token is not None:
            LEDGER.token(token, "a bearer token sent to Istio's CA API")
            call_metadata.append(("authorization", f"Bearer {token}"))
        if cluster is not None:
            call_metadata.append(("clusterid", cluster))
        response = self.stub.CreateCertificate(self.request(csr_pem, ttl, metadata), metadata=call_metadata,
                                               timeout=timeout)
        return list(response.cert_chain)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "IstioClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def assert_refused(call, code: grpc.StatusCode, sigil_code: str) -> grpc.RpcError:
    """`call()` fails with gRPC status `code` and a message that starts with Sigil's stable code."""
    with pytest.raises(grpc.RpcError) as raised:
        call()
    error = raised.value
    assert error.code() == code, f"expected {code} ({sigil_code}), got {error.code()}: {error.details()}"
    assert (error.details() or "").startswith(f"{sigil_code}: "), f"status message {error.details()!r}"
    return error
