"""One error hierarchy for the whole rotator.

Every failure the rotator can report is a :class:`RotatorError`. Its ``retryable`` flag says whether the
same call may succeed later without anybody changing anything (a timeout, a 503, a conflict): the HTTP
entry point answers 503 for those and 500 for the rest (:func:`http_status`, the one mapping), and Cloud
Scheduler retries both. Messages are written for the person reading the logs: they name what is wrong and
what to do, and never contain a token, a key, a kubeconfig or an API response body that might hold one.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus


class RotatorError(Exception):
    """A failure the rotator reports; ``retryable`` says whether trying again later may help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable

    @property
    def message(self) -> str:
        """The human-readable message (never holds a secret)."""
        return str(self.args[0])


class ConfigError(RotatorError):
    """The configuration is missing or invalid; fix the named variable(s) and redeploy."""

    def __init__(self, problems: dict[str, str]) -> None:
        listing = "; ".join(f"{name}: {problem}" for name, problem in problems.items())
        super().__init__(f"invalid configuration: {listing}", retryable=False)
        self.problems = dict(problems)


class BadRequestError(RotatorError):
    """The HTTP request is not something the rotator serves; nothing was done.

    ``status`` is the 4xx that answers it: 400 for a body it cannot use, or the more precise status when the
    path (404), method (405), size (413), media type (415) or caller (401, 403) is what is wrong; ``headers``
    are what that status requires (``Allow``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        message: str,
        *,
        status: HTTPStatus = HTTPStatus.BAD_REQUEST,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, retryable=False)
        self.status = status
        self.headers = dict(headers or {})


class SecretStoreError(RotatorError):
    """A secret (Crusoe credentials or kubeconfig) could not be read or is malformed."""


class KubeconfigError(RotatorError):
    """The kubeconfig cannot be used by an unattended function."""


class DeadlineError(RotatorError):
    """The run reached RUN_DEADLINE_SECONDS: what was not done by then is not started (the next run does it)."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"the run reached its deadline (RUN_DEADLINE_SECONDS) before {what}; the next run completes it",
            retryable=True,
        )


class SecretConflictError(RotatorError):
    """The existing pull secret cannot take the rotator's entry without destroying someone else's data."""


class ApiError(RotatorError):
    """A remote API refused or failed a request.

    ``status`` is the HTTP status (None when no answer came), ``retry_after`` the server's ``Retry-After``
    in seconds when it gave one. The message never quotes a response body that might hold a secret.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        retryable: bool,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
        self.retry_after = retry_after


class CrusoeApiError(ApiError):
    """The Crusoe Cloud API refused or failed a request.

    Carries the API's own error body fields (``code``, ``message``, ``error_id``), which are safe to show,
    but never request headers.
    """

    def __init__(
        self,
        operation: str,
        *,
        status: int | None,
        detail: str,
        error_id: str | None = None,
        retryable: bool,
        retry_after: float | None = None,
    ) -> None:
        where = f"HTTP {status}" if status is not None else "no response"
        ref = f" (error_id {error_id})" if error_id else ""
        super().__init__(
            f"Crusoe API {operation} failed: {where}: {detail}{ref}",
            status=status,
            retryable=retryable,
            retry_after=retry_after,
        )
        self.operation = operation
        self.error_id = error_id


class KubeError(ApiError):
    """The Kubernetes API refused or failed a request for one namespace or for the whole cluster."""


class NamespaceGoneError(KubeError):
    """The namespace does not exist (``terminating`` False) or is being deleted: nothing can be created there."""

    def __init__(self, message: str, *, status: int, terminating: bool) -> None:
        super().__init__(message, status=status, retryable=False)
        self.terminating = terminating


def http_status(error: RotatorError) -> HTTPStatus:
    """The HTTP status that answers a request which ended in ``error``: the one mapping."""
    if isinstance(error, BadRequestError):
        return error.status
    return HTTPStatus.SERVICE_UNAVAILABLE if error.retryable else HTTPStatus.INTERNAL_SERVER_ERROR
