"""When the rotator's own cluster credential expires, read from the kubeconfig without using it.

A ServiceAccount token's expiry is its JWT ``exp`` claim; the payload is decoded without checking the
signature, because it is only read for its expiry and the service account it names (the API server, not
this code, decides whether the token is good). A client certificate's expiry is its ``notAfter``, read
with ``cryptography`` (already in the runtime lock, through google-auth). A token without ``exp`` (a
legacy Secret-based token) or one that is not a JWT never expires as far as the rotator can tell: its
expiry is None and it is never at risk. Nothing here holds, logs or returns the credential itself.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from cryptography import x509

from rotator.kubeconfig import ClusterAccess
from rotator.secret import SecretStr

_SERVICE_ACCOUNT_PREFIX: Final = "system:serviceaccount:"
_JWT_PARTS: Final = 3
_MAX_CLAIMS_BYTES: Final = 64 * 1024


@dataclass(frozen=True)
class ServiceAccountRef:
    """The service account a token belongs to: the one a TokenRequest renews it for."""

    namespace: str
    name: str


@dataclass(frozen=True)
class Credential:
    """What the kubeconfig authenticates with, and when it stops working (None: not known to expire)."""

    kind: Literal["token", "certificate"]
    expires_at: datetime | None
    account: ServiceAccountRef | None = None
    audiences: tuple[str, ...] = ()

    def seconds_left(self, now: datetime) -> int | None:
        """Whole seconds until expiry (negative once expired), or None."""
        return None if self.expires_at is None else round((self.expires_at - now).total_seconds())

    def at_risk(self, now: datetime, margin: timedelta) -> bool:
        """Expires within ``margin`` (or already has); a credential without an expiry never is."""
        return self.expires_at is not None and self.expires_at - now <= margin

    def to_json(self, now: datetime) -> dict[str, Any]:
        """The status fields: kind, expiry (RFC 3339, UTC) and seconds left, never the credential."""
        return {
            "credential_kind": self.kind,
            "credential_expires_at": self.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") if self.expires_at else None,
            "credential_seconds_left": self.seconds_left(now),
        }


def credential_of(access: ClusterAccess) -> Credential:
    """The credential the API server sees: the client certificate when there is one, else the token.

    The API server tries the client certificate before a bearer token, so a kubeconfig with both is
    reported by its certificate.
    """
    if access.client_cert_pem is not None:
        return Credential("certificate", certificate_not_after(access.client_cert_pem))
    claims = token_claims(access.token) if access.token is not None else {}
    return Credential(
        "token",
        _expiry(claims.get("exp")),
        service_account_of(claims),
        _audiences(claims.get("aud")),
    )


def token_claims(token: SecretStr) -> dict[str, Any]:
    """The JWT payload's claims, unverified; empty when the token is not a JWT (an opaque token)."""
    parts = token.reveal().split(".")
    if len(parts) != _JWT_PARTS or len(parts[1]) > _MAX_CLAIMS_BYTES:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return {}
    return claims if isinstance(claims, dict) else {}


def service_account_of(claims: dict[str, Any]) -> ServiceAccountRef | None:
    """The service account of a Kubernetes-issued token: its ``kubernetes.io`` claim, else its ``sub``."""
    scoped = claims.get("kubernetes.io")
    if isinstance(scoped, dict):
        namespace, account = scoped.get("namespace"), scoped.get("serviceaccount")
        name = account.get("name") if isinstance(account, dict) else None
        if isinstance(namespace, str) and isinstance(name, str) and namespace and name:
            return ServiceAccountRef(namespace, name)
    subject = claims.get("sub")
    if isinstance(subject, str) and subject.startswith(_SERVICE_ACCOUNT_PREFIX):
        namespace, _, name = subject.removeprefix(_SERVICE_ACCOUNT_PREFIX).partition(":")
        if namespace and name and ":" not in name:
            return ServiceAccountRef(namespace, name)
    return None


def certificate_not_after(pem: SecretStr) -> datetime | None:
    """The ``notAfter`` of the first certificate in ``pem`` (the client's own; a chain may follow).

    None when it cannot be parsed here: TLS already loaded it, so the cluster is still usable, and the
    status says the expiry is unknown rather than failing the cluster.
    """
    try:
        return x509.load_pem_x509_certificate(pem.reveal().encode()).not_valid_after_utc
    except ValueError:
        return None


def _expiry(exp: object) -> datetime | None:
    """``exp`` as a time; a missing or unusable value (a legacy token has none) means no known expiry."""
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    try:
        return datetime.fromtimestamp(exp, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _audiences(aud: object) -> tuple[str, ...]:
    """``aud`` is a string or a list of strings (RFC 7519 §4.1.3)."""
    if isinstance(aud, str):
        return (aud,)
    if isinstance(aud, list):
        return tuple(a for a in aud if isinstance(a, str))
    return ()
