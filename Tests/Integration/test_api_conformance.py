"""API conformance: schemathesis generates requests from openapi.yaml and sends them over HTTPS (checked
against the data dir's bundle.pem) to a real local-mode `sigil serve`, with a dev token where the spec
asks for the bearer scheme. Every answer must be no 5xx, and have a status code, content type, headers
and body that openapi.yaml documents for the operation; refusals of schema-invalid input must be 4xx,
wrong methods 405 with `Allow`, and an issuance must not succeed without its credentials.

One pytest item per operation: `test_operation_conforms[POST /v1/certificates]`, … . A failure names
the check and prints a curl command that reproduces it.

Bounded and reproducible: a fixed seed, deterministic generation, at most MAX_EXAMPLES generated cases
per operation (plus the coverage phase's edge cases), no example database in the work tree."""
from __future__ import annotations

import pytest
import schemathesis
from schemathesis import checks

from sigil_harness import REPO_ROOT, WEB_ID, assert_issued, dev_token, python_csr, run

SPEC = REPO_ROOT / "openapi.yaml"
MAX_EXAMPLES = 50

# An explicit configuration, so that no schemathesis.toml found by walking up from the working
# directory changes what this test does.
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20261125,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none", "mode": "all"},
    }
)
schema = schemathesis.openapi.from_path(SPEC, config=CONFIG)

# Everything that compares a response with openapi.yaml, plus the negative checks that apply to a
# stateless API. Left out: positive_data_acceptance (a schema-valid body can still be refused on its
# meaning: a ttl_seconds the policy does not allow is a documented 400), and the stateful checks
# (use_after_free, ensure_resource_availability, object_level_authorization): nothing here is
# created and then read or deleted through the API.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
    checks.missing_required_header,
    checks.unsupported_method,
    checks.allow_header_conformance,
    checks.ignored_auth,
]
# ignored_auth re-sends an accepted request without its credentials: against a rate-limited server
# those probes would be counted too.
CHECKS_WITHOUT_PROBES = [check for check in CHECKS if check is not checks.ignored_auth]


class _Live:
    """What the module's server fixture learned, for the hooks below: schemathesis builds its cases
    outside pytest's fixtures."""

    token = ""
    csr = ""


@schema.auth().apply_to(method="POST", path="/v1/certificates")
class DevToken:
    """`Authorization: Bearer <dev token>` where openapi.yaml asks for the bearer scheme (schemathesis
    also sends requests without it, or with generated garbage, to check that it is enforced)."""

    def get(self, case, context):
        return _Live.token

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.hook("map_body")
def real_csr(context, body):
    """A generated `csr` string is never a CSR, so every request would stop at `csr_invalid` before the
    server looks at anything else. Where the body has a string `csr`, put a real one in its place: the
    rest of the generated body (ttl_seconds, extra members) then reaches policy and issuance. A body
    whose `csr` is missing or not a string (negative cases) is sent as generated."""
    if isinstance(body, dict) and isinstance(body.get("csr"), str):
        return {**body, "csr": _Live.csr}
    return body


def _serve_flags(sigil_bin) -> str:
    return run([sigil_bin, "serve", "--help"]).stdout


@pytest.fixture(scope="module")
def server(module_servers, tmp_path_factory, sigil, sigil_bin):
    # schemathesis sends bursts from one address: no rate limit, where this binary has one.
    unlimited = []
    if "--rate-limit-client" in _serve_flags(sigil_bin):
        unlimited = ["--rate-limit-client", "0", "--rate-limit-identity", "0"]
    server = module_servers(tmp_path_factory.mktemp("conformance") / "pki", *unlimited)
    _Live.token = dev_token(sigil, server.data_dir, "default", "web")
    _Live.csr = python_csr()[0]
    yield server
    _Live.token = _Live.csr = ""


@schema.parametrize()
def test_operation_conforms(case, server):
    case.call_and_validate(base_url=server.url, checks=CHECKS, verify=str(server.bundle), timeout=30)


def test_issuance_response_conforms(server):
    """The 201 path with a known-good request, whatever the generator drew: the `Issued` document,
    and (ignored_auth) the same request without the token, or with a wrong one, is refused."""
    case = schema["/v1/certificates"]["POST"].Case(
        body={"csr": python_csr()[0], "ttl_seconds": 600},
        headers={"Authorization": f"Bearer {_Live.token}", "Content-Type": "application/json"},
    )
    response = case.call_and_validate(base_url=server.url, checks=CHECKS, verify=str(server.bundle), timeout=30)
    assert response.status_code == 201, response.text
    assert_issued(response, WEB_ID)


def test_rate_limited_response_conforms(module_servers, tmp_path_factory, sigil, sigil_bin):
    """429 `rate_limited` as openapi.yaml documents it: problem+json and an integer `Retry-After`."""
    flags = _serve_flags(sigil_bin)
    if "--rate-limit-client-burst" not in flags:
        pytest.skip("this sigil binary has no issuance rate limit (serve --rate-limit-client-burst)")
    server = module_servers(
        tmp_path_factory.mktemp("conformance-429") / "pki", "--rate-limit-client", "0.1", "--rate-limit-client-burst", "1"
    )
    token = dev_token(sigil, server.data_dir, "default", "web")
    operation = schema["/v1/certificates"]["POST"]
    statuses = []
    for _ in range(5):  # one request's worth of burst, then refusals for the next 10 s
        case = operation.Case(
            body={"csr": python_csr()[0]}, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        )
        response = case.call_and_validate(
            base_url=server.url, checks=CHECKS_WITHOUT_PROBES, verify=str(server.bundle), timeout=30
        )
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert response.json()["code"] == "rate_limited", response.text
            break
    assert 429 in statuses, f"no 429 from a client limited to one request per 10 s: {statuses}"
