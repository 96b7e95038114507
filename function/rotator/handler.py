"""HTTP glue: method dispatch, request body, error-to-status mapping. The work is in :mod:`rotator.rotation`."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any, Final, Literal

import flask

from rotator import logs
from rotator.bounded import run_deadline
from rotator.clients import Clients, connect
from rotator.config import Settings, load_settings, log_level_from
from rotator.errors import BadRequestError, RotatorError, http_status
from rotator.fleet import alias_prefix_for, choose
from rotator.renewal import renew_credentials
from rotator.requests_guard import RequestGuard
from rotator.rotation import plan, rotate
from rotator.status import status

log = logging.getLogger(__name__)

_ALLOWED_FIELDS: Final = {"dry_run", "clusters"}

Operation = Literal["status", "plan", "rotate"]


@dataclass(frozen=True)
class RunRequest:
    """What a POST asks for: a dry run or not, and which clusters (None: every configured one)."""

    dry_run: bool = False
    clusters: tuple[str, ...] | None = None


def parse_body(raw: bytes) -> RunRequest:
    """The request from an optional JSON object body: ``{"dry_run": bool, "clusters": [names]}``.

    Raises:
        BadRequestError: the body is not a JSON object, has unknown fields, or a field has the wrong type.
    """
    if not raw.strip():
        return RunRequest()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequestError("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequestError("the request body must be a JSON object")
    unknown = sorted(set(body) - _ALLOWED_FIELDS)
    if unknown:
        raise BadRequestError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_ALLOWED_FIELDS))}")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise BadRequestError("dry_run must be true or false")
    clusters = body.get("clusters")
    if clusters is None:
        return RunRequest(dry_run)
    if not isinstance(clusters, list) or not clusters or not all(isinstance(c, str) and c for c in clusters):
        raise BadRequestError("clusters must be a non-empty list of configured cluster names")
    return RunRequest(dry_run, tuple(dict.fromkeys(clusters)))


def _answer(body: Mapping[str, Any], status: HTTPStatus, **headers: str) -> flask.Response:
    response = flask.Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers.update(headers)
    return response


def _failed(error: RotatorError) -> flask.Response:
    """The answer to a request that ended in an error instead of a report: status from :func:`http_status`."""
    headers: dict[str, str] = {}
    if isinstance(error, BadRequestError):
        log.warning("bad request: %s", error.message)
        headers = error.headers
    else:
        log.error("%s", error.message, extra={"fields": {"retryable": error.retryable}})
    return _answer({"status": "failed", "error": error.message}, http_status(error), **headers)


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
        self._guard = RequestGuard()
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
        try:
            self._guard.screen(request, self._load_settings)  # 4xx before anything is built or read
            operation, run = _operation(request)
            settings = self._load_settings()
        except RotatorError as exc:
            return _failed(exc)
        # Everything from reading the secrets to the last revocation ends by RUN_DEADLINE_SECONDS.
        with run_deadline(settings.run_deadline.total_seconds()):
            try:
                clients = self._connector(settings, with_registry=operation != "status")
            except RotatorError as exc:
                return _failed(exc)
            try:
                return _perform(operation, run, settings, clients)
            except RotatorError as exc:
                return _failed(exc)
            finally:
                clients.close()

    def _load_settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self._environ)
            logging.getLogger("rotator").setLevel(self._settings.log_level)
        return self._settings


def _operation(request: flask.Request) -> tuple[Operation, RunRequest]:
    """GET is status; POST rotates, or plans when its body asks for a dry run."""
    if request.method == "GET":
        return "status", RunRequest()
    run = parse_body(request.get_data())
    return ("plan" if run.dry_run else "rotate"), run


def _perform(operation: Operation, run: RunRequest, settings: Settings, clients: Clients) -> flask.Response:
    """Run one operation with clients that are ready (every failure from here on is in the answer's body)."""
    targets = choose(clients.targets, run.clusters)
    if operation == "status":
        answer = status(settings, targets)
        return _answer(answer.to_json(), answer.http_status())
    every = [target.config.name for target in clients.targets]
    prefix = alias_prefix_for(settings.alias_prefix, [t.config.name for t in targets], every)
    scoped = replace(settings, alias_prefix=prefix)
    if clients.crusoe is None:  # connect() builds one whenever it is asked with_registry
        return _failed(RotatorError("no Crusoe API client was built for the rotation"))
    run_operation = plan if operation == "plan" else rotate
    report = run_operation(scoped, clients.crusoe, targets)
    body = report.to_json()
    if operation == "rotate" and settings.renewal is not None and clients.connections and clients.store:
        proven = {cluster.name for cluster in report.clusters if cluster.status == "ok"}
        renewed = renew_credentials(settings, clients.connections.connected(), clients.store, proven=proven)
        body["credentials"] = [result.to_json() for result in renewed]
    return _answer(body, report.http_status())


def default_handler() -> Handler:
    """The handler the deployed function uses: configuration from the process environment."""
    return Handler(os.environ)
