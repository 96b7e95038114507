"""The first look at every request: path, method, caller, body size and shape, before anything is done.

Everything here runs before a client is built or a secret is read, so a refused request has no side effect.
A refusal is a :class:`BadRequestError` carrying its 4xx status (and ``Allow`` / ``WWW-Authenticate``);
the handler answers it as JSON like every other failure.

Body rules (what Cloud Scheduler and ``curl`` send decided them):

* An empty body is a rotation whatever its ``Content-Type``: Cloud Scheduler sends none, or
  ``application/octet-stream``, when a job has no body.
* A body is read only up to :data:`MAX_BODY_BYTES` (413 beyond, from ``Content-Length`` or, for chunked
  bodies, by reading one byte more than the cap and no further).
* A non-empty body must be JSON (400 otherwise) nested at most :data:`MAX_JSON_DEPTH` deep (``json.loads``
  would raise ``RecursionError`` on deep nesting, which is not a ``ValueError``).
* A JSON body declared as a form or plain text (``application/x-www-form-urlencoded``,
  ``multipart/form-data``, ``text/plain``) is refused with 415: those are the types a web page may send to
  ``localhost`` without a CORS preflight, and ``curl -d`` sends the first by mistake. ``application/json``,
  ``application/octet-stream`` (Cloud Scheduler's default for a body) and no type at all are accepted.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from http import HTTPStatus
from typing import IO, Final

import flask
from werkzeug.exceptions import ClientDisconnected

from rotator.config import Settings
from rotator.errors import BadRequestError
from rotator.invokers import CallerVerifier

#: The largest request body read; the documented bodies are a few hundred bytes.
MAX_BODY_BYTES: Final = 64 * 1024
#: Deepest JSON nesting accepted (the documented bodies nest three levels).
MAX_JSON_DEPTH: Final = 16
ALLOWED_METHODS: Final = ("GET", "POST")
_FORM_TYPES: Final = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
_READ_CHUNK: Final = 16 * 1024


def check_route(method: str, path: str) -> None:
    """Refuse any path but ``/`` (404) and any method but GET and POST (405, HEAD and OPTIONS included).

    Raises:
        BadRequestError: with status 404 or 405 (and ``Allow``).
    """
    if path != "/":
        raise BadRequestError("no such path: the function answers at / only", status=HTTPStatus.NOT_FOUND)
    if method not in ALLOWED_METHODS:
        raise BadRequestError(
            f"method {method} is not allowed; use POST to rotate, GET for status",
            status=HTTPStatus.METHOD_NOT_ALLOWED,
            headers={"Allow": ", ".join(ALLOWED_METHODS)},
        )


def _too_large() -> BadRequestError:
    return BadRequestError(
        f"the request body is larger than {MAX_BODY_BYTES} bytes", status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    )


def read_capped(stream: IO[bytes], content_length: int | None) -> bytes:
    """The body, reading at most ``MAX_BODY_BYTES + 1`` bytes whatever the framing.

    Raises:
        BadRequestError: 413 when ``Content-Length`` or the bytes read pass the cap; 400 when the client
            stopped sending before the body ended.
    """
    if content_length is not None and content_length > MAX_BODY_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= MAX_BODY_BYTES:
            chunk = stream.read(min(_READ_CHUNK, MAX_BODY_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (ClientDisconnected, OSError):
        raise BadRequestError("the request body ended before its announced length") from None
    if size > MAX_BODY_BYTES:
        raise _too_large()
    return b"".join(chunks)


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, counted without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == ord("\\"):
                escaped = True
            elif byte == ord('"'):
                in_string = False
        elif byte == ord('"'):
            in_string = True
        elif byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    return deepest


def check_body(raw: bytes, content_type: str | None) -> None:
    """Refuse a non-empty body that is not JSON (400), nests too deep (400) or is declared a form (415).

    Raises:
        BadRequestError: naming what is wrong and what to send instead.
    """
    if not raw.strip():
        return
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in _FORM_TYPES:
        raise BadRequestError(
            f"a request body must be sent as Content-Type: application/json, not {media_type} "
            "(with curl: --json or -H 'Content-Type: application/json')",
            status=HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        )
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise BadRequestError(f"the request body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequestError("the request body is not valid JSON") from None


class RequestGuard:
    """Screens each request; owns the caller verifier so its certificate cache lives across requests."""

    def __init__(self, verifier: CallerVerifier | None = None) -> None:
        self._verifier = verifier or CallerVerifier()

    def screen(self, request: flask.Request, settings: Callable[[], Settings]) -> None:
        """Let the request through, or raise the refusal that answers it.

        Order: route (needs no configuration), caller (needs it), body. On success the body (at most
        :data:`MAX_BODY_BYTES`) is what ``request.get_data()`` returns; on a 413 the rest is never read.

        Raises:
            BadRequestError: the request is refused; nothing was done.
            RotatorError: the configuration is invalid, or callers cannot be verified right now.
        """
        check_route(request.method, request.path)
        policy = settings().invokers
        if policy is not None:
            self._verifier.verify(request.headers.get("Authorization"), policy)
        # Later readers (the handler, the framework's after-request hook) see only what was read here.
        try:
            raw = read_capped(request.stream, request.content_length)
        except BadRequestError:
            request.stream = io.BytesIO()
            raise
        request.stream = io.BytesIO(raw)
        if request.method == "POST":
            check_body(raw, request.content_type)
