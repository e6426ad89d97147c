"""Service-account tokens: minted by PyJWT as a Kubernetes-like issuer would, or by `sigil dev token`."""
from __future__ import annotations

import json
import secrets
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .ledger import LEDGER, b64url
from .process import Sigil

# --- tokens minted by a third-party library (PyJWT) -------------------------------------------------


class TokenIssuer:
    """A Kubernetes-like service-account token issuer: RSA/EC signing keys with kids, a JWKS of their
    public halves, and projected-token-shaped JWTs signed by PyJWT."""

    def __init__(self, issuer: str):
        self.issuer = issuer
        self.keys: dict[str, tuple[object, str]] = {}  # kid -> (private key, default alg)
        self.published: list[str] = []  # kids in the served JWKS

    def add_key(self, kid: str, kind: str, publish: bool = True) -> str:
        if kind[:2] in ("RS", "PS"):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif kind in ("ES256", "ES384"):
            key = ec.generate_private_key(ec.SECP256R1() if kind == "ES256" else ec.SECP384R1())
        else:
            raise ValueError(kind)
        self.keys[kid] = (key, kind)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        LEDGER.private_key(pem.decode(), f"TokenIssuer signing key {kid}")
        if publish:
            self.published.append(kid)
        return kid

    def jwks(self) -> dict:
        keys = []
        for kid in self.published:
            key, alg = self.keys[kid]
            algorithm = jwt.algorithms.ECAlgorithm if alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
            jwk = algorithm.to_jwk(key.public_key(), as_dict=True)
            jwk.update(kid=kid, use="sig", alg=alg)
            keys.append(jwk)
        return {"keys": keys}

    def claims(
        self, namespace: str = "default", service_account: str = "web", audience=("sigil",), ttl: int = 600, now: int | None = None
    ) -> dict:
        now = int(time.time()) if now is None else now
        return {
            "iss": self.issuer,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "aud": list(audience),
            "exp": now + ttl,
            "iat": now,
            "nbf": now,
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": service_account, "uid": str(uuid.uuid4())},
                "pod": {"name": f"{service_account}-{secrets.token_hex(3)}", "uid": str(uuid.uuid4())},
            },
        }

    def sign(self, claims: dict, kid: str, alg: str | None = None, headers: dict | None = None) -> str:
        key, default_alg = self.keys[kid]
        token = jwt.encode(claims, key, algorithm=alg or default_alg, headers={"kid": kid, **(headers or {})})
        LEDGER.token(token, f"TokenIssuer token ({kid})")
        return token

    def token(self, kid: str, **claim_args) -> str:
        return self.sign(self.claims(**claim_args), kid)


def unsigned_jwt(header: dict, claims: dict) -> str:
    """header.payload (base64url JSON), to sign by hand for the attacks PyJWT refuses to make."""
    return b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())


def dev_token(sigil: "Sigil", data_dir: Path, namespace: str = "default", service_account: str = "web", *extra) -> str:
    return sigil.ok(
        "dev", "token", "--data-dir", data_dir, "--namespace", namespace, "--service-account", service_account, *extra
    ).stdout.strip()
