"""A local emulator of the Crusoe Cloud API, built from its official Swagger files.

The tests, the demo and the benchmark talk to this instead of the real API. Routes,
operation ids, parameter lists and body schemas come from the vendored Swagger files
(``/v1alpha5`` and ``/v1`` are both served); requests are authenticated with an
independent implementation of signature version 1.0 as devkit/crusoe_api/README.md describes it, so this
module is the oracle the product's signer is tested against (it imports nothing from
``function/``). Only the three operations the rotator uses are implemented; every other
documented operation answers 501, undocumented paths 404.

In-process use (pytest fixtures)::

    with CrusoeEmulator() as api:
        api.add_api_key("AKID", "HrbZ3VTUb2YNAq53Md1EsA")
        api.inject("createCcrToken", status=503)  # the next mint answers 503
        ...  # point the product's CRUSOE_API_ENDPOINT at api.base_url

Out of process (demo, benchmark)::

    CRUSOE_SECRET_KEY=... python -m devkit.crusoe_emulator --port 0 --access-key-id AKID

prints one JSON line (``{"base_url": ..., "control_url": ...}``) when ready and runs until
SIGTERM; ``GET {control_url}/tokens`` and ``GET {control_url}/requests`` expose its state.

It also plays the registry's login check, so a test can ask what a kubelet's pull would find: ``is_live(token)``
(or ``GET /v2/`` with Basic credentials, 200 or 401; or ``POST {control_url}/pull``). For interleavings,
``hold()`` performs a request but holds its answer until the returned gate is released, and
``inject(..., reset="before"|"after")`` drops the connection before or after performing the operation.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from devkit.loopback import BackgroundServer, Gate, JsonHandler, RequestRecord, serve_until_signal
from devkit.swagger import Operation, Spec, load_specs

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

#: Largest accepted difference between X-Crusoe-Timestamp and the emulator's clock.
MAX_SKEW = timedelta(minutes=5)
#: Lifetime the API gives a registry token created without ``expires_at`` (about three months).
DEFAULT_TOKEN_LIFETIME = timedelta(days=90)
#: Path prefix of the control surface; outside both API version prefixes.
CONTROL_PREFIX = "/_emulator"
DEFAULT_PREFIX = "/v1alpha5"

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")

_ERROR_MESSAGES = {
    400: "bad_request",
    401: "bad_credential",
    403: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    429: "too_many_requests",
    500: "internal_error",
    501: "not_implemented",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

# ---------------------------------------------------------------------------------------
# Signature version 1.0: an independent implementation (the test oracle).
# ---------------------------------------------------------------------------------------


class AuthError(Exception):
    """A request failed authentication; the message is the ``reason`` of the 401 body."""


def _query_unescape(text: str) -> bytes:
    """Form-decode like Go's ``url.QueryUnescape``: ``+`` is a space, bad ``%`` escapes are errors."""
    raw = text.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte == ord("%"):
            if i + 3 > len(raw) or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
                raise AuthError(f"invalid URL escape {text[i : i + 3]!r} in query")
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
            continue
        out.append(ord(" ") if byte == ord("+") else byte)
        i += 1
    return bytes(out)


def _query_escape(value: bytes) -> str:
    """Form-encode like Go's ``url.QueryEscape``: space -> ``+``, all but unreserved -> ``%XX``."""
    return "".join(chr(b) if b in _UNRESERVED else "+" if b == ord(" ") else f"%{b:02X}" for b in value)


def parse_query(raw_query: str) -> list[tuple[bytes, bytes]]:
    """Split a raw query into decoded ``(key, value)`` pairs in the order sent.

    Raises:
        AuthError: a ``;`` separator or an invalid escape (Go's parser rejects both).
    """
    pairs: list[tuple[bytes, bytes]] = []
    for piece in raw_query.split("&"):
        if not piece:
            continue
        if ";" in piece:
            raise AuthError("';' in query")
        key, _, value = piece.partition("=")
        pairs.append((_query_unescape(key), _query_unescape(value)))
    return pairs


def canonical_query(raw_query: str) -> str:
    """The canonical query of the API (crusoe_api/README.md): decode, group by key, sort keys bytewise, re-encode."""
    grouped: dict[bytes, list[bytes]] = {}
    for key, value in parse_query(raw_query):
        grouped.setdefault(key, []).append(value)
    return "&".join(f"{_query_escape(key)}={_query_escape(value)}" for key in sorted(grouped) for value in grouped[key])


