"""HTTP glue: method dispatch, request body, error-to-status mapping. The work is in :mod:`rotator.rotation`."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, Final

import flask

from rotator import logs
from rotator.clients import Clients, connect
from rotator.config import Settings, load_settings, log_level_from
from rotator.errors import BadRequestError, RotatorError
from rotator.rotation import Report, Rotation

log = logging.getLogger(__name__)

_ALLOWED_FIELDS: Final = {"dry_run"}


def parse_body(raw: bytes) -> bool:
    """The ``dry_run`` flag from an optional JSON object body.

    Raises:
        BadRequestError: the body is not a JSON object, has unknown fields, or ``dry_run`` is not a boolean.
    """
    if not raw.strip():
        return False
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequestError("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequestError("the request body must be a JSON object")
    unknown = sorted(set(body) - _ALLOWED_FIELDS)
    if unknown:
        raise BadRequestError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_ALLOWED_FIELDS))}")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise BadRequestError("dry_run must be true or false")
    return dry_run


def _answer(body: Mapping[str, Any], status: int, **headers: str) -> flask.Response:
    response = flask.Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers.update(headers)
    return response


def _status_for(error: RotatorError) -> int:
    return 503 if error.retryable else 500


class Handler:
    """Serves the ``rotate`` HTTP target; configuration is parsed once, on the first request."""

    def __init__(
        self,
        environ: Mapping[str, str],
        *,
        connector: Callable[..., Clients] = connect,
    ) -> None:
        self._environ = environ
        self._connector = connector
        self._settings: Settings | None = None
        logs.configure(log_level_from(environ))

    def __call__(self, request: flask.Request) -> flask.Response:
        """Answer one request."""
        headers = {key: value for key, value in request.headers.items()}  # noqa: C416 - Headers is a multi-dict
        token = logs.bind(logs.request_context(headers, self._environ.get("GOOGLE_CLOUD_PROJECT")))
        try:
            return self._dispatch(request)
        finally:
            logs.unbind(token)

    def _dispatch(self, request: flask.Request) -> flask.Response:
        if request.method not in {"GET", "POST"}:
            return _answer(
                {"error": f"method {request.method} is not allowed; use POST to rotate, GET for status"},
                405,
                Allow="GET, POST",
            )
        if request.method == "POST":
            try:
                dry_run = parse_body(request.get_data())
            except BadRequestError as exc:
                log.warning("bad request: %s", exc)
                return _answer({"status": "failed", "error": str(exc)}, 400)
        try:
            settings = self._load_settings()
            clients = self._connector(settings, with_registry=request.method == "POST" and not dry_run)
        except RotatorError as exc:
            log.error("%s", exc.message, extra={"fields": {"retryable": exc.retryable}})  # noqa: TRY400 - no traceback: it could quote a secret
            return _answer({"status": "failed", "error": exc.message}, _status_for(exc))
        rotation = Rotation(settings, clients.crusoe, clients.kube)
        try:
            if request.method == "GET":
                return _answer(
                    {
                        "namespaces": rotation.status(),
                        "secret_name": settings.secret_name,
                        "registry": settings.registry,
                    },
                    200,
                )
            report = rotation.run(dry_run=dry_run)
            return _answer(report.to_json(), _report_status(report))
        finally:
            rotation.close()
            clients.close()

    def _load_settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self._environ)
            logging.getLogger("rotator").setLevel(self._settings.log_level)
        return self._settings


def _report_status(report: Report) -> int:
    if report.status == "ok":
        return 200
    return 503 if report.retryable else 500


def default_handler() -> Handler:
    """The handler the deployed function uses: configuration from the process environment."""
    return Handler(os.environ)
