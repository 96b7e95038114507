"""Reading the rotator's two secrets: Crusoe API credentials and the kubeconfig.

In production both come from Google Secret Manager through its REST API, authorised with the function's
own identity (application default credentials); the payload's CRC32C is checked so a corrupted read is
never used, and every read is bounded (:mod:`rotator.bounded`: total time, size, no redirects). Local
runs read the kubeconfig from a file and the credentials from the environment.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import tomllib
from collections.abc import Callable
from http import HTTPStatus
from typing import Final, Protocol

import google_crc32c
import requests

from rotator.bounded import Answer, bounded_session, send
from rotator.config import CredentialsSource, KubeconfigSource, LocalFile, StaticCredentials, check_secret_key
from rotator.errors import ApiError, RotatorError, SecretStoreError
from rotator.retry import Backoff, call_with_retries, parse_retry_after
from rotator.secret import SecretStr

TIMEOUT: Final = (5.0, 20.0)
MAX_BODY_BYTES: Final = 1024 * 1024  # a secret version holds at most 64 KiB, base64 in JSON
SCOPES: Final = ("https://www.googleapis.com/auth/cloud-platform",)


class SecretReader(Protocol):
    """Anything that returns the payload of a Secret Manager secret version."""

    def access(self, version_name: str) -> bytes:
        """The payload bytes of ``version_name``."""
        ...


def _temporary(status: int | None) -> bool:
    """No answer, 429 or any 5xx: the same read may succeed on another try."""
    return status is None or status == HTTPStatus.TOO_MANY_REQUESTS or status >= HTTPStatus.INTERNAL_SERVER_ERROR


def classify(error: RotatorError) -> bool:
    """Secret Manager's retry rule (pure): an :class:`ApiError` with a temporary status."""
    return isinstance(error, ApiError) and _temporary(error.status)


class SecretManager:
    """``projects.secrets.versions.access`` over REST with an authorised session.

    Inside the retry loop a failed read is an :class:`ApiError` (the one error shape with a status and a
    Retry-After); what leaves :meth:`access` is a :class:`SecretStoreError`, like every other secret failure.
    """

    def __init__(
        self,
        endpoint: str,
        session: requests.Session,
        *,
        backoff: Backoff = Backoff(),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._endpoint = endpoint.rstrip("/")
        self._session = bounded_session(session)
        self._backoff = backoff
        self._sleep = sleep

    def access(self, version_name: str) -> bytes:
        """Fetch and verify a secret version's payload, retrying what :func:`classify` calls temporary."""
        try:
            response = call_with_retries(
                lambda _attempt: self._get(version_name),
                classify=classify,
                backoff=self._backoff,
                what=f"reading {version_name} from Secret Manager",
                sleep=self._sleep,
            )
        except ApiError as exc:
            raise SecretStoreError(exc.message, retryable=exc.retryable) from None
        return self._payload(response, version_name)

    def _get(self, version_name: str) -> Answer:
        """One read; a temporary failure is an :class:`ApiError` carrying the server's Retry-After."""
        url = f"{self._endpoint}/v1/{version_name}:access"
        try:
            response = send(self._session, "GET", url, timeout=TIMEOUT, total=sum(TIMEOUT), limit=MAX_BODY_BYTES)
        except ApiError as exc:
            raise ApiError(
                f"no usable answer from Secret Manager for {version_name}: {exc.message}",
                status=exc.status,
                retryable=exc.retryable,
            ) from None
        status = response.status
        if _temporary(status):
            raise ApiError(
                f"Secret Manager answered HTTP {status} for {version_name}",
                status=status,
                retryable=True,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        return response

    @staticmethod
    def _payload(response: Answer, version_name: str) -> bytes:
        if response.status in {HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN}:
            raise SecretStoreError(
                f"no permission to read {version_name} (HTTP {response.status}): grant the function's "
                "service account roles/secretmanager.secretAccessor on that secret",
            )
        if response.status == HTTPStatus.NOT_FOUND:
            raise SecretStoreError(
                f"{version_name} does not exist: create the secret and add a version (see the README)"
            )
        if not response.ok:
            raise SecretStoreError(f"Secret Manager answered HTTP {response.status} for {version_name}")
        try:
            payload = response.json()["payload"]  # type: ignore[index] # the except clause is the type check
            data = base64.b64decode(payload["data"], validate=True)
            expected = payload.get("dataCrc32c")
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise SecretStoreError(f"Secret Manager's answer for {version_name} is malformed", retryable=True) from None
        if expected is not None and int(expected) != google_crc32c.value(data):
            raise SecretStoreError(f"the payload of {version_name} failed its CRC32C check", retryable=True)
        return data


def load_credentials(source: CredentialsSource, reader: SecretReader | None) -> StaticCredentials:
    """The Crusoe API credentials, from the environment or from a Secret Manager payload.

    The payload may be JSON ``{"access_key_id": ..., "secret_key": ...}`` or the Crusoe CLI's own config
    file (TOML with a ``[default]`` profile holding the same two keys).
    """
    if isinstance(source, StaticCredentials):
        return source
    if reader is None:  # pragma: no cover - the factory always passes one with a Secret Manager source
        raise SecretStoreError("no Secret Manager client to read CRUSOE_CREDENTIALS_SECRET")
    name = source.version_name
    document = _parse_credentials(reader.access(name), name)
    key_id = document.get("access_key_id") or document.get("access_key")
    secret_key = document.get("secret_key")
    if not isinstance(key_id, str) or not isinstance(secret_key, str) or not key_id or not secret_key:
        raise SecretStoreError(f"the payload of {name} must hold string fields access_key_id and secret_key")
    problems: list[str] = []
    check_secret_key(secret_key, problems.append)
    if problems:
        raise SecretStoreError(f"secret_key in {name} {problems[0]}")
    return StaticCredentials(key_id, SecretStr(secret_key))


def _parse_credentials(raw: bytes, name: str) -> dict[str, object]:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise SecretStoreError(f"the payload of {name} is not UTF-8 text") from None
    try:
        document = json.loads(text)
    except ValueError:
        try:
            document = tomllib.loads(text).get("default", {})
        except tomllib.TOMLDecodeError:
            raise SecretStoreError(
                f"the payload of {name} is neither JSON nor a Crusoe CLI config file (TOML)"
            ) from None
    if not isinstance(document, dict):
        raise SecretStoreError(f"the payload of {name} must be a JSON object")
    return document


def load_kubeconfig(source: KubeconfigSource, reader: SecretReader | None) -> tuple[SecretStr, LocalFile | None]:
    """The kubeconfig text, and the file it came from when local (relative paths in it resolve there)."""
    if isinstance(source, LocalFile):
        try:
            return SecretStr(source.path.read_text()), source
        except OSError as exc:
            raise SecretStoreError(f"cannot read KUBECONFIG file {source.path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise SecretStoreError(f"KUBECONFIG file {source.path} is not UTF-8 text") from None
    if reader is None:  # pragma: no cover
        raise SecretStoreError("no Secret Manager client to read KUBECONFIG_SECRET")
    try:
        return SecretStr(reader.access(source.version_name).decode()), None
    except UnicodeDecodeError:
        raise SecretStoreError(f"the payload of {source.version_name} is not UTF-8 text") from None
