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
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final, TypeVar

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rotator.bounded import CallDeadline, read_capped, watch_pools
from rotator.errors import KubeconfigError, KubeError, RotatorError
from rotator.kubeconfig import ClusterAccess
from rotator.retry import Backoff, call_with_retries, parse_retry_after

log = logging.getLogger(__name__)

T = TypeVar("T")

FIELD_MANAGER: Final = "ccr-pull-secret-rotator"
TIMEOUT: Final = (5.0, 20.0)
MAX_BODY_BYTES: Final = 4 * 1024 * 1024  # a Secret is at most 1 MiB; anything far larger is not an answer to us
_APPLY: Final = "application/apply-patch+yaml"
_APPLY_QUERY: Final = [("fieldManager", FIELD_MANAGER), ("force", "true")]
_SECRET_PATH: Final = "/api/v1/namespaces/{namespace}/secrets/{name}"
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
    HTTPStatus.FORBIDDEN: "forbidden: grant the rotator's identity the Role from infra/rbac in this namespace",
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

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The secret as the API server holds it, or None if it (or its namespace) does not exist."""

        def attempt(_: int) -> dict[str, Any] | None:
            with CallDeadline(sum(TIMEOUT)):
                response = self._call("GET", namespace, name)
                if response.status == HTTPStatus.NOT_FOUND:
                    response.drain_conn()
                    return None
                return self._answer("read", response, namespace, name)

        return self._with_retries(attempt, f"reading secret {name!r} in namespace {namespace!r}")

    def apply_secret(self, namespace: str, name: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply ``manifest`` as the rotator's field manager (force: the rotator owns its fields).

        A ``metadata.resourceVersion`` in the manifest makes this a conditional write (409 if it changed);
        a 409 is not retried here: the rotation reads the secret again and merges.
        """
        body = json.dumps(manifest)  # once, not per attempt; JSON is YAML, as apply-patch+yaml asks

        def attempt(_: int) -> dict[str, Any]:
            with CallDeadline(sum(TIMEOUT)):
                response = self._call("PATCH", namespace, name, query=_APPLY_QUERY, body=body, content_type=_APPLY)
                return self._answer("write", response, namespace, name)

        return self._with_retries(attempt, f"writing secret {name!r} in namespace {namespace!r}")

    def _call(
        self,
        method: str,
        namespace: str,
        name: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: str | None = None,
        content_type: str | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """One request through the client's ``call_api``, its answer unread.

        ``call_api`` is the path the generated methods (``read_namespaced_secret``, ...) take, minus their
        per-call pydantic argument validation: that builds 20 MiB of schemas on first use and costs CPU on
        every call, for arguments that are plain strings here.
        """
        headers = {"Accept": "application/json"} | ({"Content-Type": content_type} if content_type else {})
        request = self._api.param_serialize(
            method,
            _SECRET_PATH,
            path_params={"namespace": namespace, "name": name},
            query_params=query,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            answer: urllib3.BaseHTTPResponse = self._api.call_api(*request, _request_timeout=TIMEOUT).response
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

    def _answer(self, verb: str, response: urllib3.BaseHTTPResponse, namespace: str, name: str) -> dict[str, Any]:
        body = _read_json(response)
        if HTTPStatus.OK <= response.status < HTTPStatus.MULTIPLE_CHOICES and isinstance(body, dict):
            return body
        if response.status < HTTPStatus.MULTIPLE_CHOICES:
            raise KubeError("the API server's answer is not a JSON object", status=response.status, retryable=True)
        raise _error_for(verb, response.status, namespace, name, _status_reason(body), response.headers)

    def _with_retries(self, attempt: Callable[[int], T], what: str) -> T:
        return call_with_retries(attempt, classify=classify, backoff=self._backoff, what=what, sleep=self._sleep)


def _error_for(
    verb: str,
    status: int,
    namespace: str,
    name: str,
    reason: str,
    headers: Any,  # noqa: ANN401 - urllib3's header mapping, or None
) -> KubeError:
    """A :class:`KubeError` naming the secret and a hint; the server's free-text message is never quoted."""
    hint = _HINTS.get(status, "")
    retry_after = parse_retry_after(headers.get("Retry-After")) if headers is not None else None
    detail = hint or reason or "request failed"
    return KubeError(
        f"cannot {verb} secret {name!r} in namespace {namespace!r}: HTTP {status}: {detail}",
        status=status,
        retryable=status in _RETRY_STATUSES or status == HTTPStatus.CONFLICT,
        retry_after=retry_after,
    )


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
