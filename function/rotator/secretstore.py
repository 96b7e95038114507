"""Reading the rotator's two secrets: Crusoe API credentials and the kubeconfig; writing a renewed kubeconfig.

In production both come from Google Secret Manager through its REST API, authorised with the function's
own identity (application default credentials); the payload's CRC32C is checked so a corrupted read is
never used, and every call is bounded (:mod:`rotator.bounded`: total time, size, no redirects). Local
runs read the kubeconfig from a file and the credentials from the environment.

With RENEW_KUBECONFIG the function also adds versions to its kubeconfig secret (``secrets:addVersion``, the
payload's CRC32C sent along so Secret Manager refuses a corrupted write), lists them and disables old ones.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any, Final, Protocol
from urllib.parse import quote

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


PAGE_SIZE: Final = 100
MAX_PAGES: Final = 50  # 5,000 versions: a loop that never ends is a broken server, not a big secret


@dataclass(frozen=True)
class Payload:
    """A version's payload and the version it really is (``latest`` resolved to its number)."""

    name: str
    data: bytes


@dataclass(frozen=True)
class VersionInfo:
    """One version of a secret as the list call shows it (never its payload)."""

    name: str
    state: str
    created: datetime | None

    @property
    def number(self) -> int:
        """The version's number (versions are numbered 1, 2, ... in the order they were added)."""
        tail = self.name.rpartition("/")[2]
        return int(tail) if tail.isdigit() else 0


class SecretReader(Protocol):
    """Anything that returns the payload of a Secret Manager secret version."""

    def access(self, version_name: str) -> bytes:
        """The payload bytes of ``version_name``."""
        ...

    def read(self, version_name: str) -> Payload:
        """The payload of ``version_name`` with the name of the version it resolved to."""
        ...


