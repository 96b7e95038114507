"""A local Google Secret Manager (REST) with the GCE metadata server that authorises it.

The product reads its kubeconfig and Crusoe credentials with google-auth's application
default credentials and an ``AuthorizedSession``. Running that code unchanged against a
local server means faking both ends of the real flow on one loopback port:

* the GCE metadata server that ``google.auth.default()`` detects (``GET /`` answering
  ``Metadata-Flavor: Google``) and that issues access tokens
  (``/computeMetadata/v1/instance/service-accounts/default/token``);
* Secret Manager's ``GET /v1/projects/{p}/secrets/{s}/versions/{v}:access``, which only
  accepts ``Authorization: Bearer`` tokens that this metadata server issued; and the writes a
  self-renewing kubeconfig makes: ``POST .../secrets/{s}:addVersion`` (CRC32C checked), ``GET
  .../secrets/{s}/versions`` (newest first, paged) and ``POST .../versions/{v}:disable``.

Pointing a client at it takes environment variables only (``env()``): google-auth reads
``GCE_METADATA_HOST`` (token endpoint) and ``GCE_METADATA_IP`` (detection ping). Note that
google-auth reads ``GCE_METADATA_HOST`` and ``NO_GCE_CHECK`` once, when
``google.auth.compute_engine._metadata`` is first imported: a subprocess gets them from
its environment, an in-process test should call ``apply_env(monkeypatch)``, which also
patches those module globals.

Out of process (demo, benchmark)::

    python -m devkit.secret_manager --port 0 --secret projects/p/secrets/kubeconfig=@kubeconfig.yaml

prints one JSON line (endpoint, metadata host, env, version names) and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self
from urllib.parse import parse_qs

import google_crc32c

from devkit.loopback import BackgroundServer, JsonHandler, RequestRecord, serve_until_signal

if TYPE_CHECKING:
    from collections.abc import Callable

DEFAULT_PROJECT = "rotator-test"
DEFAULT_SERVICE_ACCOUNT = f"ccr-rotator@{DEFAULT_PROJECT}.iam.gserviceaccount.com"
DEFAULT_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
CONTROL_PREFIX = "/_secretmanager"

_ACCESS = re.compile(r"^/v1/projects/(?P<project>[^/]+)/secrets/(?P<secret>[^/]+)/versions/(?P<version>[^/:]+):access$")
_ADD_VERSION = re.compile(r"^/v1/projects/(?P<project>[^/]+)/secrets/(?P<secret>[^/:]+):addVersion$")
_LIST_VERSIONS = re.compile(r"^/v1/projects/(?P<project>[^/]+)/secrets/(?P<secret>[^/:]+)/versions$")
_DISABLE = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/secrets/(?P<secret>[^/]+)/versions/(?P<version>[0-9]+):disable$"
)
_METADATA_PREFIX = "/computeMetadata/v1/"
_SA_PATH = re.compile(r"^instance/service-accounts/(?P<account>[^/]+)/(?P<leaf>[^/]*)$")
_GOOGLE_STATUS = {
    400: "FAILED_PRECONDITION",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_FLAVOR = {"Metadata-Flavor": "Google"}


def google_error(status: int, message: str, code_name: str | None = None) -> dict[str, Any]:
    """Google's JSON error envelope: ``{"error": {"code", "message", "status"}}``."""
    return {"error": {"code": status, "message": message, "status": code_name or _GOOGLE_STATUS.get(status, "UNKNOWN")}}


def crc32c(data: bytes) -> int:
    """CRC32C of ``data``, as Secret Manager computes ``dataCrc32c``."""
    return int(google_crc32c.value(data))


class MonkeyPatch(Protocol):
    """The part of pytest's ``monkeypatch`` that ``apply_env`` uses."""

    def setenv(self, name: str, value: str, prepend: str | None = None) -> None:
        """Set an environment variable until the test ends."""

    def delenv(self, name: str, raising: bool = True) -> None:  # noqa: FBT001, FBT002 - pytest's signature
        """Remove an environment variable until the test ends."""

    def setattr(self, target: object, name: str, value: object, raising: bool = True) -> None:  # noqa: FBT001, FBT002
        """Replace an attribute until the test ends."""


