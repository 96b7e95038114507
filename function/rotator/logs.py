"""Structured logs in Cloud Logging's JSON-per-line format, with the request's execution id and trace.

Each line is one JSON object on stdout with ``severity``, ``message`` and any ``fields`` passed through
``extra={"fields": {...}}``. Worker threads carry the request's context along (see :func:`in_context`),
so per-namespace lines can be found by execution id.

Every registered secret (see :mod:`rotator.secret`) is redacted from every line, as a second line of
defence behind never logging secrets at all: from the message and each field *before* JSON encoding (so a
PEM key's newlines or quotes cannot hide it), and from the encoded line once more. The handler sits on the
root logger, so Flask's and werkzeug's error logs, gunicorn's, urllib3's and the Kubernetes client's go
through the same formatter. An exception is logged as its type and the code locations of its traceback,
never its message or local values: a library's message may quote what it was parsing.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import Any, Final, ParamSpec, TypeVar

from rotator.secret import close_scope, open_scope, redact

_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_REQUEST: Final[contextvars.ContextVar[Mapping[str, str]]] = contextvars.ContextVar("rotator_request", default=_EMPTY)
_LOGGER_NAME: Final = "rotator"
#: Loggers that come with handlers of their own: their records are sent to the root handler instead.
_ROUTED: Final = ("gunicorn.error", "gunicorn.access")
_P = ParamSpec("_P")
_R = TypeVar("_R")


class JsonFormatter(logging.Formatter):
    """One Cloud Logging structured entry per record."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line, secrets redacted."""
        entry: dict[str, Any] = {
            "severity": "WARNING" if record.levelname == "WARN" else record.levelname,
            "message": redact(record.getMessage()),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            entry.update({redact(str(key)): _redacted(value) for key, value in fields.items()})
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
            entry["stack"] = _locations(record.exc_info[2])
        request = _REQUEST.get()
        if execution_id := request.get("execution_id"):
            entry["logging.googleapis.com/labels"] = {"execution_id": execution_id}
        if trace := request.get("trace"):
            entry["logging.googleapis.com/trace"] = trace
        if span := request.get("span_id"):
            entry["logging.googleapis.com/spanId"] = span
        return redact(json.dumps(entry, default=str))


def _redacted(value: object) -> object:
    """``value`` with every registered secret redacted from its text, before it is JSON-encoded."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {redact(str(key)): _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redacted(item) for item in value]
    return redact(str(value))


def _locations(trace: TracebackType | None) -> list[str]:
    """Where an exception passed through: file, line and function of each frame; no message, no values."""
    return [f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in traceback.extract_tb(trace)]


class _StdoutHandler(logging.Handler):
    """Writes to whatever ``sys.stdout`` is at the time, so test capture and the framework's wrappers work."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - logging must never break a rotation
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        """Report a record that could not be written without its message or arguments (they may hold secrets).

        The standard handler prints the record's format string and arguments to stderr.
        """
        notice = {"severity": "ERROR", "message": "a log record could not be written", "logger": record.name}
        with contextlib.suppress(OSError, ValueError):  # nowhere left to report to
            sys.stderr.write(json.dumps(notice) + "\n")


def configure(level: str) -> logging.Logger:
    """Route every log record through one redacting JSON handler on the root logger (idempotent).

    Plain ``StreamHandler``s already on the root (``logging.basicConfig``, the functions framework's
    ``LOG_EXECUTION_ID`` set-up) would print the same records unredacted, so they are removed; gunicorn's
    loggers lose their own handlers and propagate to the root. Returns the ``rotator`` logger at ``level``.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    if not any(isinstance(handler, _StdoutHandler) for handler in root.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    for name in _ROUTED:
        routed = logging.getLogger(name)
        for handler in list(routed.handlers):
            routed.removeHandler(handler)
        routed.propagate = True
    logger = logging.getLogger(_LOGGER_NAME)
    logger.setLevel(level)
    return logger


def request_context(headers: Mapping[str, str], project: str | None) -> dict[str, str]:
    """Execution id and trace from the request headers Cloud Run and Cloud Scheduler send."""
    context: dict[str, str] = {}
    if execution_id := headers.get("Function-Execution-Id"):
        context["execution_id"] = execution_id
    trace_header = headers.get("X-Cloud-Trace-Context", "")
    trace_id, _, rest = trace_header.partition("/")
    if trace_id and project:
        context["trace"] = f"projects/{project}/traces/{trace_id}"
        span = rest.split(";", 1)[0]
        if span:
            context["span_id"] = span
    return context


def bind(context: Mapping[str, str]) -> contextvars.Token[Mapping[str, str]]:
    """Attach ``context`` to every log line of this request (undo with :func:`unbind`).

    Also opens the request's redaction scope: every secret created until :func:`unbind` stays redacted for
    the whole request, even after its wrapper is garbage-collected (see :mod:`rotator.secret`).
    """
    open_scope()
    return _REQUEST.set(dict(context))


def unbind(token: contextvars.Token[Mapping[str, str]]) -> None:
    """Detach the context attached by :func:`bind` and close the request's redaction scope."""
    try:
        _REQUEST.reset(token)
    finally:
        close_scope()


def in_context(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Wrap ``function`` so that it runs, in a worker thread, with the caller's log context."""
    context = contextvars.copy_context()

    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return context.copy().run(function, *args, **kwargs)

    return run
