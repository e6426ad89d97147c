#!/usr/bin/env python3
"""Writes the seed corpus of `sigil-fuzz` into Tests/Fuzz/corpus/<target>/ (run with the test venv:
`.venv/bin/python Tests/Fuzz/make-seeds.py`). Keys are made fresh and thrown away; nothing here is secret.
Seeds are small, valid or nearly valid inputs that reach deep into each parser; libFuzzer mutates from them."""
from __future__ import annotations

import base64
import datetime
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CORPUS = Path(__file__).resolve().parent / "corpus"
ISTIO_PROTO = Path(__file__).resolve().parents[2] / "Sources/SigilIstioGRPC/proto"
WEB = "spiffe://cluster.local/ns/default/sa/web"


def write(target: str, data: bytes | str) -> None:
    data = data.encode() if isinstance(data, str) else data
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def keys():
    return {
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "p521": ec.generate_private_key(ec.SECP521R1()),
        "k256": ec.generate_private_key(ec.SECP256K1()),
        "rsa2048": rsa.generate_private_key(65537, 2048),
        "rsa1024": rsa.generate_private_key(65537, 1024),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }


def csr(key, sans, ca=False, cn=None):
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def main() -> None:
    k = keys()
    uri = x509.UniformResourceIdentifier
    requests = [
        csr(k["p256"], [uri(WEB)]),
        csr(k["p384"], [uri(WEB), x509.DNSName("web.default.svc")]),
        csr(k["rsa2048"], [uri(WEB)], cn="web"),
        csr(k["ed25519"], [uri(WEB)]),
        csr(k["k256"], [uri(WEB)]),
        csr(k["p521"], [uri(WEB), uri("spiffe://cluster.local/ns/default/sa/other")]),
        csr(k["rsa1024"], [uri(WEB), x509.IPAddress(__import__("ipaddress").ip_address("10.0.0.1")), x509.RFC822Name("a@b.c")]),
        csr(k["p256"], [uri(WEB)], ca=True),
        csr(k["p256"], []),
    ]
    for request in requests:
        write("csr-der", request.public_bytes(serialization.Encoding.DER))
        pem = request.public_bytes(serialization.Encoding.PEM).decode()
        write("csr-pem", pem)
        write("pem", pem)
        write("request", json.dumps({"csr": pem}))
        write("request", json.dumps({"csr": pem, "ttl_seconds": 600}))
    for body in ['{"csr": 1}', '{"csr": "x", "ttl_seconds": -1}', '{"csr": "", "ttl_seconds": 1e400}', "[]", '{"csr": null}',
                 '{"csr": "a", "csr": "b"}', '{"csr": "\\u0000"}']:
        write("request", body)

    # A root, an intermediate and a leaf, as Sigil makes them.
    now = datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc)
    root_key, int_key = k["p256"], k["p384"]
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster.local"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    def cert(subject, issuer, public, signer, ca, sans=(), path=None):
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=path), critical=True)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=True)
        if not ca:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        return builder.sign(signer, hashes.SHA256())
    root = cert(name("root"), name("root"), root_key.public_key(), root_key, True, [uri("spiffe://cluster.local")], 1)
    intermediate = cert(name("intermediate"), root.subject, int_key.public_key(), root_key, True, [uri("spiffe://cluster.local")], 0)
    leaf = cert(x509.Name([]), intermediate.subject, k["rsa2048"].public_key(), int_key, False, [uri(WEB), x509.DNSName("web")])
    for certificate in (root, intermediate, leaf):
        write("certificate", certificate.public_bytes(serialization.Encoding.DER))
        write("pem", certificate.public_bytes(serialization.Encoding.PEM))
    write("pem", b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, intermediate, root)))
    write("pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    write("pem", "-----BEGIN X-----\n\n-----END Y-----\n")

    for text in [WEB, "spiffe://cluster.local", "spiffe://td/a/b/c", "spiffe://TD/ns", "spiffe://td/ns/../x", "spiffe://td//x",
                 "spiffe://td/ns/default/sa/web/", "spiffe://user@td/x", "spiffe://td:443/x", "spiffe://td/x?q#f", "http://td/x",
                 "spiffe://td/%41", "spiffe://" + "a" * 255 + "/x", "spiffe://td/" + "b" * 2040, "spiffe://xn--bcher-kva.example/x"]:
        write("spiffe-id", text)

    # Tokens shaped like projected service-account tokens (signed by keys not in the fuzz JWKS) and headers
    # the verifier must refuse.
    claims = {
        "iss": "https://kubernetes.default.svc", "aud": ["sigil"], "sub": "system:serviceaccount:default:web",
        "exp": 1_800_000_600, "iat": 1_800_000_000, "nbf": 1_800_000_000,
        "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "web", "uid": "u"}, "pod": {"name": "p", "uid": "v"}},
    }
    write("jwt", jwt.encode(claims, k["rsa2048"], algorithm="RS256", headers={"kid": "rsa"}))
    write("jwt", jwt.encode(claims, k["p256"], algorithm="ES256", headers={"kid": "ec"}))
    write("jwt", jwt.encode(claims, k["rsa2048"], algorithm="PS256", headers={"kid": "rsa"}))
    write("jwt", jwt.encode(claims, k["p256"], algorithm="ES256", headers={"kid": "rsa"}))
    write("jwt", jwt.encode(claims, k["rsa2048"], algorithm="RS256", headers={"kid": "rsa", "jku": "https://x"}))
    write("jwt", jwt.encode({**claims, "aud": "sigil"}, "secret", algorithm="HS256", headers={"kid": "rsa"}))
    b64 = lambda obj: base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    write("jwt", f"{b64({'alg': 'none', 'kid': 'rsa'})}.{b64(claims)}.")
    write("jwt", f"{b64({'alg': 'RS256', 'kid': 'rsa'})}.{b64(claims)}.AAAA")
    write("jwt", "a.b.c")
    istio_seeds([r.public_bytes(serialization.Encoding.PEM).decode() for r in requests])


def istio_seeds(csr_pems: list[str]) -> None:
    """CreateCertificate requests as Istio's agent and ztunnel send them, encoded by protoc's Python output."""
    from google.protobuf import struct_pb2
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as out:
        assert protoc.main(["protoc", f"-I{ISTIO_PROTO}", f"--python_out={out}", "security/v1alpha1/ca.proto"]) == 0
        sys.path.insert(0, out)
        from security.v1alpha1 import ca_pb2
    for pem in csr_pems:
        metadata = struct_pb2.Struct()
        metadata.update({"ClusterID": "Kubernetes", "WorkloadName": "web", "WorkloadIP": "10.0.0.1"})
        write("istio", ca_pb2.IstioCertificateRequest(csr=pem, validity_duration=86400, metadata=metadata).SerializeToString())
        write("istio", ca_pb2.IstioCertificateRequest(csr=pem).SerializeToString())
    nested = struct_pb2.Struct()
    nested.update({"ImpersonatedIdentity": "spiffe://cluster.local/ns/a/sa/b", "a": {"b": {"c": [1, "x", None, True]}}})
    write("istio", ca_pb2.IstioCertificateRequest(csr=csr_pems[0], validity_duration=-1, metadata=nested).SerializeToString())


if __name__ == "__main__":
    main()