def compute_signature(secret_key: str, path: str, raw_query: str, method: str, timestamp: str) -> str:
    """Return the version-1.0 signature a client must send for this request.

    Args:
        secret_key: URL-safe base64 without padding, as Crusoe issues it.
        path: the URL path including the version prefix.
        raw_query: the query string as sent (canonicalised here).
        method: HTTP method (upper-cased here).
        timestamp: the exact ``X-Crusoe-Timestamp`` value.
    """
    message = f"{path}\n{canonical_query(raw_query)}\n{method.upper()}\n{timestamp}\n"
    key = base64.urlsafe_b64decode(secret_key + "=" * (-len(secret_key) % 4))
    digest = hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def parse_timestamp(value: str) -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset (``Z`` or ``+00:00`` style).

    Raises:
        AuthError: the value is not RFC 3339.
    """
    if not _RFC3339.fullmatch(value):
        raise AuthError("X-Crusoe-Timestamp is not an RFC 3339 time")
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise AuthError("X-Crusoe-Timestamp is not a valid time") from exc


def verify_request(  # noqa: PLR0913 - every input of the signature is a separate value
    *,
    method: str,
    path: str,
    raw_query: str,
    authorization: str | None,
    timestamp: str | None,
    secret_for: Callable[[str], str | None],
    now: datetime,
    max_skew: timedelta = MAX_SKEW,
) -> str:
    """Authenticate one request exactly as crusoe_api/README.md describes; return the access key id.

    Also enforces the support article's rule that the query must be sent already
    sorted by key: a client that signs the canonical query but sends another order is
    rejected like a bad signature, as the real API does.

    Raises:
        AuthError: any check failed; its message says which (for the ``reason`` field).
    """
    if not authorization or not authorization.startswith("Bearer "):
        raise AuthError("missing Bearer authorization")
    version, _, rest = authorization[len("Bearer ") :].partition(":")
    access_key_id, _, signature = rest.rpartition(":")
    if version != "1.0" or not access_key_id or not signature:
        raise AuthError("authorization is not '1.0:<access_key_id>:<signature>'")
    if timestamp is None:
        raise AuthError("missing X-Crusoe-Timestamp")
    sent_at = parse_timestamp(timestamp)
    if abs(now - sent_at) > max_skew:
        raise AuthError("X-Crusoe-Timestamp is too far from the server's clock")
    keys = [key for key, _ in parse_query(raw_query)]
    if keys != sorted(keys):
        raise AuthError("query parameters are not sorted by key")
    secret_key = secret_for(access_key_id)
    if secret_key is None:
        raise AuthError("unknown access key id")
    expected = compute_signature(secret_key, path, raw_query, method, timestamp)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise AuthError("signature mismatch")
    return access_key_id


# ---------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with a ``Z`` suffix and whole seconds, as the API writes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ApiKey:
    """A limited-usage API key (registry token) the emulator holds, including its secret value."""

    alias: str
    key_id: str
    created_at: str
    expires_at: str
    last_used: str
    usage: str
    token: str
    project_id: str | None = None

    def info(self) -> dict[str, Any]:
        """The ``LimitedUsageAPIKeyInfo`` shape the list operation answers (never the token)."""
        body = {k: v for k, v in asdict(self).items() if k != "token"}
        if body["project_id"] is None:
            del body["project_id"]
        return body


@dataclass
class Fault:
    """An injected fault, consumed by matching requests until ``remaining`` reaches 0."""

    target: str
    status: int | None
    remaining: int
    retry_after: int | None = None
    delay: float = 0.0
    malformed: bool = False
    reset: str | None = None
    gate: Gate | None = None

    def matches(self, operation: Operation) -> bool:
        """Match ``*``, an operation id, or ``METHOD /path`` (path after the version prefix)."""
        return self.target in ("*", operation.operation_id, f"{operation.method} {operation.path}")


class _Response(NamedTuple):
    status: int
    body: Any
    headers: dict[str, str]


class _Handler(JsonHandler):
    def handle_any(self, method: str) -> None:
        emulator = self.server.owner
        assert isinstance(emulator, CrusoeEmulator)  # narrows the type for mypy
        raw_path, raw_query = self.raw_path, self.raw_query
        body = self.read_body()
        if method == "GET" and raw_path == REGISTRY_LOGIN_PATH:
            self._registry_login(emulator)
            return
        if raw_path == CONTROL_PREFIX or raw_path.startswith(CONTROL_PREFIX + "/"):
            status, payload = emulator.handle_control(method, raw_path[len(CONTROL_PREFIX) :], body)
            self.send_json(status, payload)
            return
        try:
            response, fault = emulator.handle_api(
                method=method,
                raw_path=raw_path,
                raw_query=raw_query,
                headers=self.headers,
                body=body,
            )
        except Exception as exc:  # noqa: BLE001 - an emulator bug must surface as a 500 and a violation, not a hang
            emulator._violation(f"emulator error on {method} {raw_path}: {exc!r}")
            response, fault = _Response(500, emulator.error(500, "emulator error"), {}), None
        if fault is not None and fault.gate is not None:
            fault.gate.wait()  # the operation is done; only its answer is late
        if fault is not None and fault.reset is not None:
            emulator._record(RequestRecord(method, raw_path, raw_query, 0))
            self.reset_connection()
            return
        data = b"" if response.body is None else json.dumps(response.body).encode()
        if fault is not None and fault.malformed:
            # Cut mid-document, as a proxy dropping the connection would.
            data = data[: len(data) // 2] or b"{"
        if fault is not None and fault.delay > 0:
            emulator.stopping.wait(fault.delay)
        emulator._record(RequestRecord(method, raw_path, raw_query, response.status))
        self.send_bytes(response.status, data, headers=response.headers)

    def _registry_login(self, emulator: CrusoeEmulator) -> None:
        """``GET /v2/`` with Basic credentials, as a registry client (a kubelet's pull) authenticates."""
        token = _basic_password(self.headers.get("Authorization"))
        live = token is not None and emulator.is_live(token)
        status = 200 if live else 401
        headers = {} if live else {"WWW-Authenticate": 'Basic realm="emulated registry"'}
        self.send_json(status, {} if live else {"errors": [{"code": "UNAUTHORIZED"}]}, headers)


#: The registry's login check (``GET /v2/``, Docker registry API v2): what a kubelet's pull authenticates with.
REGISTRY_LOGIN_PATH = "/v2/"


def _basic_password(authorization: str | None) -> str | None:
    """The password of a ``Basic`` Authorization header (a registry token), or None."""
    if not authorization or not authorization.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(authorization[len("Basic ") :], validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep else None


class CrusoeEmulator(BackgroundServer):
    """The emulated API: credentials, keys, a request log and fault injection.

    All public methods are thread-safe; the handler threads share the same lock.
    """

    handler_class = _Handler

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        swagger_dir: Path | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Load the Swagger files and prepare empty state (``start`` binds the port).

        Args:
            host: loopback address to bind.
            port: 0 picks a free port.
            swagger_dir: directory of the Swagger files (default: the vendored ``devkit/crusoe_api``).
            clock: source of "now" for timestamp checks and key times (tests move it).
        """
        super().__init__(host, port)
        self.specs: dict[str, Spec] = load_specs(swagger_dir)
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.max_skew = MAX_SKEW
        self._lock = threading.Lock()
        self._credentials: dict[str, str] = {}
        self._keys: dict[str, ApiKey] = {}
        self._deleted: list[ApiKey] = []
        self._faults: list[Fault] = []
        self._requests: list[RequestRecord] = []
        self._violations: list[str] = []
        self._serial = 0
        self._gates: list[Gate] = []
        self._login_checks = 0
        self._mint_aliases: list[str] = []

    # -- URLs -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1alpha5``: what the product's ``CRUSOE_API_ENDPOINT`` takes."""
        return self.origin + DEFAULT_PREFIX

    @property
    def base_url_v1(self) -> str:
        """The same API under the ``/v1`` prefix."""
        return self.origin + "/v1"

    @property
    def registry_url(self) -> str:
        """``http://127.0.0.1:<port>``: the emulated registry's own host (its login check is ``/v2/``)."""
        return self.origin

    @property
    def control_url(self) -> str:
        """Root of the HTTP control surface for out-of-process users."""
        return self.origin + CONTROL_PREFIX

    # -- credentials and keys -------------------------------------------------------------

    def add_api_key(self, access_key_id: str, secret_key: str) -> None:
        """Register a credential pair the API accepts.

        Raises:
            ValueError: the secret key is not URL-safe base64 (the API would never issue it).
        """
        try:
            base64.urlsafe_b64decode(secret_key + "=" * (-len(secret_key) % 4))
        except ValueError as exc:
            raise ValueError("secret_key must be URL-safe base64 without padding") from exc
        with self._lock:
            self._credentials[access_key_id] = secret_key

    def _new_key_id(self) -> str:
        # Standard base64 of 16 random bytes, like the spec's example ``Hm11C1coQZm2+Aihn9ofYg``.
        # Every other id is forced to hold both ``+`` and ``/`` so that escaping bugs surface early.
        self._serial += 1
        while True:
            key_id = base64.b64encode(secrets.token_bytes(16)).decode().rstrip("=")
            special = "+" in key_id and "/" in key_id
            if (special or self._serial % 2 == 0) and key_id not in self._keys:
                return key_id

    @staticmethod
    def _new_token() -> str:
        return "ccr_" + secrets.token_urlsafe(36)

    def seed_token(
        self,
        alias: str,
        usage: str = "registry",
        created_at: datetime | str | None = None,
        expires_at: datetime | str | None = None,
        *,
        key_id: str | None = None,
        last_used: str = "",
        project_id: str | None = None,
    ) -> ApiKey:
        """Plant a key as if created earlier (foreign or older tokens); returns it, token included."""
        now = self.clock()

        def _text(value: datetime | str | None, default: datetime) -> str:
            if value is None:
                return format_time(default)
            return value if isinstance(value, str) else format_time(value)

        with self._lock:
            created = _text(created_at, now)
            key = ApiKey(
                alias=alias,
                key_id=key_id or self._new_key_id(),
                created_at=created,
                expires_at=_text(expires_at, now + DEFAULT_TOKEN_LIFETIME),
                last_used=last_used,
                usage=usage,
                token=self._new_token(),
                project_id=project_id,
            )
            self._keys[key.key_id] = key
            return key

    def tokens(self) -> list[ApiKey]:
        """Snapshot of the live keys, oldest first (token values included for leak scans)."""
        with self._lock:
            return sorted(self._keys.values(), key=lambda k: (k.created_at, k.key_id))

    def deleted(self) -> list[ApiKey]:
        """Keys deleted through the API, in deletion order."""
        with self._lock:
            return list(self._deleted)

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of the request log ``(method, path, query, status)``; never headers."""
        with self._lock:
            return list(self._requests)

    @property
    def contract_violations(self) -> list[str]:
        """Responses the emulator sent that did not match the Swagger (should stay empty)."""
        with self._lock:
            return list(self._violations)

    def is_live(self, token: str) -> bool:
        """The registry's login check: is ``token`` a key that exists (not revoked) and has not expired?

        What a kubelet pulling an image finds out; the soak's checker asks it for every sampled secret.
        """
        now = self.clock()
        with self._lock:
            self._login_checks += 1
            key = next((k for k in self._keys.values() if hmac.compare_digest(k.token, token)), None)
        return key is not None and parse_timestamp(key.expires_at) > now

    @property
    def mint_aliases(self) -> list[str]:
        """The alias of every authenticated mint request, in arrival order, faulted ones included.

        Shows that a lost mint is never sent again with the same alias (which could mint a duplicate).
        """
        with self._lock:
            return list(self._mint_aliases)

    @property
    def login_checks(self) -> int:
        """How many registry login checks were made (pulls emulated)."""
        with self._lock:
            return self._login_checks

    def hold(self, target: str = "createCcrToken", times: int = 1) -> Gate:
        """Perform the next ``times`` requests to ``target`` but hold their answers until the gate is released.

        ``gate.arrived`` is set once a held request has been performed (a mint has created its token): the
        moment to start a second call "while the first's mint answer is in flight".
        """
        gate = Gate()
        with self._lock:
            self._faults.append(Fault(target, None, times, gate=gate))
            self._gates.append(gate)
        return gate

    def inject(
        self,
        target: str = "*",
        status: int | None = 503,
        times: int = 1,
        *,
        retry_after: int | None = None,
        delay: float = 0.0,
        malformed: bool = False,
        reset: str | None = None,
    ) -> None:
        """Make the next ``times`` authenticated requests to ``target`` fail.

        Args:
            target: an operation id (``createCcrToken``), ``"METHOD /path"`` with the path
                after the version prefix (``"DELETE /users/limited-usage-api-key"``), or ``*``.
            status: answer this status with the API's error body instead of performing the
                operation; ``None`` performs the operation and answers normally (combine
                with ``delay`` or ``malformed``).
            times: how many matching requests the fault affects.
            retry_after: seconds for a ``Retry-After`` header (defaults to 1 for 429).
            delay: seconds to wait before answering, after performing the operation when
                ``status`` is ``None`` (so a client timeout on POST still mints a token,
                like the real failure mode).
            malformed: answer a truncated, unparsable JSON body with the same status.
            reset: ``"before"`` drops the connection with a TCP reset without performing the operation,
                ``"after"`` performs it and then drops the connection (a mint whose answer is lost).
        """
        if reset not in (None, "before", "after"):
            raise ValueError("reset must be None, 'before' or 'after'")
        if status == 429 and retry_after is None:
            retry_after = 1
        if reset is not None:
            status = None
        with self._lock:
            self._faults.append(
                Fault(target, status, times, retry_after=retry_after, delay=delay, malformed=malformed, reset=reset),
            )

    def reset(self) -> None:
        """Forget keys, deleted keys, faults, the request log and violations (credentials stay)."""
        with self._lock:
            gates, self._gates = self._gates, []
            self._keys.clear()
            self._deleted.clear()
            self._faults.clear()
            self._login_checks = 0
            self._mint_aliases.clear()
            self._requests.clear()
            self._violations.clear()
        for gate in gates:
            gate.release()

    def clear_faults(self) -> None:
        """Forget injected faults and release held answers; keys and the request log stay (the next run's world)."""
        with self._lock:
            self._faults.clear()
        self.release_all()

    def release_all(self) -> None:
        """Release every held answer (also done by ``reset`` and ``stop``)."""
        with self._lock:
            gates = list(self._gates)
        for gate in gates:
            gate.release()

    def stop(self) -> None:
        """Release held answers, then stop serving."""
        self.release_all()
        super().stop()

    # -- request processing (called by handler threads) -----------------------------------

    def _take_fault(self, operation: Operation) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.matches(operation):
                    fault.remaining -= 1
                    return fault
            return None

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _violation(self, text: str) -> None:
        with self._lock:
            self._violations.append(text)

    def error(self, status: int, reason: str = "", message: str | None = None) -> dict[str, str]:
        """The API's error body: ``{"code", "message", "reason", "error_id"}``."""
        return {
            "code": str(status),
            "message": message or _ERROR_MESSAGES.get(status, "error"),
            "reason": reason,
            "error_id": str(uuid.uuid4()),
        }

    def create_ccr_token(self, body: dict[str, Any]) -> _Response:
        """``createCcrToken``: mint a registry token; answers only ``{"token"}``."""
        now = self.clock()
        expires_raw = body.get("expires_at")
        if expires_raw is None:
            expires = now + DEFAULT_TOKEN_LIFETIME
        else:
            try:
                expires = parse_timestamp(expires_raw)
            except AuthError:
                return _Response(400, self.error(400, "expires_at is not an RFC 3339 time"), {})
            if expires <= now:
                return _Response(400, self.error(400, "expires_at is in the past"), {})
        with self._lock:
            key = ApiKey(
                alias=body.get("alias") or "",
                key_id=self._new_key_id(),
                created_at=format_time(now),
                expires_at=format_time(expires),
                last_used="",
                usage="registry",
                token=self._new_token(),
            )
            self._keys[key.key_id] = key
        return _Response(200, {"token": key.token}, {})

    def list_keys(self) -> _Response:
        """``getLimitedUsageAPIKeys``: every key, active or expired, without token values."""
        return _Response(200, {"items": [key.info() for key in self.tokens()]}, {})

    def delete_key(self, key_id: str) -> _Response:
        """``deleteLimitedUsageAPIKey``: 200 with an empty body; 404 for an unknown id."""
        with self._lock:
            key = self._keys.pop(key_id, None)
            if key is not None:
                self._deleted.append(key)
        if key is None:
            # The Swagger lists no 404 here; the emulator answers one so that a mis-escaped id
            # (``+`` sent raw decodes to a space) is loud rather than silently "deleted".
            return _Response(404, self.error(404, "no such key_id"), {})
        return _Response(200, None, {})

    def handle_api(
        self,
        *,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Any,
        body: bytes,
    ) -> tuple[_Response, Fault | None]:
        """Route, authenticate, fault, validate and perform one API request.

        The order matters to tests: an unknown route is 404 even unsigned; a bad signature
        is always 401 (injected faults never mask the oracle); faults come before
        validation, as a gateway error would.
        """
        routed = self._route(method, raw_path)
        if isinstance(routed, _Response):
            return routed, None
        spec, operation = routed
        try:
            # One user per emulator: every registered credential sees the same keys.
            verify_request(
                method=method,
                path=raw_path,
                raw_query=raw_query,
                authorization=headers.get("Authorization"),
                timestamp=headers.get("X-Crusoe-Timestamp"),
                secret_for=self._secret_for,
                now=self.clock(),
                max_skew=self.max_skew,
            )
        except AuthError as exc:
            return _Response(401, self.error(401, str(exc)), {}), None
        if operation.operation_id == "createCcrToken":
            self._note_mint(body)
        fault = self._take_fault(operation)
        if fault is not None and fault.reset == "before":
            return _Response(0, None, {}), fault
        if fault is not None and fault.status is not None:
            retry = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return _Response(fault.status, self.error(fault.status, "injected fault"), retry), fault
        query = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in parse_query(raw_query)}
        problem = self._check_parameters(operation, query)
        payload: Any = None
        if problem is None:
            payload, problem = self._parse_body(spec, operation, body)
        if problem is not None:
            return _Response(400, self.error(400, problem), {}), fault
        response = self._perform(operation, payload, query)
        if response.status < 400:
            self._check_contract(spec, operation, response)
        return response, fault

    def _route(self, method: str, raw_path: str) -> tuple[Spec, Operation] | _Response:
        # Longest prefix first: "/v1" is also a prefix of "/v1alpha5/...".
        prefixes = sorted(self.specs, key=len, reverse=True)
        prefix = next((p for p in prefixes if raw_path == p or raw_path.startswith(p + "/")), None)
        if prefix is None:
            return _Response(404, self.error(404, "unknown path"), {})
        spec = self.specs[prefix]
        operation, path_known = spec.match(method, raw_path[len(prefix) :] or "/")
        if operation is None:
            status = 405 if path_known else 404
            return _Response(status, self.error(status, "no such operation"), {})
        return spec, operation

    @staticmethod
    def _check_parameters(operation: Operation, query: dict[str, str]) -> str | None:
        for param in operation.parameters:
            if param.location != "query":
                continue
            if param.required and param.name not in query:
                return f"missing query parameter {param.name!r}"
            if param.enum and param.name in query and query[param.name] not in param.enum:
                return f"invalid {param.name!r}"
        return None

    @staticmethod
    def _parse_body(spec: Spec, operation: Operation, body: bytes) -> tuple[Any, str | None]:
        if operation.body_schema is None:
            return None, None
        if not body.strip():
            return None, ("missing body" if operation.body_required else None)
        try:
            payload = json.loads(body)
        except ValueError:
            return None, "body is not JSON"
        problems = spec.validate(operation.body_schema, payload, "body")
        return payload, ("; ".join(problems) if problems else None)

    def _perform(self, operation: Operation, payload: Any, query: dict[str, str]) -> _Response:
        if operation.operation_id == "createCcrToken":
            return self.create_ccr_token(payload if isinstance(payload, dict) else {})
        if operation.operation_id == "getLimitedUsageAPIKeys":
            return self.list_keys()
        if operation.operation_id == "deleteLimitedUsageAPIKey":
            return self.delete_key(query["key_id"])
        return _Response(501, self.error(501, f"{operation.operation_id} is not emulated"), {})

    def _check_contract(self, spec: Spec, operation: Operation, response: _Response) -> None:
        if not operation.declares(response.status):
            self._violation(f"{operation.operation_id}: status {response.status} not in the spec")
            return
        schema = operation.response_schema(response.status)
        if schema is None:
            if response.body is not None:
                self._violation(f"{operation.operation_id}: body sent where the spec declares none")
            return
        for problem in spec.validate(schema, response.body, "response"):
            self._violation(f"{operation.operation_id}: {problem}")

    def _note_mint(self, body: bytes) -> None:
        try:
            alias = json.loads(body).get("alias")
        except (ValueError, AttributeError):
            alias = None
        with self._lock:
            self._mint_aliases.append(alias if isinstance(alias, str) else "")

    def _gates_snapshot(self) -> list[Gate]:
        with self._lock:
            return list(self._gates)

    def _secret_for(self, access_key_id: str) -> str | None:
        with self._lock:
            return self._credentials.get(access_key_id)

    # -- control surface --------------------------------------------------------------------

    def _control_hold(self, data: dict[str, Any]) -> dict[str, Any]:
        gate = self.hold(str(data.get("target", "createCcrToken")), int(data.get("times", 1)))
        with self._lock:
            index = self._gates.index(gate)
        return {"hold": index}

    def handle_control(self, method: str, sub_path: str, body: bytes) -> tuple[int, Any]:
        """Serve ``/_emulator/*``: state and knobs for out-of-process users (demo, benchmark)."""
        try:
            data = json.loads(body) if body.strip() else {}
        except ValueError:
            return 400, {"error": "body is not JSON"}
        if not isinstance(data, dict):
            return 400, {"error": "body must be an object"}
        getters: dict[str, Callable[[], Any]] = {
            "/health": lambda: {"ok": True},
            "/tokens": lambda: {"items": [asdict(k) for k in self.tokens()]},
            "/deleted": lambda: {"items": [asdict(k) for k in self.deleted()]},
            "/requests": lambda: {"items": [r._asdict() for r in self.requests]},
            "/violations": lambda: {"items": self.contract_violations},
            "/holds": lambda: {"items": [{"arrived": g.count, "released": g.released} for g in self._gates_snapshot()]},
        }
        setters: dict[str, Callable[[dict[str, Any]], Any]] = {
            "/reset": lambda _: self.reset(),
            "/keys": lambda d: self.add_api_key(str(d["access_key_id"]), str(d["secret_key"])),
            "/seed": lambda d: asdict(
                self.seed_token(
                    str(d["alias"]),
                    usage=str(d.get("usage", "registry")),
                    created_at=d.get("created_at"),
                    expires_at=d.get("expires_at"),
                    key_id=d.get("key_id"),
                ),
            ),
            "/inject": lambda d: self.inject(
                str(d.get("target", "*")),
                status=d.get("status", 503),
                times=int(d.get("times", 1)),
                retry_after=d.get("retry_after"),
                delay=float(d.get("delay", 0.0)),
                malformed=bool(d.get("malformed", False)),
                reset=d.get("reset"),
            ),
            "/hold": self._control_hold,
            "/release": lambda _: self.release_all(),
            "/pull": lambda d: {"live": self.is_live(str(d["token"]))},
        }
        path = sub_path.rstrip("/")
        if method == "GET" and path in getters:
            return 200, getters[path]()
        if method == "POST" and path in setters:
            try:
                return 200, setters[path](data) or {}
            except (KeyError, TypeError, ValueError) as exc:
                return 400, {"error": f"bad control request: {exc}"}
        return 404, {"error": "unknown control path"}


def main(argv: list[str] | None = None) -> int:
    """Run the emulator as a process: one JSON line on stdout when ready, stop on SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m devkit.crusoe_emulator",
        description="Run the Crusoe Cloud API emulator on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    parser.add_argument(
        "--access-key-id",
        default=os.environ.get("CRUSOE_ACCESS_KEY"),
        help="accepted access key id (default: $CRUSOE_ACCESS_KEY)",
    )
    parser.add_argument(
        "--secret-key",
        default=os.environ.get("CRUSOE_SECRET_KEY"),
        help="its secret key (default: $CRUSOE_SECRET_KEY; prefer the variable: argv is visible in ps)",
    )
    args = parser.parse_args(argv)
    if not args.access_key_id or not args.secret_key:
        parser.error("need an access key id and a secret key (flags or CRUSOE_ACCESS_KEY/CRUSOE_SECRET_KEY)")
    emulator = CrusoeEmulator(args.host, args.port)
    emulator.add_api_key(args.access_key_id, args.secret_key)
    emulator.start()
    return serve_until_signal(
        emulator,
        {
            "base_url": emulator.base_url,
            "base_url_v1": emulator.base_url_v1,
            "control_url": emulator.control_url,
            "registry_url": emulator.registry_url,
            "pid": os.getpid(),
        },
    )


if __name__ == "__main__":
    raise SystemExit(main())