class SecretWriter(Protocol):
    """The version writes a self-renewing kubeconfig needs."""

    def add_version(self, secret: str, data: bytes) -> str:
        """Add ``data`` as the newest version of ``secret`` (``projects/P/secrets/S``); its version name."""
        ...

    def list_versions(self, secret: str) -> list[VersionInfo]:
        """Every version of ``secret``, newest first."""
        ...

    def disable_version(self, version_name: str) -> None:
        """Disable one version (it can be enabled again; nothing is destroyed)."""
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
        return self.read(version_name).data

    def read(self, version_name: str) -> Payload:
        """Like :meth:`access`, with the version ``latest`` resolved to (the answer's ``name``)."""
        response = self._call("GET", f"{version_name}:access", version_name, "reading")
        return Payload(_resolved_name(response, version_name), self._payload(response, version_name))

    def add_version(self, secret: str, data: bytes) -> str:
        """``secrets:addVersion`` with the payload's CRC32C (retried when temporary: a second copy is harmless)."""
        body = {
            "payload": {"data": base64.b64encode(data).decode("ascii"), "dataCrc32c": str(google_crc32c.value(data))}
        }
        response = self._call("POST", f"{secret}:addVersion", secret, "adding a version to", body)
        _check_write(response, secret, "secretmanager.versions.add")
        name = _field(response.json(), "name")
        if name is None:
            raise SecretStoreError(f"Secret Manager's answer to adding a version to {secret} names no version")
        return name

    def list_versions(self, secret: str) -> list[VersionInfo]:
        """Every version of ``secret`` (page by page, at most MAX_PAGES of them), newest first by number."""
        versions: list[VersionInfo] = []
        token = ""
        for _ in range(MAX_PAGES):
            query = f"pageSize={PAGE_SIZE}" + (f"&pageToken={quote(token, safe='')}" if token else "")
            response = self._call("GET", f"{secret}/versions?{query}", secret, "listing the versions of")
            _check_write(response, secret, "secretmanager.versions.list")
            page = response.json()
            entries = page.get("versions") if isinstance(page, dict) else None
            versions += [_version(entry) for entry in entries or [] if isinstance(entry, dict) and entry.get("name")]
            token = _field(page, "nextPageToken") or ""
            if not token:
                break
        return sorted(versions, key=lambda v: v.number, reverse=True)

    def disable_version(self, version_name: str) -> None:
        """``versions:disable`` (a version can be enabled again; the rotator never destroys one)."""
        response = self._call("POST", f"{version_name}:disable", version_name, "disabling", {})
        _check_write(response, version_name, "secretmanager.versions.disable")

    def _call(self, method: str, path: str, subject: str, doing: str, body: object = None) -> Answer:
        """One call with retries; what leaves here is an answer, or a :class:`SecretStoreError`."""
        try:
            return call_with_retries(
                lambda _attempt: self._once(method, f"{self._endpoint}/v1/{path}", subject, body),
                classify=classify,
                backoff=self._backoff,
                what=f"{doing} {subject} in Secret Manager",
                sleep=self._sleep,
            )
        except ApiError as exc:
            raise SecretStoreError(exc.message, retryable=exc.retryable) from None

    def _once(self, method: str, url: str, subject: str, body: object) -> Answer:
        """One try; a temporary failure is an :class:`ApiError` carrying the server's Retry-After."""
        try:
            response = send(
                self._session,
                method,
                url,
                timeout=TIMEOUT,
                total=sum(TIMEOUT),
                limit=MAX_BODY_BYTES,
                json_body=body,
            )
        except ApiError as exc:
            raise ApiError(
                f"no usable answer from Secret Manager for {subject}: {exc.message}",
                status=exc.status,
                retryable=exc.retryable,
            ) from None
        status = response.status
        if _temporary(status):
            raise ApiError(
                f"Secret Manager answered HTTP {status} for {subject}",
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


def _field(document: object, key: str) -> str | None:
    value = document.get(key) if isinstance(document, dict) else None
    return value if isinstance(value, str) and value else None


def _resolved_name(response: Answer, requested: str) -> str:
    """The version an ``:access`` answer is of (``latest`` resolved); the requested name if it does not say."""
    return _field(response.json(), "name") or requested


def _version(entry: dict[str, Any]) -> VersionInfo:
    created = _field(entry, "createTime")
    try:
        when = datetime.fromisoformat(created) if created else None
    except ValueError:
        when = None
    return VersionInfo(str(entry["name"]), str(entry.get("state", "")), when)


def _check_write(response: Answer, subject: str, permission: str) -> None:
    """A refused version write or list is a :class:`SecretStoreError` naming the permission it needs."""
    if response.status in {HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN}:
        raise SecretStoreError(
            f"no permission for {permission} on {subject} (HTTP {response.status}): enable kubeconfig renewal "
            "in the Terraform module (kubeconfig_renewal), which grants it on the kubeconfig secret only"
        )
    if not response.ok:
        raise SecretStoreError(f"Secret Manager answered HTTP {response.status} for {subject} ({permission})")


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


@dataclass(frozen=True)
class KubeconfigText:
    """A kubeconfig as read: its text, the local file it came from, or the Secret Manager version it is."""

    text: SecretStr
    local: LocalFile | None = None
    version: str | None = None


def load_kubeconfig(source: KubeconfigSource, reader: SecretReader | None) -> KubeconfigText:
    """The kubeconfig text, and the file it came from when local (relative paths in it resolve there)."""
    if isinstance(source, LocalFile):
        try:
            return KubeconfigText(SecretStr(source.path.read_text()), local=source)
        except OSError as exc:
            raise SecretStoreError(f"cannot read KUBECONFIG file {source.path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise SecretStoreError(f"KUBECONFIG file {source.path} is not UTF-8 text") from None
    if reader is None:  # pragma: no cover
        raise SecretStoreError("no Secret Manager client to read KUBECONFIG_SECRET")
    payload = reader.read(source.version_name)
    try:
        return KubeconfigText(SecretStr(payload.data.decode()), version=payload.name)
    except UnicodeDecodeError:
        raise SecretStoreError(f"the payload of {source.version_name} is not UTF-8 text") from None
