"""Structured logs in Cloud Logging's JSON-per-line format, with the request's execution id and trace.

Each line is one JSON object on stdout with ``severity``, ``message`` and any ``fields`` passed through
``extra={"fields": {...}}``. Worker threads carry the request's context along (see :func:`in_context`),
so per-namespace lines can be found by execution id. The value of every live :class:`SecretStr` is
redacted from every line, as a second line of defence behind never logging secrets at all.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, ParamSpec, TypeVar

from rotator.secret import redact

_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_REQUEST: Final[contextvars.ContextVar[Mapping[str, str]]] = contextvars.ContextVar("rotator_request", default=_EMPTY)
_LOGGER_NAME: Final = "rotator"
_P = ParamSpec("_P")
_R = TypeVar("_R")


class JsonFormatter(logging.Formatter):
    """One Cloud Logging structured entry per record."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line, secrets redacted."""
        entry: dict[str, Any] = {
            "severity": "WARNING" if record.levelname == "WARN" else record.levelname,
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        request = _REQUEST.get()
        if execution_id := request.get("execution_id"):
            entry["logging.googleapis.com/labels"] = {"execution_id": execution_id}
        if trace := request.get("trace"):
            entry["logging.googleapis.com/trace"] = trace
        if span := request.get("span_id"):
            entry["logging.googleapis.com/spanId"] = span
        return redact(json.dumps(entry, default=str))


class _StdoutHandler(logging.Handler):
    """Writes to whatever ``sys.stdout`` is at the time, so test capture and the framework's wrappers work."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - logging must never break a rotation
            self.handleError(record)


def configure(level: str) -> logging.Logger:
    """Set up the ``rotator`` logger once (idempotent) and return it."""
    logger = logging.getLogger(_LOGGER_NAME)
    if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
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
    """Attach ``context`` to every log line of this request (undo with :func:`unbind`)."""
    return _REQUEST.set(dict(context))


def unbind(token: contextvars.Token[Mapping[str, str]]) -> None:
    """Detach the context attached by :func:`bind`."""
    _REQUEST.reset(token)


def in_context(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Wrap ``function`` so that it runs, in a worker thread, with the caller's log context."""
    context = contextvars.copy_context()

    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return context.copy().run(function, *args, **kwargs)

    return run
