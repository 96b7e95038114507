"""The cluster through the official ``kubernetes`` client: secret reads and server-side applies.

The kubeconfig is checked by :mod:`rotator.kubeconfig` first; the client is then configured from those
checked values, not with ``kubernetes.config``'s loader, because that loader writes the CA, client
certificate and key to files in the shared temporary directory that stay there until the process exits.

Requests go through the client's ``ApiClient.param_serialize`` and ``call_api`` (the path its generated
``read_namespaced_secret`` and ``patch_namespaced_secret`` take), and answers are read as raw JSON, the
urllib3 response unread as ``_preload_content=False`` gives it: building ``V1Secret`` models for every
namespace costs more CPU than the rest of a request, and the rotator needs plain dicts anyway.

Kept by hand, because the client cannot do it safely:

- **The TLS context.** The client takes the client certificate and key only as file paths, and urllib3
  re-reads them (and the CA) at every new connection, so the key would have to stay on disk for the
  client's whole life. Here one :class:`ssl.SSLContext` is built up front: the key touches disk only in a
  private 0700 directory that is deleted before the client exists, and the context is handed to the
  client's connection pools. It trusts only the kubeconfig's CA (the system's CAs only when the kubeconfig
  names none), whatever ``REQUESTS_CA_BUNDLE`` & co say. A proxy from ``HTTPS_PROXY`` still works: the
  tunnel's TLS uses this same context and ``tls-server-name``.
- **Retries and errors.** urllib3's own retries are off (``retries=False``, which also means a redirect is
  returned as an error, never followed with the apply body); the one retry loop is
  :func:`rotator.retry.call_with_retries`. Errors are built from the status and the Status ``reason``
  code only, never from the answer's free-text message, and answers are read with a size cap.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final, TypeVar

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rotator.bounded import CallDeadline, read_capped, watch_pools
from rotator.errors import KubeconfigError, KubeError, NamespaceGoneError, RotatorError
from rotator.kubeconfig import ClusterAccess
from rotator.retry import Backoff, call_with_retries, parse_retry_after
from rotator.secret import SecretStr
from rotator.selection import NamespaceInfo

log = logging.getLogger(__name__)

T = TypeVar("T")

FIELD_MANAGER: Final = "ccr-pull-secret-rotator"
TIMEOUT: Final = (5.0, 20.0)
MAX_BODY_BYTES: Final = 4 * 1024 * 1024  # a Secret is at most 1 MiB; anything far larger is not an answer to us
PAGE_SIZE: Final = 500  # a page of namespaces or service accounts stays far below MAX_BODY_BYTES
_APPLY: Final = "application/apply-patch+yaml"
_MERGE_PATCH: Final = "application/merge-patch+json"
_APPLY_QUERY: Final = [("fieldManager", FIELD_MANAGER), ("force", "true")]
_DRY_RUN: Final = ("dryRun", "All")
_SECRET_PATH: Final = "/api/v1/namespaces/{namespace}/secrets/{name}"
_NAMESPACES_PATH: Final = "/api/v1/namespaces"
_ACCOUNTS_PATH: Final = "/api/v1/namespaces/{namespace}/serviceaccounts"
_ACCOUNT_PATH: Final = "/api/v1/namespaces/{namespace}/serviceaccounts/{name}"
_EVENTS_PATH: Final = "/apis/events.k8s.io/v1/namespaces/{namespace}/events"
_TOKEN_PATH: Final = "/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"
_RETRY_STATUSES: Final = frozenset(
    {
        HTTPStatus.TOO_MANY_REQUESTS,
        HTTPStatus.INTERNAL_SERVER_ERROR,
        HTTPStatus.BAD_GATEWAY,
        HTTPStatus.SERVICE_UNAVAILABLE,
        HTTPStatus.GATEWAY_TIMEOUT,
    }
)
_HINTS: Final[dict[int, str]] = {
    HTTPStatus.UNAUTHORIZED: "the kubeconfig's credentials were not accepted (expired token or certificate?): "
    "renew the kubeconfig",
    HTTPStatus.FORBIDDEN: "forbidden: grant the rotator's identity the RBAC from infra/rbac",
    HTTPStatus.NOT_FOUND: "not found (does the namespace exist?)",
    HTTPStatus.CONFLICT: "it changed while the rotator was writing it (conflict); the next run will retry",
    HTTPStatus.UNPROCESSABLE_ENTITY: "the API server rejected the secret as invalid",
}


def classify(error: RotatorError) -> bool:
    """Worth another try at once: throttling, a server error, or no answer; never a conflict (rotation merges)."""
    if not isinstance(error, KubeError):
        return False
    return error.status in _RETRY_STATUSES if error.status is not None else error.retryable


def ssl_context(access: ClusterAccess) -> ssl.SSLContext:
    """A TLS context that trusts the kubeconfig's CA and presents its client certificate, if any."""
    try:
        context = ssl.create_default_context(cadata=access.ca_pem.decode() if access.ca_pem else None)
    except (ssl.SSLError, ValueError):
        raise KubeconfigError("certificate-authority-data in the kubeconfig is not a PEM certificate") from None
    if access.insecure_skip_tls_verify:
        log.warning("the kubeconfig disables TLS verification (insecure-skip-tls-verify): traffic can be intercepted")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if access.client_cert_pem and access.client_key_pem:
        # ssl loads a key from a file only. mkdtemp makes the directory 0700, the files are created 0600 and
        # exclusively, and the whole directory is gone when this block ends, before any connection exists.
        with tempfile.TemporaryDirectory(prefix="rotator-") as private:
            cert_file, key_file = Path(private, "client.crt"), Path(private, "client.key")
            for path, secret in ((cert_file, access.client_cert_pem), (key_file, access.client_key_pem)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(secret.reveal())
            try:
                # A password callback that gives none: an encrypted key fails here instead of OpenSSL asking
                # for a pass phrase on the terminal.
                context.load_cert_chain(cert_file, key_file, password=_no_password)
            except (ssl.SSLError, ValueError):
                raise KubeconfigError(
                    "the kubeconfig's client certificate and key do not load (not PEM, not a pair, or an encrypted key)"
                ) from None
    return context


def _no_password() -> bytes:
    return b""


def api_client(access: ClusterAccess, *, pool_size: int) -> client.ApiClient:
    """An ``ApiClient`` for the checked kubeconfig: pooled, no retries or redirects of its own, TLS preset."""
    context = ssl_context(access)
    configuration = client.Configuration(host=access.server)
    configuration.verify_ssl = not access.insecure_skip_tls_verify
    configuration.tls_server_name = access.tls_server_name
    configuration.connection_pool_maxsize = pool_size
    configuration.retries = False
    if access.token:
        configuration.api_key = {"BearerToken": access.token.reveal()}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
    api = client.ApiClient(configuration)
    api.user_agent = f"{FIELD_MANAGER}/1"
    # The one hand-made part (see the module docstring): every pool the manager creates, direct or
    # through a proxy tunnel, uses this context instead of loading files per connection.
    api.rest_client.pool_manager.connection_pool_kw["ssl_context"] = context
    watch_pools(api.rest_client.pool_manager)  # each call within TIMEOUT in total (see rotator.bounded)
    return api


class KubeClient:
    """Secret reads and server-side applies against one API server, safe to use from many threads."""

    def __init__(
        self,
        access: ClusterAccess,
        *,
        pool_size: int,
        backoff: Backoff = Backoff(),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._server = access.server
        self._backoff = backoff
        self._sleep = sleep
        self._api = api_client(access, pool_size=pool_size)

    def close(self) -> None:
        """Release pooled connections."""
        self._api.close()  # type: ignore[no-untyped-call] # the generated client leaves it unannotated

    @property
    def server(self) -> str:
        """The API server's URL, as the kubeconfig names it (reports show it, so a wrong cluster is obvious)."""
        return self._server

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The secret as the API server holds it, or None if it (or its namespace) does not exist."""
        return self._read(
            _SECRET_PATH, {"namespace": namespace, "name": name}, f"secret {name!r} in namespace {namespace!r}"
        )

    def apply_secret(
        self, namespace: str, name: str, manifest: dict[str, Any], *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Server-side apply ``manifest`` as the rotator's field manager (force: the rotator owns its fields).

        A ``metadata.resourceVersion`` in the manifest makes this a conditional write (409 if it changed);
        a 409 is not retried here: the rotation reads the secret again and merges. With ``dry_run`` the API
        server runs authorization, admission and validation and stores nothing.
        """
        query = [*_APPLY_QUERY, _DRY_RUN] if dry_run else _APPLY_QUERY
        return self._write(
            _SECRET_PATH,
            {"namespace": namespace, "name": name},
            f"secret {name!r} in namespace {namespace!r}",
            Request(method="PATCH", query=query, body=json.dumps(manifest), content_type=_APPLY),
        )

    def list_namespaces(self) -> list[NamespaceInfo]:
        """Every namespace, page by page: its name, labels, and whether it is being deleted."""
        items = self._list(_NAMESPACES_PATH, {}, "namespaces")
        return [
            NamespaceInfo(
                name=str(meta.get("name", "")),
                labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
                terminating=bool(meta.get("deletionTimestamp"))
                or (item.get("status") or {}).get("phase") == "Terminating",
            )
            for item in items
            if isinstance(meta := item.get("metadata"), dict)
        ]

    def read_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A service account, or None if it does not exist."""
        where = f"service account {name!r} in namespace {namespace!r}"
        return self._read(_ACCOUNT_PATH, {"namespace": namespace, "name": name}, where)

    def list_service_accounts(self, namespace: str) -> list[dict[str, Any]]:
        """Every service account of ``namespace``, page by page."""
        return self._list(_ACCOUNTS_PATH, {"namespace": namespace}, f"service accounts in namespace {namespace!r}")

    def patch_service_account(
        self, namespace: str, name: str, patch: dict[str, Any], *, dry_run: bool = False
    ) -> dict[str, Any]:
        """JSON merge patch of a service account (a ``metadata.resourceVersion`` in it is a precondition)."""
        return self._write(
            _ACCOUNT_PATH,
            {"namespace": namespace, "name": name},
            f"service account {name!r} in namespace {namespace!r}",
            Request(
                method="PATCH",
                query=[("fieldManager", FIELD_MANAGER), *([_DRY_RUN] if dry_run else [])],
                body=patch,
                content_type=_MERGE_PATCH,
            ),
        )

    def create_event(self, namespace: str, event: dict[str, Any]) -> None:
        """Record an ``events.k8s.io/v1`` Event (one try: an event is worth less than a retry's wait)."""
        request = Request(method="POST", body=event, content_type="application/json")
        with CallDeadline(sum(TIMEOUT)):
            response = self._call(_EVENTS_PATH, {"namespace": namespace}, request)
            self._answer("record an event", response, f"in namespace {namespace!r}")

    def request_token(self, namespace: str, name: str, *, audiences: Sequence[str], seconds: int) -> SecretStr:
        """A new bound token for a service account (TokenRequest); tokens issued before stay valid until they expire.

        A retried request may issue one token more than it returns, which is harmless: nothing holds it.
        """
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": list(audiences), "expirationSeconds": seconds},
        }
        answer = self._write(
            _TOKEN_PATH,
            {"namespace": namespace, "name": name},
            f"serviceaccounts/token of {name!r} in namespace {namespace!r}",
            Request(method="POST", body=body, content_type="application/json"),
        )
        status = answer.get("status")
        token = status.get("token") if isinstance(status, dict) else None
        if not isinstance(token, str) or not token:
            raise KubeError("the API server's TokenRequest answer holds no token", status=None, retryable=False)
        return SecretStr(token)

    def _read(self, path: str, params: dict[str, str], what: str) -> dict[str, Any] | None:
        def attempt(_: int) -> dict[str, Any] | None:
            with CallDeadline(sum(TIMEOUT)):
                response = self._call(path, params, Request())
                if response.status == HTTPStatus.NOT_FOUND:
                    response.drain_conn()
                    return None
                return self._answer("read", response, what)

        return self._with_retries(attempt, f"reading {what}")

    def _write(self, path: str, params: dict[str, str], what: str, request: Request) -> dict[str, Any]:
        def attempt(_: int) -> dict[str, Any]:
            with CallDeadline(sum(TIMEOUT)):
                return self._answer("write", self._call(path, params, request), what)

        return self._with_retries(attempt, f"writing {what}")

    def _list(self, path: str, params: dict[str, str], what: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query = [("limit", str(PAGE_SIZE))] + ([("continue", token)] if token else [])
            page = self._with_retries(partial(self._page, path, params, query, what), f"listing {what}")
            items += [item for item in page.get("items") or [] if isinstance(item, dict)]
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                return items

    def _page(
        self, path: str, params: dict[str, str], query: list[tuple[str, str]], what: str, _: int
    ) -> dict[str, Any]:
        with CallDeadline(sum(TIMEOUT)):
            return self._answer("list", self._call(path, params, Request(query=query)), what)

    def _call(self, path: str, params: dict[str, str], request: Request) -> urllib3.BaseHTTPResponse:
        """One request through the client's ``call_api``, its answer unread.

        ``call_api`` is the path the generated methods (``read_namespaced_secret``, ...) take, minus their
        per-call pydantic argument validation: that builds 20 MiB of schemas on first use and costs CPU on
        every call, for arguments that are plain strings here.
        """
        headers = {"Accept": "application/json"} | (
            {"Content-Type": request.content_type} if request.content_type else {}
        )
        serialized = self._api.param_serialize(
            request.method,
            path,
            path_params=params,
            query_params=request.query,
            header_params=headers,
            body=request.body,
            auth_settings=["BearerToken"],
        )
        try:
            answer: urllib3.BaseHTTPResponse = self._api.call_api(*serialized, _request_timeout=TIMEOUT).response
        except ApiException:  # the client's way of reporting a TLS failure
            raise KubeError(
                f"TLS with the API server {self._server} failed: check the kubeconfig's certificate-authority-data, "
                "tls-server-name and server address",
                status=None,
                retryable=False,
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(
                f"cannot reach the API server {self._server}: {type(exc).__name__}", status=None, retryable=True
            ) from None
        return answer

    def _answer(self, verb: str, response: urllib3.BaseHTTPResponse, what: str) -> dict[str, Any]:
        body = _read_json(response)
        if HTTPStatus.OK <= response.status < HTTPStatus.MULTIPLE_CHOICES and isinstance(body, dict):
            return body
        if response.status < HTTPStatus.MULTIPLE_CHOICES:
            raise KubeError("the API server's answer is not a JSON object", status=response.status, retryable=True)
        raise _error_for(verb, response.status, what, body, response.headers)

    def _with_retries(self, attempt: Callable[[int], T], what: str) -> T:
        return call_with_retries(attempt, classify=classify, backoff=self._backoff, what=what, sleep=self._sleep)


@dataclass(frozen=True)
class Request:
    """What one call sends besides its path."""

    method: str = "GET"
    query: list[tuple[str, str]] | None = None
    #: Text is sent as it is (the apply body, encoded once for all attempts); the client's REST layer
    #: encodes a dict itself for the JSON content types (so those must not be encoded here as well).
    body: str | dict[str, Any] | None = None
    content_type: str | None = None


def _error_for(
    verb: str,
    status: int,
    what: str,
    body: object,
    headers: Any,  # noqa: ANN401 - urllib3's header mapping, or None
) -> KubeError:
    """A :class:`KubeError` naming the object and a hint; the server's free-text message is never quoted."""
    gone = _namespace_gone(status, body)
    if gone is not None:
        return gone
    hint = _HINTS.get(status, "")
    retry_after = parse_retry_after(headers.get("Retry-After")) if headers is not None else None
    detail = hint or _status_reason(body) or "request failed"
    return KubeError(
        f"cannot {verb} {what}: HTTP {status}: {detail}",
        status=status,
        retryable=status in _RETRY_STATUSES or status == HTTPStatus.CONFLICT,
        retry_after=retry_after,
    )


def _namespace_gone(status: int, body: object) -> NamespaceGoneError | None:
    """The namespace itself is missing or being deleted, told by the Status's kind and cause, not its text."""
    details = body.get("details") if isinstance(body, dict) else None
    if not isinstance(details, dict):
        return None
    causes = details.get("causes")
    causes = causes if isinstance(causes, list) else []
    if status == HTTPStatus.FORBIDDEN and any(
        isinstance(c, dict) and c.get("reason") == "NamespaceTerminating"
        for c in causes  # a StatusCause's type
    ):
        return NamespaceGoneError("the namespace is being deleted", status=status, terminating=True)
    name = details.get("name")
    if status == HTTPStatus.NOT_FOUND and details.get("kind") == "namespaces" and isinstance(name, str):
        safe = name if name.isascii() and len(name) <= 63 else "?"  # noqa: PLR2004 - a DNS label's length
        return NamespaceGoneError(f"namespace {safe!r} does not exist", status=status, terminating=False)
    return None


def _read_json(response: urllib3.BaseHTTPResponse) -> object:
    """The decoded JSON of an answer read with a size cap; None when it is not JSON."""
    try:
        data = read_capped(response.read, MAX_BODY_BYTES)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeError(
            f"the API server's answer was cut off: {type(exc).__name__}", status=None, retryable=True
        ) from None
    if data is None:
        response.close()
        raise KubeError("the API server's answer is larger than 4 MiB", status=response.status, retryable=False)
    response.release_conn()
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _status_reason(status: object) -> str:
    """The machine-readable ``reason`` of a Status answer; its free-text message is never passed on."""
    reason = status.get("reason") if isinstance(status, dict) else None
    return reason if isinstance(reason, str) and reason.isalnum() and len(reason) <= 64 else ""  # noqa: PLR2004