@dataclass
class SecretVersion:
    """One stored version: its payload and state (``ENABLED``, ``DISABLED``, ``DESTROYED``)."""

    name: str
    data: bytes
    state: str = "ENABLED"
    create_time: float = 0.0  # seconds since the epoch, by the server's clock

    def to_json(self) -> dict[str, Any]:
        """The ``SecretVersion`` resource as the list call shows it (no payload)."""
        created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.create_time))
        micros = int(self.create_time % 1 * 1_000_000)
        return {"name": self.name, "state": self.state, "createTime": f"{created}.{micros:06d}Z"}


@dataclass
class _Fault:
    target: str  # "access" or "token"
    status: int | None  # None: answer normally (after ``delay``)
    remaining: int
    secret: str | None = None  # access faults only: this secret id, or every secret
    delay: float = 0.0


class SecretManagerServer(BackgroundServer):
    """Fake Secret Manager + GCE metadata server on one loopback port.

    All public methods are thread-safe.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        project_id: str = DEFAULT_PROJECT,
        service_account_email: str = DEFAULT_SERVICE_ACCOUNT,
        token_lifetime: int = 3599,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Prepare empty state (``start`` binds the port).

        Args:
            host: loopback address to bind.
            port: 0 picks a free port.
            project_id: what the metadata server reports as the project.
            service_account_email: the fake VM's default service account.
            token_lifetime: ``expires_in`` of issued access tokens, in seconds.
            clock: source of time for token expiry (tests move it).
        """
        super().__init__(host, port)
        self.project_id = project_id
        self.service_account_email = service_account_email
        self.token_lifetime = token_lifetime
        self.clock = clock
        self._lock = threading.Lock()
        self._secrets: dict[tuple[str, str], list[SecretVersion]] = {}
        self._denied: set[tuple[str, str]] = set()
        self._write_denied: set[tuple[str, str]] = set()
        self._tokens: dict[str, float] = {}
        self._faults: list[_Fault] = []
        self._bad_crc = 0
        self._requests: list[RequestRecord] = []
        self._tokens_issued = 0
        self._sdk_dir: tempfile.TemporaryDirectory[str] | None = None

    # -- URLs and client environment -------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``: the product calls ``{endpoint}/v1/{name}:access``."""
        return self.origin

    @property
    def metadata_host(self) -> str:
        """``127.0.0.1:<port>``: the value of ``GCE_METADATA_HOST`` / ``GCE_METADATA_IP``."""
        return f"{self.host}:{self.port}"

    def start(self) -> Self:
        """Bind and serve; also make an empty gcloud config folder (see ``env``)."""
        if self._sdk_dir is None:
            self._sdk_dir = tempfile.TemporaryDirectory(prefix="fake-gcloud-")
        super().start()
        return self

    def stop(self) -> None:
        """Stop serving and remove the empty gcloud config folder."""
        super().stop()
        if self._sdk_dir is not None:
            self._sdk_dir.cleanup()
            self._sdk_dir = None

    def env(self) -> dict[str, str]:
        """Environment a client process needs to reach this server through ADC.

        ``CLOUDSDK_CONFIG`` points at an empty folder so a developer's own
        ``gcloud auth application-default login`` file cannot win over the metadata
        server; ``NO_GCE_CHECK=false`` overrides an inherited ``true``. The client must
        also run without ``GOOGLE_APPLICATION_CREDENTIALS`` (``apply_env`` unsets it).
        """
        if self._sdk_dir is None:
            raise RuntimeError("server not started")
        return {
            "GCE_METADATA_HOST": self.metadata_host,
            "GCE_METADATA_ROOT": self.metadata_host,
            "GCE_METADATA_IP": self.metadata_host,
            "NO_GCE_CHECK": "false",
            "CLOUDSDK_CONFIG": self._sdk_dir.name,
            "SECRET_MANAGER_ENDPOINT": self.endpoint,
        }

    def apply_env(self, monkeypatch: MonkeyPatch) -> None:
        """Point this process's google-auth at the server for the duration of a test.

        Sets ``env()`` and unsets ``GOOGLE_APPLICATION_CREDENTIALS`` and
        ``GOOGLE_CLOUD_PROJECT``; also patches the values google-auth read at import time.
        """
        from google.auth.compute_engine import _metadata  # noqa: PLC0415 - only for in-process tests

        for name, value in self.env().items():
            monkeypatch.setenv(name, value)
        for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", self.metadata_host)
        monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", False)

    # -- secrets --------------------------------------------------------------------------------

    def add_version(self, project: str, secret: str, data: bytes) -> str:
        """Add a version to a secret (creating the secret); return its full version name."""
        with self._lock:
            versions = self._secrets.setdefault((project, secret), [])
            name = f"projects/{project}/secrets/{secret}/versions/{len(versions) + 1}"
            versions.append(SecretVersion(name=name, data=bytes(data), create_time=self.clock()))
            return name

    def versions(self, project: str, secret: str) -> list[SecretVersion]:
        """A snapshot of a secret's versions, oldest first."""
        with self._lock:
            return [replace(v) for v in self._secrets.get((project, secret), [])]

    def deny_writes(self, project: str, secret: str) -> None:
        """Answer 403 to addVersion, list and disable on this secret (a runtime account that may only read)."""
        with self._lock:
            self._write_denied.add((project, secret))

    def set_state(self, version_name: str, state: str) -> None:
        """Disable, destroy or re-enable a version (``ENABLED``/``DISABLED``/``DESTROYED``).

        Raises:
            KeyError: no such version.
        """
        if state not in ("ENABLED", "DISABLED", "DESTROYED"):
            raise ValueError(f"unknown state {state!r}")
        with self._lock:
            for versions in self._secrets.values():
                for version in versions:
                    if version.name == version_name:
                        version.state = state
                        if state == "DESTROYED":
                            version.data = b""
                        return
        raise KeyError(version_name)

    def deny(self, project: str, secret: str) -> None:
        """Answer 403 PERMISSION_DENIED for this secret until ``allow`` (missing IAM binding)."""
        with self._lock:
            self._denied.add((project, secret))

    def allow(self, project: str, secret: str) -> None:
        """Undo ``deny``."""
        with self._lock:
            self._denied.discard((project, secret))

    def inject(
        self,
        status: int | None = 503,
        times: int = 1,
        *,
        target: str = "access",
        secret: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next ``times`` requests to ``target`` with ``status`` and Google's error body.

        Args:
            status: HTTP status (503 UNAVAILABLE, 429, 500, 403, ...); None answers normally (use with ``delay``).
            times: how many requests the fault affects.
            target: ``"access"`` (Secret Manager) or ``"token"`` (the metadata token endpoint).
            secret: with ``"access"``, only requests for this secret id (``rotator-kubeconfig``) match.
            delay: seconds to wait before answering (longer than a client's timeout: a timeout).
        """
        if target not in ("access", "token"):
            raise ValueError("target must be 'access' or 'token'")
        with self._lock:
            self._faults.append(_Fault(target, status, times, secret=secret, delay=delay))

    def clear_faults(self) -> None:
        """Forget injected faults and denials; secrets, tokens and the request log stay (the next run's world)."""
        with self._lock:
            self._faults.clear()
            self._denied.clear()
            self._write_denied.clear()
            self._bad_crc = 0

    def corrupt_crc32c(self, times: int = 1) -> None:
        """Make the next ``times`` successful accesses carry a wrong ``dataCrc32c``."""
        with self._lock:
            self._bad_crc += times

    def revoke_tokens(self) -> None:
        """Invalidate every issued access token (the next access answers 401)."""
        with self._lock:
            self._tokens.clear()

    @property
    def tokens_issued(self) -> int:
        """How many access tokens the metadata server handed out."""
        with self._lock:
            return self._tokens_issued

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of the request log ``(method, path, query, status)``; never headers."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget secrets, denials, faults, tokens and the request log."""
        with self._lock:
            self._secrets.clear()
            self._denied.clear()
            self._write_denied.clear()
            self._faults.clear()
            self._bad_crc = 0
            self._tokens.clear()
            self._requests.clear()
            self._tokens_issued = 0

    # -- request processing (handler threads) --------------------------------------------------

    def _take_fault(self, target: str, secret: str | None = None) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.target == target and fault.secret in (None, secret):
                    fault.remaining -= 1
                    break
            else:
                return None
        if fault.delay > 0:
            self.stopping.wait(fault.delay)
        return fault

    def record(self, record: RequestRecord) -> None:
        """Append to the request log (called by the handler)."""
        with self._lock:
            self._requests.append(record)

    def _token_valid(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        token = authorization[len("Bearer ") :]
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > self.clock()

    def access(self, project: str, secret: str, version: str, authorization: str | None) -> tuple[int, Any]:  # noqa: PLR0911 - one exit per Google error
        """``versions:access``: authenticate, authorise, resolve ``latest``, answer the payload."""
        if not self._token_valid(authorization):
            return 401, google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential.",
            )
        fault = self._take_fault("access", secret)
        if fault is not None and fault.status is not None:
            return fault.status, google_error(fault.status, "Injected fault.")
        requested = f"projects/{project}/secrets/{secret}/versions/{version}"
        with self._lock:
            if (project, secret) in self._denied:
                return 403, google_error(
                    403,
                    f"Permission 'secretmanager.versions.access' denied for resource '{requested}' "
                    "(or it may not exist).",
                )
            versions = list(self._secrets.get((project, secret), []))
            found = self._resolve(versions, version)
            if found is None:
                if not versions:
                    missing = f"Secret [projects/{project}/secrets/{secret}] not found or has no versions."
                    return 404, google_error(404, missing)
                return 404, google_error(404, f"Secret Version [{requested}] not found.")
            if found.state != "ENABLED":
                return 400, google_error(400, f"Secret Version [{found.name}] is in {found.state} state.")
            checksum = crc32c(found.data)
            if self._bad_crc > 0:
                self._bad_crc -= 1
                checksum ^= 0x5A5A5A5A
        payload = {"data": base64.b64encode(found.data).decode("ascii"), "dataCrc32c": str(checksum)}
        return 200, {"name": found.name, "payload": payload}

    def _authorise_write(
        self, project: str, secret: str, permission: str, authorization: str | None
    ) -> tuple[int, Any] | None:
        """The error answer for a write this caller may not make, or None."""
        if not self._token_valid(authorization):
            return 401, google_error(401, "Request had invalid authentication credentials.")
        with self._lock:
            denied = (project, secret) in self._denied or (project, secret) in self._write_denied
            exists = (project, secret) in self._secrets
        if denied:
            resource = f"projects/{project}/secrets/{secret}"
            return 403, google_error(403, f"Permission '{permission}' denied for resource '{resource}'.")
        if not exists:
            return 404, google_error(404, f"Secret [projects/{project}/secrets/{secret}] not found.")
        return None

    def add_version_request(self, project: str, secret: str, body: bytes, authorization: str | None) -> tuple[int, Any]:
        """``secrets:addVersion``: the payload is base64, and its ``dataCrc32c`` must match when given."""
        refused = self._authorise_write(project, secret, "secretmanager.versions.add", authorization)
        if refused is not None:
            return refused
        try:
            payload = json.loads(body)["payload"]
            data = base64.b64decode(payload["data"], validate=True)
            checksum = payload.get("dataCrc32c")
        except (ValueError, KeyError, TypeError):
            return 400, google_error(400, "Invalid payload.", "INVALID_ARGUMENT")
        if checksum is not None and int(checksum) != crc32c(data):
            return 400, google_error(400, "Checksum mismatch.", "INVALID_ARGUMENT")
        name = self.add_version(project, secret, data)
        with self._lock:
            added = next(v for v in self._secrets[(project, secret)] if v.name == name)
            return 200, added.to_json()

    def list_versions_request(
        self, project: str, secret: str, query: dict[str, list[str]], authorization: str | None
    ) -> tuple[int, Any]:
        """``secrets.versions.list``: newest first, ``pageSize`` (default 25) and ``pageToken`` (an offset)."""
        refused = self._authorise_write(project, secret, "secretmanager.versions.list", authorization)
        if refused is not None:
            return refused
        size = int((query.get("pageSize") or ["25"])[0])
        start = int((query.get("pageToken") or ["0"])[0] or 0)
        with self._lock:
            newest_first = [v.to_json() for v in reversed(self._secrets[(project, secret)])]
        page: dict[str, Any] = {"versions": newest_first[start : start + size], "totalSize": len(newest_first)}
        if start + size < len(newest_first):
            page["nextPageToken"] = str(start + size)
        return 200, page

    def disable_request(self, project: str, secret: str, version: str, authorization: str | None) -> tuple[int, Any]:
        """``versions:disable``: an ENABLED or DISABLED version becomes DISABLED; a DESTROYED one stays."""
        refused = self._authorise_write(project, secret, "secretmanager.versions.disable", authorization)
        if refused is not None:
            return refused
        with self._lock:
            versions = self._secrets[(project, secret)]
            if not 1 <= int(version) <= len(versions):
                return 404, google_error(404, f"Secret Version [{version}] not found.")
            found = versions[int(version) - 1]
            if found.state == "DESTROYED":
                return 400, google_error(400, f"Secret Version [{found.name}] is in DESTROYED state.")
            found.state = "DISABLED"
            return 200, found.to_json()

    @staticmethod
    def _resolve(versions: list[SecretVersion], version: str) -> SecretVersion | None:
        if version == "latest":
            enabled = [v for v in versions if v.state == "ENABLED"]
            return enabled[-1] if enabled else (versions[-1] if versions else None)
        if version.isdigit() and 1 <= int(version) <= len(versions):
            return versions[int(version) - 1]
        return None

    def metadata(self, sub_path: str, query: dict[str, list[str]]) -> tuple[int, str, Any]:
        """Answer one metadata request; returns ``(status, content_type, body)``."""
        if sub_path == "project/project-id":
            return 200, "application/text", self.project_id
        if sub_path == "project/numeric-project-id":
            return 200, "application/text", "123456789012"
        if sub_path == "universe/universe-domain":
            return 200, "application/text", "googleapis.com"
        match = _SA_PATH.match(sub_path)
        if match is None or match["account"] not in ("default", self.service_account_email):
            return 404, "text/html", "Not Found"
        return self._service_account(match["leaf"], query)

    def _service_account(self, leaf: str, query: dict[str, list[str]]) -> tuple[int, str, Any]:
        if leaf == "token":
            return self._issue_token()
        if leaf == "" and query.get("recursive") == ["true"]:
            info = {"aliases": ["default"], "email": self.service_account_email, "scopes": list(DEFAULT_SCOPES)}
            return 200, "application/json", info
        texts = {
            "": "aliases\nemail\nidentity\nscopes\ntoken\n",
            "email": self.service_account_email,
            "scopes": "\n".join(DEFAULT_SCOPES) + "\n",
        }
        if leaf in texts:
            return 200, "application/text", texts[leaf]
        return 404, "text/html", "Not Found"

    def _issue_token(self) -> tuple[int, str, Any]:
        fault = self._take_fault("token")
        if fault is not None and fault.status is not None:
            return fault.status, "application/text", "injected fault"
        token = "ya29.fake-" + secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[token] = self.clock() + self.token_lifetime
            self._tokens_issued += 1
        body = {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        return 200, "application/json", body

    def handle_control(self, method: str, sub_path: str, body: bytes) -> tuple[int, Any]:
        """Serve ``/_secretmanager/*`` for out-of-process users."""
        path = sub_path.rstrip("/")
        if method == "GET" and path == "/health":
            return 200, {"ok": True}
        if method == "GET" and path == "/requests":
            return 200, {"items": [r._asdict() for r in self.requests]}
        if method == "POST" and path == "/versions":
            try:
                data = json.loads(body)
                name = self.add_version(str(data["project"]), str(data["secret"]), base64.b64decode(data["data"]))
            except (KeyError, TypeError, ValueError) as exc:
                return 400, {"error": f"bad control request: {exc}"}
            return 200, {"name": name}
        return 404, {"error": "unknown control path"}


class _Handler(JsonHandler):
    def handle_any(self, method: str) -> None:
        owner = self.server.owner
        assert isinstance(owner, SecretManagerServer)  # narrows the type for mypy
        path, query = self.raw_path, self.raw_query
        body = self.read_body()
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            status, payload = owner.handle_control(method, path[len(CONTROL_PREFIX) :], body)
            self.send_json(status, payload)
            return
        if path == "/" or path.startswith(_METADATA_PREFIX) or path == _METADATA_PREFIX.rstrip("/"):
            status = self._metadata(owner, method, path, query)
        else:
            status = self._secret_manager(owner, method, path, body)
        owner.record(RequestRecord(method, path, query, status))

    def _metadata(self, owner: SecretManagerServer, method: str, path: str, query: str) -> int:
        if self.headers.get("Metadata-Flavor") != "Google":
            # The real server refuses requests without the header (SSRF protection).
            self.send_bytes(403, b"Missing required header: Metadata-Flavor", "text/html", _FLAVOR)
            return 403
        if path == "/" or path == _METADATA_PREFIX.rstrip("/"):
            self.send_bytes(200, b"computeMetadata/\n", "application/text", _FLAVOR)
            return 200
        if method != "GET":
            self.send_bytes(405, b"Method Not Allowed", "text/html", _FLAVOR)
            return 405
        status, content_type, body = owner.metadata(path[len(_METADATA_PREFIX) :], parse_qs(query))
        data = json.dumps(body).encode() if content_type == "application/json" else str(body).encode()
        self.send_bytes(status, data, content_type, _FLAVOR)
        return status

    def _secret_manager(self, owner: SecretManagerServer, method: str, path: str, body: bytes) -> int:
        authorization = self.headers.get("Authorization")
        status, payload = 404, google_error(404, f"Method not found: {method} {path}")
        if method == "GET" and (match := _ACCESS.match(path)):
            status, payload = owner.access(match["project"], match["secret"], match["version"], authorization)
        elif method == "POST" and (match := _ADD_VERSION.match(path)):
            status, payload = owner.add_version_request(match["project"], match["secret"], body, authorization)
        elif method == "GET" and (match := _LIST_VERSIONS.match(path)):
            query = parse_qs(self.raw_query)
            status, payload = owner.list_versions_request(match["project"], match["secret"], query, authorization)
        elif method == "POST" and (match := _DISABLE.match(path)):
            status, payload = owner.disable_request(match["project"], match["secret"], match["version"], authorization)
        self.send_json(status, payload)
        return status


SecretManagerServer.handler_class = _Handler


def _parse_secret_arg(text: str) -> tuple[str, str, bytes]:
    """Parse ``projects/P/secrets/S=@FILE`` (or ``=VALUE``) from the command line."""
    name, sep, value = text.partition("=")
    match = re.fullmatch(r"projects/([^/]+)/secrets/([^/]+)", name)
    if not sep or match is None:
        raise argparse.ArgumentTypeError(f"expected projects/P/secrets/S=@FILE, got {text!r}")
    data = Path(value[1:]).read_bytes() if value.startswith("@") else value.encode()
    return match[1], match[2], data


def main(argv: list[str] | None = None) -> int:
    """Run the server as a process: one JSON line on stdout when ready, stop on SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m devkit.secret_manager",
        description="Run a fake Secret Manager and GCE metadata server on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    parser.add_argument("--project-id", default=DEFAULT_PROJECT, help="project the metadata server reports")
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        type=_parse_secret_arg,
        metavar="projects/P/secrets/S=@FILE",
        help="add a version from a file (repeatable; =VALUE also works but shows in ps)",
    )
    args = parser.parse_args(argv)
    server = SecretManagerServer(args.host, args.port, project_id=args.project_id)
    versions = {f"projects/{p}/secrets/{s}": server.add_version(p, s, data) for p, s, data in args.secret}
    server.start()
    return serve_until_signal(
        server,
        {
            "endpoint": server.endpoint,
            "metadata_host": server.metadata_host,
            "control_url": server.endpoint + CONTROL_PREFIX,
            "env": server.env(),
            "versions": versions,
            "pid": os.getpid(),
        },
    )


if __name__ == "__main__":
    raise SystemExit(main())
