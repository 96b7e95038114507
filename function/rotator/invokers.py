"""Optional in-app caller verification: a Google-signed OIDC identity token from an allowed e-mail.

Behind Google's front door the invoker IAM role decides who may call. Deployments without it (Cloud Run with
unauthenticated access, another scheduler, a local network) set ``ALLOWED_INVOKERS`` and
``INVOKER_AUDIENCE``; then every request needs ``Authorization: Bearer <ID token>``, checked here with
google-auth's own verification (signature against Google's published certificates, expiry, audience) plus
the issuer, ``email_verified`` and the e-mail. A refused caller gets 401 (no or an invalid token) or 403
(a valid token of somebody else), and the token itself is never repeated in an answer or a log line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

import google.auth.exceptions
import google.auth.transport
import google.auth.transport.requests
import requests
from google.oauth2 import id_token

from rotator.config import InvokerPolicy
from rotator.errors import BadRequestError, RotatorError

log = logging.getLogger(__name__)

#: How long fetched certificates are reused: Google publishes a new key days before signing with it.
CERTS_TTL_SECONDS: Final = 300.0
_FETCH_TIMEOUT_SECONDS: Final = 10.0
_CLOCK_SKEW_SECONDS: Final = 10
_MAX_TOKEN_CHARS: Final = 4096
_ISSUERS: Final = frozenset({"accounts.google.com", "https://accounts.google.com"})
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="ccr-pull-secret-rotator"'}


@dataclass(frozen=True)
class _Cached:
    response: google.auth.transport.Response
    expires: float


class CachingRequest(google.auth.transport.Request):
    """google-auth's HTTP transport, reusing a successful GET of the same URL for ``ttl`` seconds.

    ``id_token.verify_token`` fetches the certificates on every call; one fetch per request would put
    Google's certificate endpoint on the path of every rotation. Redirects are never followed.
    """

    def __init__(
        self,
        inner: google.auth.transport.Request | None = None,
        *,
        ttl: float = CERTS_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if inner is None:
            session = requests.Session()
            session.max_redirects = 0
            inner = google.auth.transport.requests.Request(session)
        self._inner = inner
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, _Cached] = {}

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,  # noqa: ANN401 - google-auth's transport signature
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,  # noqa: ANN401 - google-auth's transport signature
    ) -> google.auth.transport.Response:
        """Answer from the cache when a fresh copy of this GET is held; otherwise fetch (and keep a 200)."""
        if method == "GET" and body is None:
            with self._lock:
                cached = self._cache.get(url)
            if cached is not None and self._clock() < cached.expires:
                return cached.response
        response: google.auth.transport.Response = self._inner(
            url, method=method, body=body, headers=headers, timeout=timeout or _FETCH_TIMEOUT_SECONDS, **kwargs
        )
        if method == "GET" and body is None and response.status == HTTPStatus.OK:
            with self._lock:
                self._cache[url] = _Cached(response, self._clock() + self._ttl)
        return response


def _unauthenticated(message: str) -> BadRequestError:
    return BadRequestError(message, status=HTTPStatus.UNAUTHORIZED, headers=_CHALLENGE)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header.

    Raises:
        BadRequestError: 401 when there is none, or it cannot be a token.
    """
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthenticated(
            "this function verifies its callers: send Authorization: Bearer <Google-signed OIDC identity token>"
        )
    if len(token) > _MAX_TOKEN_CHARS or not token.isascii():
        raise _unauthenticated("the identity token is not valid")
    return token


def check_claims(claims: Mapping[str, Any], policy: InvokerPolicy) -> str:
    """The caller's e-mail, when the verified claims name an allowed, verified Google identity.

    Raises:
        BadRequestError: 401 for a token Google did not issue or without a verified e-mail; 403 for an
            e-mail that is not in ``ALLOWED_INVOKERS``.
    """
    if claims.get("iss") not in _ISSUERS:
        raise _unauthenticated("the identity token was not issued by Google")
    email = claims.get("email")
    if not isinstance(email, str) or claims.get("email_verified") is not True:
        raise _unauthenticated("the identity token carries no verified e-mail")
    if email.lower() not in policy.allowed:
        raise BadRequestError(f"caller {email} is not in ALLOWED_INVOKERS", status=HTTPStatus.FORBIDDEN)
    return email


class CallerVerifier:
    """Verifies callers against an :class:`InvokerPolicy`; holds the certificate cache across requests."""

    def __init__(self, transport: google.auth.transport.Request | None = None) -> None:
        self._transport = transport or CachingRequest()

    def verify(self, authorization: str | None, policy: InvokerPolicy) -> str:
        """The allowed caller's e-mail.

        Raises:
            BadRequestError: 401 or 403, as :func:`bearer_token` and :func:`check_claims` say.
            RotatorError: retryable, when Google's certificates cannot be fetched (no caller is at fault).
        """
        token = bearer_token(authorization)
        try:
            claims = id_token.verify_token(
                token,
                self._transport,
                audience=policy.audience,
                certs_url=policy.certs_url,
                clock_skew_in_seconds=_CLOCK_SKEW_SECONDS,
            )
        except google.auth.exceptions.TransportError:
            raise RotatorError(
                "cannot verify the caller: the identity token certificates could not be fetched", retryable=True
            ) from None
        except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
            # The library's message may quote parts of the token: log only what kind of failure it was.
            log.warning("identity token refused (%s)", type(exc).__name__)
            raise _unauthenticated("the identity token is not valid (signature, expiry or audience)") from None
        return check_claims(claims, policy)
