"""Client for the few Crusoe Cloud API operations the rotator needs.

Every request is signed (see :mod:`rotator.signing`) and bounded (:mod:`rotator.bounded`): the whole
call within its connect plus read timeout, a body size cap, no redirects, and error text from the API cut
to printable ASCII. GET and DELETE go through the one retry loop (:func:`rotator.retry.call_with_retries`)
with :func:`classify` deciding what is temporary. Creating a token is never retried here: an attempt whose
answer was lost may still have minted a token, so only the caller may try again, with a *new* alias, and
revoke such strays by alias once the rotation succeeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import urlsplit

import requests

from rotator.bounded import Answer, bounded_session, clip, send
from rotator.config import StaticCredentials
from rotator.errors import ApiError, CrusoeApiError, RotatorError
from rotator.retry import Backoff, call_with_retries, parse_retry_after
from rotator.secret import SecretStr
from rotator.signing import authorization, encode_query, format_timestamp, sign, signing_message
from rotator.tokens import ApiKey

TIMEOUT: Final = (5.0, 30.0)
MAX_BODY_BYTES: Final = 4 * 1024 * 1024  # a list of a few thousand keys; anything larger is not an answer to us
_SHORT_TEXT: Final = 64


def retryable_status(status: int | None) -> bool:
    """Whether the same request may succeed later: no answer, 429, or a 5xx other than 501."""
    if status is None:
        return True
    return status == HTTPStatus.TOO_MANY_REQUESTS or (
        status >= HTTPStatus.INTERNAL_SERVER_ERROR and status != HTTPStatus.NOT_IMPLEMENTED
    )


def classify(error: RotatorError) -> bool:
    """The Crusoe client's retry rule for GET and DELETE (a POST is never retried, see the module docstring)."""
    return isinstance(error, CrusoeApiError) and retryable_status(error.status)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class CrusoeClient:
    """Signed calls to ``/ccr/tokens`` and ``/users/limited-usage-api-key``."""

    def __init__(
        self,
        endpoint: str,
        credentials: StaticCredentials,
        session: requests.Session,
        *,
        backoff: Backoff = Backoff(),
        timeout: tuple[float, float] = TIMEOUT,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._endpoint = endpoint.rstrip("/")
        self._prefix_path = urlsplit(self._endpoint).path
        self._credentials = credentials
        self._session = bounded_session(session)
        self._backoff = backoff
        self._timeout = timeout
        self._total = sum(timeout)  # the whole call, however slowly the server sends its answer
        self._clock = clock
        self._sleep = sleep

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()

    def create_registry_token(self, alias: str, expires_at: datetime) -> SecretStr:
        """Mint a registry token (one attempt; see the module docstring for why)."""
        body = {"alias": alias, "expires_at": format_timestamp(expires_at)}
        response = self._send("createCcrToken", "POST", "/ccr/tokens", json_body=body)
        token = self._json(response, "createCcrToken").get("token")
        if not isinstance(token, str) or not token:
            raise CrusoeApiError(
                "createCcrToken", status=response.status, detail="the answer has no token", retryable=True
            )
        return SecretStr(token)

    def list_registry_tokens(self) -> list[ApiKey]:
        """Every limited-usage key whose usage is ``registry``."""
        response = self._with_retries("getLimitedUsageAPIKeys", "GET", "/users/limited-usage-api-key")
        items = self._json(response, "getLimitedUsageAPIKeys").get("items")
        if not isinstance(items, list):
            raise CrusoeApiError(
                "getLimitedUsageAPIKeys",
                status=response.status,
                detail="the answer has no items list",
                retryable=True,
            )
        keys = [
            ApiKey(
                key_id=str(item.get("key_id", "")),
                alias=str(item.get("alias", "")),
                usage=str(item.get("usage", "")),
                created_at=_parse_time(item.get("created_at")),
                expires_at=_parse_time(item.get("expires_at")),
            )
            for item in items
            if isinstance(item, dict)
        ]
        return [key for key in keys if key.usage == "registry" and key.key_id]

    def delete_key(self, key_id: str) -> None:
        """Revoke a key; one that is already gone (404) counts as revoked."""
        self._with_retries(
            "deleteLimitedUsageAPIKey",
            "DELETE",
            "/users/limited-usage-api-key",
            query=[("key_id", key_id)],
            missing_ok=True,
        )

    def _with_retries(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        missing_ok: bool = False,
    ) -> Answer:
        query = list(query)
        return call_with_retries(
            lambda _attempt: self._send(operation, method, path, query=query, missing_ok=missing_ok),
            classify=classify,
            backoff=self._backoff,
            what=f"Crusoe API {operation}",
            sleep=self._sleep,
        )

    def _send(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        json_body: Mapping[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> Answer:
        """One signed request; a failure is a :class:`CrusoeApiError` (with the server's Retry-After)."""
        raw_query = encode_query(query)
        timestamp = format_timestamp(self._clock())
        full_path = self._prefix_path + path
        signature = sign(
            self._credentials.secret_key.reveal(), signing_message(full_path, raw_query, method, timestamp)
        )
        headers = {
            "X-Crusoe-Timestamp": timestamp,
            "Authorization": authorization(self._credentials.access_key_id, signature),
            "Accept": "application/json",
        }
        url = self._endpoint + path + (f"?{raw_query}" if raw_query else "")
        try:
            answer = send(
                self._session,
                method,
                url,
                headers=headers,
                json_body=json_body,
                timeout=self._timeout,
                total=self._total,
                limit=MAX_BODY_BYTES,
            )
        except ApiError as exc:
            raise CrusoeApiError(operation, status=exc.status, detail=exc.message, retryable=exc.retryable) from None
        if answer.ok or (missing_ok and answer.status == HTTPStatus.NOT_FOUND):
            return answer
        raise self._error(operation, answer)

    @staticmethod
    def _error(operation: str, response: Answer) -> CrusoeApiError:
        """An error from the API's own error body (no credentials in it), each field cut to printable ASCII."""
        code = message = error_id = None
        body = response.json()
        if isinstance(body, dict):
            code, error_id = (clip(str(body[k]), _SHORT_TEXT) if body.get(k) else None for k in ("code", "error_id"))
            message = clip(str(body["message"])) if body.get("message") else None
        detail = message or response.reason or "error"
        if code and code != str(response.status):
            detail = f"{code}: {detail}"
        if response.status == HTTPStatus.UNAUTHORIZED:
            detail += " (check the access key id and secret key, and that this machine's clock is right)"
        return CrusoeApiError(
            operation,
            status=response.status,
            detail=detail,
            error_id=error_id,
            retryable=retryable_status(response.status),
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    @staticmethod
    def _json(response: Answer, operation: str) -> dict[str, Any]:
        body = response.json()
        if not isinstance(body, dict):
            raise CrusoeApiError(
                operation, status=response.status, detail="the answer is not a JSON object", retryable=True
            )
        return body
