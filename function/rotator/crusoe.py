"""Client for the few Crusoe Cloud API operations the rotator needs.

Every request is signed (see :mod:`rotator.signing`) and has a timeout. GET and DELETE are retried on
429, 5xx (but 501) and transport errors. Creating a token is retried only with a *new* alias each time:
an attempt whose answer was lost may still have minted a token, and the caller revokes such strays by
alias once the rotation succeeds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import requests

from rotator.config import StaticCredentials
from rotator.errors import CrusoeApiError
from rotator.retry import Backoff, parse_retry_after
from rotator.secret import SecretStr
from rotator.signing import authorization, encode_query, format_timestamp, sign, signing_message
from rotator.tokens import ApiKey

log = logging.getLogger(__name__)

TIMEOUT: Final = (5.0, 30.0)
_NOT_RETRYABLE_5XX: Final = 501


def _retryable_status(status: int) -> bool:
    return status == 429 or (status >= 500 and status != _NOT_RETRYABLE_5XX)  # noqa: PLR2004


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
        self._session = session
        self._backoff = backoff
        self._timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self.calls = 0

    def create_registry_token(self, alias: str, expires_at: datetime) -> SecretStr:
        """Mint a registry token (one attempt; see the module docstring for why)."""
        body = {"alias": alias, "expires_at": format_timestamp(expires_at)}
        response = self._send("createCcrToken", "POST", "/ccr/tokens", json_body=body)
        token = self._json(response, "createCcrToken").get("token")
        if not isinstance(token, str) or not token:
            raise CrusoeApiError(
                "createCcrToken", status=response.status_code, detail="the answer has no token", retryable=True
            )
        return SecretStr(token)

    def list_registry_tokens(self) -> list[ApiKey]:
        """Every limited-usage key whose usage is ``registry``."""
        response = self._with_retries("getLimitedUsageAPIKeys", "GET", "/users/limited-usage-api-key")
        items = self._json(response, "getLimitedUsageAPIKeys").get("items")
        if not isinstance(items, list):
            raise CrusoeApiError(
                "getLimitedUsageAPIKeys",
                status=response.status_code,
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
        """Revoke a key; one that is already gone counts as revoked."""
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
    ) -> requests.Response:
        query = list(query)
        for attempt in range(self._backoff.attempts):
            try:
                return self._send(operation, method, path, query=query, missing_ok=missing_ok)
            except _RetryError as failure:
                if attempt + 1 == self._backoff.attempts:
                    raise failure.error from None
                delay = self._backoff.delay(attempt, failure.retry_after)
                log.warning(
                    "Crusoe API %s failed, retrying in %.1fs",
                    operation,
                    delay,
                    extra={"fields": {"operation": operation, "attempt": attempt + 1, "error": failure.error.message}},
                )
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        json_body: Mapping[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> requests.Response:
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
        self.calls += 1
        try:
            response = self._session.request(method, url, headers=headers, json=json_body, timeout=self._timeout)
        except requests.RequestException as exc:
            error = CrusoeApiError(operation, status=None, detail=type(exc).__name__, retryable=True)
            if method == "POST":
                raise error from None
            raise _RetryError(error, None) from None
        if response.ok or (missing_ok and response.status_code == 404):  # noqa: PLR2004
            return response
        error = self._error(operation, response)
        if method != "POST" and error.retryable:
            raise _RetryError(error, parse_retry_after(response.headers.get("Retry-After")))
        raise error

    @staticmethod
    def _error(operation: str, response: requests.Response) -> CrusoeApiError:
        """An error from the API's own error body (safe to show: it holds no credentials)."""
        code = message = error_id = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            code, message, error_id = (str(body[k]) if body.get(k) else None for k in ("code", "message", "error_id"))
        detail = message or response.reason or "error"
        if code and code != str(response.status_code):
            detail = f"{code}: {detail}"
        if response.status_code == 401:  # noqa: PLR2004
            detail += " (check the access key id and secret key, and that this machine's clock is right)"
        return CrusoeApiError(
            operation,
            status=response.status_code,
            detail=detail,
            error_id=error_id,
            retryable=_retryable_status(response.status_code),
        )

    @staticmethod
    def _json(response: requests.Response, operation: str) -> dict[str, Any]:
        try:
            body = response.json()
        except (ValueError, json.JSONDecodeError):
            body = None
        if not isinstance(body, dict):
            raise CrusoeApiError(
                operation, status=response.status_code, detail="the answer is not a JSON object", retryable=True
            )
        return body


class _RetryError(Exception):
    """Internal: a failure worth another try, with the server's Retry-After if it gave one."""

    def __init__(self, error: CrusoeApiError, retry_after: float | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after
