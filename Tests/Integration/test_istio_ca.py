"""Istio's CA API (`sigil serve --grpc-listen`), judged by software Sigil did not write: grpcio (grpc C-core) with
stubs that grpcio-tools generates from the committed .proto, tokens minted by PyJWT as a Kubernetes projected
token for audience `istio-ca`, the shared conformance kit, Python's `ssl` and `cryptography`'s RFC 5280 verifier,
and a real Envoy doing mTLS with a certificate pair split as Istio's agent splits it."""
from __future__ import annotations

import datetime
import json
import socket
import ssl
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from istio_support import METHOD, IstioClient, assert_refused
from sigil_harness import (
    OTHER_ID,
    WEB_ID,
    Envoy,
    PostgresCluster,
    TokenIssuer,
    audit_records,
    free_port,
    psql,
    python_csr,
    wait_until,
    with_database,
    write_pem_chain,
)

ISSUER = "https://kubernetes.default.svc.cluster.local"
FRONTEND = "spiffe://cluster.local/ns/shop/sa/frontend"
BACKEND = "spiffe://cluster.local/ns/shop/sa/backend"
CODE = grpc.StatusCode


@pytest.fixture(scope="module")
def issuer(tmp_path_factory) -> TokenIssuer:
    issuer = TokenIssuer(ISSUER)
    issuer.add_key("rsa", "RS256")
    issuer.add_key("ec", "ES256")
    issuer.jwks_file = tmp_path_factory.mktemp("jwks") / "jwks.json"
    issuer.jwks_file.write_text(json.dumps(issuer.jwks()))
    return issuer


def istio_token(issuer: TokenIssuer, kid: str = "ec", namespace: str = "default", service_account: str = "web",
                audience=("istio-ca",), **claims) -> str:
    return issuer.token(kid, namespace=namespace, service_account=service_account, audience=audience, **claims)


def serve(servers, directory, issuer, *extra):
    return servers(directory / "pki", "--token-issuer", issuer.issuer, "--token-jwks", issuer.jwks_file,
                   "--grpc-listen", "127.0.0.1:0", *extra)


@pytest.fixture(scope="module")
def server(module_servers, issuer, tmp_path_factory):
    return serve(module_servers, tmp_path_factory.mktemp("istio"), issuer)


@pytest.fixture(scope="module")
def client(server):
    with IstioClient(server) as client:
        yield client


def records(sigil, server, **where) -> list[dict]:
    return [r for r in audit_records(sigil, "--data-dir", server.data_dir)
            if all(r.get(k) == v for k, v in where.items())]


def leaf_of(chain: list[str]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(chain[0].encode())


def lifetime(certificate: x509.Certificate) -> int:
    return int((certificate.not_valid_after_utc - certificate.not_valid_before_utc).total_seconds())


# --- issuance ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kid", ["rsa", "ec"])
def test_issues_the_token_identity_leaf_first_root_last(sigil, server, client, issuer, kid):
    csr, _ = python_csr()
    chain = client.create(csr, istio_token(issuer, kid), ttl=3600)
    assert len(chain) == 3, chain
    leaf, intermediate = (x509.load_pem_x509_certificate(pem.encode()) for pem in chain[:2])
    roots = x509.load_pem_x509_certificates(chain[2].encode())
    assert roots and [r.subject for r in roots] == [r.issuer for r in roots], "the last entry holds the roots"
    bundle = x509.load_pem_x509_certificates(server.bundle.read_bytes())
    assert {r.fingerprint(r.signature_hash_algorithm) for r in roots} == {
        r.fingerprint(r.signature_hash_algorithm) for r in bundle}
    assert leaf.issuer == intermediate.subject and intermediate.issuer == roots[0].subject
    uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier)
    assert uris == [WEB_ID]
    assert lifetime(leaf) == 3600 + 30  # the policy backdates notBefore by 30 s
    # cryptography's RFC 5280 path validation, from the leaf to the returned root.
    verifier = PolicyBuilder().store(Store(roots)).build_client_verifier()
    verified = verifier.verify(leaf, [intermediate])
    assert verified.subjects is not None

    [record] = records(sigil, server, serial=format(leaf.serial_number, "x").rjust(30, "0")) or [None]
    assert record is not None, "no audit record names the issued serial"
    assert record["action"] == "issue" and record["outcome"] == "success" and record["subject"] == WEB_ID
    assert record["reason"] == "istio cluster=Kubernetes ttl_requested=3600s ttl_granted=3600s"
    assert record["client_address"] == "127.0.0.1" and len(record["token_hmac"]) == 64


