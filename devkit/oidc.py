"""A local stand-in for Google as an OIDC identity token issuer: signing keys, tokens, and the certificates URL.

Google signs the identity tokens that Cloud Scheduler (or ``gcloud auth print-identity-token``) sends with
RS256 keys whose X.509 certificates it publishes as ``{"<key id>": "<PEM>"}``. :class:`TokenIssuer` makes
such a key and signs tokens with google-auth's own signer (no network: the unit tier uses it);
:class:`CertsServer` publishes its certificates on loopback, so the function's ``INVOKER_CERTS_URL`` can point
at it and verification runs exactly as in production.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from devkit.loopback import BackgroundServer, JsonHandler, RequestRecord

GOOGLE_ISSUER = "https://accounts.google.com"
CERTS_PATH = "/oauth2/v1/certs"


class TokenIssuer:
    """One RSA signing key with a key id and a self-signed certificate, as Google publishes them."""

    def __init__(self, key_id: str | None = None) -> None:
        self.key_id = key_id or uuid.uuid4().hex
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "local-oidc-issuer")])
        now = dt.datetime.now(tz=dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        self.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()

    def certs(self) -> dict[str, str]:
        """The certificates document for this key alone."""
        return {self.key_id: self.certificate_pem}

    def sign(self, claims: dict[str, Any]) -> str:
        """A signed JWT (RS256, this key id in the header) with exactly ``claims``."""
        signer = crypt.RSASigner.from_string(self._private_pem, key_id=self.key_id)  # type: ignore[no-untyped-call]  # untyped in google-auth
        token: bytes = jwt.encode(signer, claims)  # type: ignore[no-untyped-call]  # untyped in google-auth
        return token.decode()

    def identity_token(self, email: str | None, audience: str, *, lifetime: int = 3600, **overrides: Any) -> str:
        """A token shaped like a Google-signed service-account identity token; ``overrides`` replace claims."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": GOOGLE_ISSUER,
            "aud": audience,
            "azp": "1234567890",
            "sub": "1234567890",
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + lifetime,
        }
        claims.update(overrides)
        return self.sign({k: v for k, v in claims.items() if v is not None})


class CertsServer(BackgroundServer):
    """Serves ``GET /oauth2/v1/certs`` with the published issuers' certificates; counts fetches."""

    def __init__(self, *issuers: TokenIssuer, host: str = "127.0.0.1", port: int = 0) -> None:
        """Publish ``issuers`` (``start`` binds the port)."""
        super().__init__(host, port)
        self._lock = threading.Lock()
        self._issuers = list(issuers)
        self._requests: list[RequestRecord] = []

    @property
    def certs_url(self) -> str:
        """The value for ``INVOKER_CERTS_URL``."""
        return self.origin + CERTS_PATH

    def publish(self, *issuers: TokenIssuer) -> None:
        """Replace the published keys (a key rotation)."""
        with self._lock:
            self._issuers = list(issuers)

    def document(self) -> dict[str, str]:
        """What the certificates URL answers now."""
        with self._lock:
            return {key_id: pem for issuer in self._issuers for key_id, pem in issuer.certs().items()}

    def record(self, record: RequestRecord) -> None:
        """Append to the request log (called by the handler)."""
        with self._lock:
            self._requests.append(record)

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of the request log (no headers)."""
        with self._lock:
            return list(self._requests)


class _Handler(JsonHandler):
    def handle_any(self, method: str) -> None:
        owner = self.server.owner
        assert isinstance(owner, CertsServer)  # narrows the type for mypy
        if method == "GET" and self.raw_path == CERTS_PATH:
            status, payload = 200, owner.document()
        else:
            status, payload = 404, {"error": "not found"}
        self.send_json(status, payload, headers={"Cache-Control": "public, max-age=3600"})
        owner.record(RequestRecord(method, self.raw_path, self.raw_query, status))


CertsServer.handler_class = _Handler
