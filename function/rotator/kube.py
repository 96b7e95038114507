"""A small Kubernetes REST client: just the secret reads and server-side applies the rotator needs.

Why not the generic client: it writes client keys to temporary files that outlive the call and spends
most of a large rotation deserialising models. Here the TLS context is built once in memory (a client
key touches disk only inside a private 0700 directory for the instant ``ssl`` needs to load it), and
one pooled HTTPS session serves every namespace concurrently.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import requests
from requests.adapters import HTTPAdapter

from rotator.errors import KubeError
from rotator.kubeconfig import ClusterAccess
from rotator.retry import Backoff, parse_retry_after

log = logging.getLogger(__name__)

FIELD_MANAGER: Final = "ccr-pull-secret-rotator"
TIMEOUT: Final = (5.0, 20.0)
_APPLY: Final = "application/apply-patch+yaml"


def ssl_context(access: ClusterAccess) -> ssl.SSLContext:
    """A TLS context that trusts the cluster's CA and presents the client certificate, if any."""
    context = ssl.create_default_context(cadata=access.ca_pem.decode() if access.ca_pem else None)
    if access.insecure_skip_tls_verify:
        log.warning("the kubeconfig disables TLS verification (insecure-skip-tls-verify): traffic can be intercepted")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if access.client_cert_pem and access.client_key_pem:
        with tempfile.TemporaryDirectory(prefix="rotator-") as private:
            cert_file, key_file = Path(private, "client.crt"), Path(private, "client.key")
            for path, secret in ((cert_file, access.client_cert_pem), (key_file, access.client_key_pem)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(secret.reveal())
            try:
                context.load_cert_chain(cert_file, key_file)
            except ssl.SSLError:
                raise KubeError(
                    "the kubeconfig's client certificate and key do not load (not PEM, or not a pair)",
                    status=None,
                    retryable=False,
                ) from None
    return context


class _TLSAdapter(HTTPAdapter):
    """Uses a prepared SSL context (and SNI name) for every pooled connection, and nothing else for trust."""

    def __init__(self, context: ssl.SSLContext, server_name: str | None, pool_size: int) -> None:
        self._context = context
        self._server_name = server_name
        super().__init__(pool_connections=1, pool_maxsize=pool_size, pool_block=True, max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - mirrors requests' signature
        kwargs["ssl_context"] = self._context
        if self._server_name:
            kwargs["server_hostname"] = self._server_name
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: bool | str, cert: Any) -> None:  # noqa: ANN401, FBT001
        """Leave trust to the prepared context.

        requests' default points every new connection at a CA bundle file (``certifi``, or
        ``REQUESTS_CA_BUNDLE``), which urllib3 then loads into the shared context: the cluster would be
        trusted with any public CA's certificate, and each new connection re-parsed ~150 certificates.
        """


class KubeClient:
    """Secret reads and server-side applies against one API server, safe to use from many threads."""

    def __init__(self, access: ClusterAccess, *, pool_size: int, backoff: Backoff = Backoff()) -> None:
        self._server = access.server
        self._backoff = backoff
        self._session = requests.Session()
        # The environment is read once here, not on every request (proxies, netrc and CA-bundle lookups
        # were an eighth of the client's CPU at 1,000 namespaces); a netrc entry could not replace the
        # kubeconfig's credentials either.
        self._session.trust_env = False
        self._session.proxies = requests.utils.get_environ_proxies(access.server)
        self._session.verify = not access.insecure_skip_tls_verify
        self._session.mount("https://", _TLSAdapter(ssl_context(access), access.tls_server_name, pool_size))
        self._session.headers["Accept"] = "application/json"
        self._session.headers["User-Agent"] = f"{FIELD_MANAGER}/1"
        if access.token:
            self._session.headers["Authorization"] = f"Bearer {access.token.reveal()}"
        self.requests = 0

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The secret as the API server holds it, or None if it does not exist."""
        response = self._request("GET", self._secret_url(namespace, name), namespace, name, allow_missing=True)
        return None if response is None else _json_object(response)

    def apply_secret(self, namespace: str, name: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply ``manifest`` as the rotator's field manager (force: the rotator owns its fields).

        A ``metadata.resourceVersion`` in the manifest makes this a conditional write (409 if it changed).
        """
        response = self._request(
            "PATCH",
            self._secret_url(namespace, name),
            namespace,
            name,
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            data=json.dumps(manifest),
            headers={"Content-Type": _APPLY},
            retry_conflicts=False,
        )
        assert response is not None  # noqa: S101 - allow_missing is off, so a response is always returned
        return _json_object(response)

    def server_version(self) -> str:
        """The API server's ``gitVersion`` (answers without authorisation, so it checks reachability only)."""
        response = self._request("GET", f"{self._server}/version", "", "")
        assert response is not None  # noqa: S101
        return str(_json_object(response).get("gitVersion", "unknown"))

    def _secret_url(self, namespace: str, name: str) -> str:
        return f"{self._server}/api/v1/namespaces/{namespace}/secrets/{name}"

    def _request(  # noqa: PLR0913 - one place for every call's retry and error policy
        self,
        method: str,
        url: str,
        namespace: str,
        name: str,
        *,
        allow_missing: bool = False,
        retry_conflicts: bool = True,
        params: dict[str, str] | None = None,
        data: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response | None:
        for attempt in range(self._backoff.attempts):
            last = attempt + 1 == self._backoff.attempts
            self.requests += 1
            try:
                response = self._session.request(
                    method, url, params=params, data=data, headers=headers, timeout=TIMEOUT
                )
            except requests.exceptions.SSLError:
                raise KubeError(
                    f"TLS with the API server {self._server} failed: check the kubeconfig's certificate-authority-data "
                    "and server address",
                    status=None,
                    retryable=False,
                ) from None
            except requests.RequestException as exc:
                if last:
                    raise KubeError(
                        f"cannot reach the API server {self._server}: {type(exc).__name__}",
                        status=None,
                        retryable=True,
                    ) from None
                self._wait(attempt, None, namespace)
                continue
            status = response.status_code
            if response.ok:
                return response
            if status == 404 and allow_missing:  # noqa: PLR2004
                return None
            retryable = status in {429, 500, 502, 503, 504} or (status == 409 and retry_conflicts)  # noqa: PLR2004
            if retryable and not last:
                self._wait(attempt, parse_retry_after(response.headers.get("Retry-After")), namespace)
                continue
            raise _error(method, status, namespace, name, _status_reason(response), retryable=retryable)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, attempt: int, retry_after: float | None, namespace: str) -> None:
        delay = self._backoff.delay(attempt, retry_after)
        log.debug("retrying a Kubernetes request in %.2fs", delay, extra={"fields": {"namespace": namespace}})
        time.sleep(delay)


def _json_object(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise KubeError("the API server's answer is not a JSON object", status=response.status_code, retryable=True)
    return body


def _status_reason(response: requests.Response) -> str:
    """The machine-readable ``reason`` of a Status answer; its free-text message is never passed on."""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("reason", "")) if isinstance(body, dict) else ""


def _error(method: str, status: int, namespace: str, name: str, reason: str, *, retryable: bool) -> KubeError:
    verb = {"GET": "read", "PATCH": "write"}.get(method, method)
    target = f"secret {name!r} in namespace {namespace!r}" if namespace else "the API server"
    hints = {
        401: "the kubeconfig's credentials were not accepted (expired token or certificate?): renew the kubeconfig",
        403: "forbidden: grant the rotator's identity the Role from infra/rbac in this namespace",
        404: "not found (does the namespace exist?)",
        409: "it changed while the rotator was writing it (conflict); the next run will retry",
        422: "the API server rejected the secret as invalid",
    }
    hint = hints.get(status, reason or "request failed")
    return KubeError(f"cannot {verb} {target}: HTTP {status}: {hint}", status=status, retryable=retryable)