def test_the_issued_chain_passes_the_conformance_kit(server, client, issuer, assert_conformant, tmp_path):
    csr, key = python_csr()
    chain = client.create(csr, istio_token(issuer))
    chain_file = write_pem_chain(tmp_path / "cert-chain.pem", chain[:-1])
    root_file = write_pem_chain(tmp_path / "root-cert.pem", [chain[-1]])
    key_file = tmp_path / "key.pem"
    key_file.write_text(key)
    assert_conformant(chain_file, root_file, key_file, WEB_ID)


def test_a_lifetime_above_the_maximum_is_granted_the_maximum_and_recorded(sigil, server, client, issuer):
    csr, _ = python_csr()
    leaf = leaf_of(client.create(csr, istio_token(issuer), ttl=7 * 86400))
    assert lifetime(leaf) == 86400 + 30  # the default maximum, 24 h
    [record] = records(sigil, server, serial=format(leaf.serial_number, "x").rjust(30, "0"))
    assert record["reason"] == "istio cluster=Kubernetes ttl_requested=604800s ttl_granted=86400s"


def test_a_lifetime_past_the_signing_authority_is_cut_to_its_end(sigil, start_server, issuer, tmp_path):
    """With 12-hour intermediates, the 24 h Istio's agent asks for would outlive the signer: granted up to its end."""
    config = tmp_path / "sigil.json"
    config.write_text(json.dumps({"authority": {"intermediate_ttl": "12h"}}))
    server = serve(start_server, tmp_path, issuer, "--config", config)
    with IstioClient(server) as client:
        leaf = leaf_of(client.create(python_csr()[0], istio_token(issuer), ttl=86400))
    assert 11 * 3600 < lifetime(leaf) <= 12 * 3600 + 30
    [record] = records(sigil, server, serial=format(leaf.serial_number, "x").rjust(30, "0"))
    granted = int(record["reason"].split("ttl_granted=")[1].rstrip("s"))
    assert record["reason"].startswith("istio cluster=Kubernetes ttl_requested=86400s ") and granted < 12 * 3600


def test_no_lifetime_is_the_policy_default(sigil, server, client, issuer):
    csr, _ = python_csr()
    leaf = leaf_of(client.create(csr, istio_token(issuer), ttl=0))
    assert lifetime(leaf) == 3600 + 30
    [record] = records(sigil, server, serial=format(leaf.serial_number, "x").rjust(30, "0"))
    assert record["reason"] == "istio cluster=Kubernetes ttl_requested=0s ttl_granted=3600s"


def test_cluster_id_comes_from_the_request_metadata_when_no_header_names_it(sigil, server, client, issuer):
    csr, _ = python_csr()
    leaf = leaf_of(client.create(csr, istio_token(issuer), cluster=None, metadata={"ClusterID": "east"}))
    [record] = records(sigil, server, serial=format(leaf.serial_number, "x").rjust(30, "0"))
    assert record["reason"].startswith("istio cluster=east ")


def test_the_grpc_server_certificate_verifies_against_the_bundle(server):
    host, port = server.grpc_target.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(server.bundle))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "h2"
            der = tls.getpeercert(binary_form=True)  # verified against the bundle, for the name localhost
    leaf = x509.load_der_x509_certificate(der)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    # The same certificate as the HTTPS API's (one server identity, renewed together).
    https = ssl.get_server_certificate(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    assert x509.load_pem_x509_certificate(https.encode()) == leaf


def test_tokens_are_checked_for_each_api_s_own_audience(server, client, issuer):
    csr, _ = python_csr()
    # A token for the HTTPS API (aud sigil) is refused here, and an Istio token is refused there.
    assert_refused(lambda: client.create(csr, istio_token(issuer, audience=("sigil",))),
                   CODE.UNAUTHENTICATED, "audience_mismatch")
    response = server.post_csr(csr, istio_token(issuer))
    assert response.status_code == 401 and response.json()["code"] == "audience_mismatch"


# --- renewal by mTLS -----------------------------------------------------------------------------------------


def test_a_sigil_certificate_renews_over_mtls_without_a_token(sigil, server, client, issuer):
    csr, key = python_csr()
    chain = client.create(csr, istio_token(issuer))
    first = leaf_of(chain)
    with IstioClient(server, certificate="".join(chain[:-1]).encode(), key=key.encode()) as mtls:
        renewed = leaf_of(mtls.create(python_csr()[0], token=None))
    assert renewed.serial_number != first.serial_number
    [record] = records(sigil, server, serial=format(renewed.serial_number, "x").rjust(30, "0"))
    assert record["action"] == "renew"
    assert record["reason"].startswith(f"renewal of {format(first.serial_number, 'x').rjust(30, '0')}; istio ")


def test_a_certificate_from_another_sigil_ca_does_not_renew(sigil, server, tmp_path):
    """A real X509-SVID for the same SPIFFE ID, from another Sigil CA of the same trust domain."""
    other = tmp_path / "other-pki"
    sigil.ok("init", "--data-dir", other)
    csr, key = python_csr()
    (tmp_path / "foreign.csr").write_text(csr)
    sigil.ok("issue", "--data-dir", other, "--csr", tmp_path / "foreign.csr", "--spiffe-id", WEB_ID,
             "--out", tmp_path / "foreign.pem")
    foreign = (tmp_path / "foreign.pem").read_bytes()
    with IstioClient(server, certificate=foreign, key=key.encode()) as mtls:
        assert_refused(lambda: mtls.create(python_csr()[0]), CODE.UNAUTHENTICATED, "unauthenticated")


# --- refusals: each with its gRPC code, Sigil's code and a denial record ----------------------------------


def refusal_cases(issuer):
    expired_claims = issuer.claims(namespace="default", service_account="web", audience=("istio-ca",), ttl=-600)
    return {
        "no credentials": (lambda c, csr: c.create(csr), CODE.UNAUTHENTICATED, "unauthenticated"),
        "expired token": (lambda c, csr: c.create(csr, issuer.sign(expired_claims, "ec")),
                          CODE.UNAUTHENTICATED, "token_expired"),
        "not a JWT": (lambda c, csr: c.create(csr, "not-a-jwt"), CODE.UNAUTHENTICATED, "token_invalid"),
        "another identity's CSR": (lambda c, csr: c.create(python_csr(spiffe_id=OTHER_ID)[0], istio_token(issuer)),
                                   CODE.PERMISSION_DENIED, "identity_mismatch"),
        "garbage CSR": (lambda c, csr: c.create("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", istio_token(issuer)),
                        CODE.INVALID_ARGUMENT, "csr_invalid"),
        "below the minimum lifetime": (lambda c, csr: c.create(csr, istio_token(issuer), ttl=30),
                                       CODE.INVALID_ARGUMENT, "ttl_out_of_range"),
        "negative lifetime": (lambda c, csr: c.create(csr, istio_token(issuer), ttl=-5),
                              CODE.INVALID_ARGUMENT, "ttl_out_of_range"),
        "impersonation": (lambda c, csr: c.create(csr, istio_token(issuer),
                                                  metadata={"ImpersonatedIdentity": BACKEND}),
                          CODE.PERMISSION_DENIED, "policy_denied"),
    }


@pytest.mark.parametrize("case", ["no credentials", "expired token", "not a JWT", "another identity's CSR",
                                  "garbage CSR", "below the minimum lifetime", "negative lifetime", "impersonation"])
def test_refusals_map_to_grpc_codes_and_are_audited(sigil, server, client, issuer, case):
    call, code, sigil_code = refusal_cases(issuer)[case]
    before = len(records(sigil, server, action="deny"))
    csr, _ = python_csr()
    assert_refused(lambda: call(client, csr), code, sigil_code)
    denials = records(sigil, server, action="deny")[before:]
    assert [d["code"] for d in denials] == [sigil_code], denials
    assert "istio cluster=Kubernetes" in denials[0]["reason"]
    # And the server still serves.
    assert client.create(csr, istio_token(issuer))


@pytest.fixture(scope="module")
def strict(module_servers, issuer, tmp_path_factory):
    """Only ClusterID `east`; one issuance a minute per identity after a burst of three."""
    return serve(module_servers, tmp_path_factory.mktemp("istio-strict"), issuer, "--istio-cluster-id", "east",
                 "--rate-limit-identity", "0.0167", "--rate-limit-identity-burst", "3")


def test_a_cluster_outside_the_allowed_list_is_permission_denied(sigil, strict, issuer):
    csr, _ = python_csr(spiffe_id="spiffe://cluster.local/ns/default/sa/clusters")
    token = istio_token(issuer, service_account="clusters")
    with IstioClient(strict) as client:
        assert client.create(csr, token, cluster="east")
        for cluster in ("west", None):
            assert_refused(lambda: client.create(csr, token, cluster=cluster), CODE.PERMISSION_DENIED,
                           "policy_denied")
    denials = records(sigil, strict, action="deny", code="policy_denied")
    assert {d["reason"].split("; ")[-1] for d in denials} == {"istio cluster=west", "istio cluster=-"}


def test_over_the_identity_rate_limit_is_resource_exhausted(sigil, strict, issuer):
    csr, _ = python_csr()
    token = istio_token(issuer)
    with IstioClient(strict) as client:
        for _ in range(3):
            assert client.create(csr, token, cluster="east")
        assert_refused(lambda: client.create(csr, token, cluster="east"), CODE.RESOURCE_EXHAUSTED, "rate_limited")
    assert records(sigil, strict, action="deny", code="rate_limited")


def test_audit_unavailable_is_unavailable_and_nothing_is_issued(sigil, start_server, issuer, tmp_path):
    """The store is a throw-away PostgreSQL cluster of this test's own, stopped under the running server."""
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql (Debian package postgresql)")
    cluster = PostgresCluster()
    try:
        cluster.start()
        assert psql(cluster.server_url, "CREATE DATABASE sigil").returncode == 0
        store = with_database(cluster.server_url, "sigil", sslmode=True)
        server = serve(start_server, tmp_path, issuer, "--store", store)
        csr, _ = python_csr()
        with IstioClient(server) as client:
            assert client.create(csr, istio_token(issuer))
            cluster.stop()
            assert_refused(lambda: client.create(csr, istio_token(issuer), timeout=120), CODE.UNAVAILABLE,
                           "audit_unavailable")
            cluster.start()  # back, so that the server stops cleanly and its chain can be read
            assert client.create(csr, istio_token(issuer), timeout=120)
        assert server.stop() == 0
        issued = [r for r in audit_records(sigil, "--data-dir", server.data_dir, "--store", store) if r["action"] == "issue"]
        assert len(issued) == 2, "only the two answered issuances are recorded"
        sigil.ok("audit", "verify", "--data-dir", server.data_dir, "--store", store)
    finally:
        cluster.destroy()


# --- a real Envoy -----------------------------------------------------------------------------------------------


def test_envoy_accepts_an_istio_style_pair_for_mtls(server, client, issuer, tmp_path):
    """The backend Envoy serves with Istio-issued files (cert-chain.pem, key.pem, root-cert.pem as Istio's agent
    writes them) and requires a client certificate with the frontend's URI SAN; the client is Python's `ssl`
    with the frontend's Istio-issued pair."""
    files = {}
    for name, identity in (("backend", BACKEND), ("frontend", FRONTEND)):
        namespace, account = identity.split("/")[-3], identity.split("/")[-1]
        csr, key = python_csr(spiffe_id=identity)
        chain = client.create(csr, istio_token(issuer, namespace=namespace, service_account=account))
        directory = tmp_path / name
        directory.mkdir()
        write_pem_chain(directory / "cert-chain.pem", chain[:-1])
        write_pem_chain(directory / "root-cert.pem", [chain[-1]])
        (directory / "key.pem").write_text(key)
        files[name] = directory
    port, admin = free_port(), free_port()
    tls = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "require_client_certificate": True,
        "common_tls_context": {
            "tls_certificates": [{"certificate_chain": {"filename": str(files["backend"] / "cert-chain.pem")},
                                  "private_key": {"filename": str(files["backend"] / "key.pem")}}],
            "validation_context": {
                "trusted_ca": {"filename": str(files["backend"] / "root-cert.pem")},
                "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": FRONTEND}}],
            },
        },
    }
    route = {"name": "backend", "virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "backend\n"}}}]}]}
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                    "HttpConnectionManager",
           "stat_prefix": "backend", "route_config": route,
           "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    config = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [{
            "name": "backend", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls},
                               "filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm}]}]}]},
    }
    frontend = files["frontend"]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # an SVID names a SPIFFE ID, checked below, not a host
    context.load_verify_locations(frontend / "root-cert.pem")
    with Envoy(config, tmp_path / "envoy", name="istio-backend") as envoy:
        envoy.wait_until_ready()
        context.load_cert_chain(frontend / "cert-chain.pem", frontend / "key.pem")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(raw) as tls:
            peer = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
            assert peer.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
                x509.UniformResourceIdentifier) == [BACKEND]
            tls.sendall(b"GET / HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"backend\n"), answer
        # Without a client certificate Envoy refuses the handshake.
        anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        anonymous.check_hostname = False
        anonymous.load_verify_locations(frontend / "root-cert.pem")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, anonymous.wrap_socket(raw) as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: backend\r\n\r\n")
                if not tls.recv(65536):
                    raise ConnectionError("closed without an answer")


def test_metrics_count_the_api(server, client, issuer):
    client.create(python_csr()[0], istio_token(issuer))
    text = server.get("/metrics").text
    assert any(METHOD in line and 'code="201"' in line for line in text.splitlines()), text


def test_the_listener_obeys_graceful_shutdown(sigil, start_server, issuer, tmp_path):
    server = serve(start_server, tmp_path, issuer)
    with IstioClient(server) as client:
        assert client.create(python_csr()[0], istio_token(issuer))
    assert server.stop() == 0
    stopped = [r for r in audit_records(sigil, "--data-dir", server.data_dir) if r["action"] == "stop"]
    assert stopped, "no stop record after SIGTERM"
    wait_until(lambda: not _accepts(server.grpc_target), 10, "the gRPC port to close")


def _accepts(target: str) -> bool:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        return True
    except OSError:
        return False


def test_no_certificate_leaves_on_a_token_not_yet_valid(server, client, issuer):
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    early = issuer.claims(audience=("istio-ca",), now=now + 3600)
    assert_refused(lambda: client.create(python_csr()[0], issuer.sign(early, "rsa")), CODE.UNAUTHENTICATED,
                   "token_invalid")
