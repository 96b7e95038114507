"""The rotator's three operations: :func:`status`, :func:`plan` (a dry run) and :func:`rotate`.

A rotation runs in the order that makes it safe:

1. Read the pull secret in every namespace (this proves the cluster is reachable and the kubeconfig
   works *before* a token exists, and tells which namespaces can take the new token).
2. Mint one token with a fresh alias.
3. Write every namespace concurrently with server-side apply, each merge based on what was read and
   conditional on it not having changed since (a conflict re-reads and merges again).
4. Only if every namespace now holds the new token: revoke the rotator's older tokens beyond the grace
   window, and the tokens that were never delivered (lost mint answers of this run, and tokens minted after
   the newest one the secrets held, by runs that stopped before writing). On any failure nothing is revoked.

Each operation owns its worker pool for the length of the call; only :func:`rotate` needs a registry client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from http import HTTPStatus
from typing import Any, Final, Literal, Protocol, TypeVar

from rotator import logs
from rotator.config import Settings
from rotator.dockerconfig import (
    TOKEN_ALIAS,
    RegistryLogin,
    apply_manifest,
    describe,
    merged_dockerconfig,
    require_compatible,
)
from rotator.errors import CrusoeApiError, KubeError, RotatorError, SecretConflictError, http_status
from rotator.retry import Backoff, call_with_retries
from rotator.secret import SecretStr
from rotator.signing import format_timestamp
from rotator.tokens import ApiKey, new_alias, select_revocations

log = logging.getLogger(__name__)

#: Minting tries: each try has its own alias, so a lost answer leaves a stray to revoke, never a doubt.
MINT_BACKOFF: Final = Backoff(attempts=3, base_seconds=1.0, cap_seconds=4.0)
#: Writes that met a conflict (409): the cure is a fresh read and merge, not a wait.
CONFLICT_BACKOFF: Final = Backoff(attempts=4, base_seconds=0.0, cap_seconds=0.0)

Outcome = Literal["created", "updated", "failed", "would-create", "would-update"]
_In = TypeVar("_In")
_Out = TypeVar("_Out")


class Registry(Protocol):
    """The Crusoe API operations a rotation uses."""

    def create_registry_token(self, alias: str, expires_at: datetime) -> SecretStr:
        """Mint a registry token."""
        ...

    def list_registry_tokens(self) -> list[ApiKey]:
        """List the organisation's registry tokens."""
        ...

    def delete_key(self, key_id: str) -> None:
        """Revoke a token (one already gone counts as revoked)."""
        ...


class Cluster(Protocol):
    """The Kubernetes operations a rotation uses."""

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The secret, or None if absent."""
        ...

    def apply_secret(self, namespace: str, name: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply a secret."""
        ...


@dataclass(frozen=True)
class NamespaceResult:
    """What happened in one namespace."""

    namespace: str
    result: Outcome
    error: str | None = None
    retryable: bool = False

    def to_json(self) -> dict[str, Any]:
        """The response form (no ``error`` key when there was none)."""
        body: dict[str, Any] = {"namespace": self.namespace, "result": self.result}
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass
class Report:
    """The answer to one rotation or dry run."""

    status: Literal["ok", "failed"]
    dry_run: bool = False
    token: dict[str, str] | None = None
    namespaces: list[NamespaceResult] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    retryable: bool = False
    duration_ms: int = 0

    def http_status(self) -> HTTPStatus:
        """200 when it went well, otherwise what :func:`rotator.errors.http_status` says for the failure."""
        if self.status == "ok":
            return HTTPStatus.OK
        return http_status(RotatorError(self.error or "see namespaces", retryable=self.retryable))

    def to_json(self) -> dict[str, Any]:
        """The JSON body of the HTTP answer: aliases and outcomes, never a token."""
        body: dict[str, Any] = {
            "status": self.status,
            "token": self.token,
            "namespaces": [n.to_json() for n in self.namespaces],
            "revoked": self.revoked,
            "duration_ms": self.duration_ms,
        }
        if self.dry_run:
            body["dry_run"] = True
        if self.warnings:
            body["warnings"] = self.warnings
        if self.error:
            body["error"] = self.error
        return body


@dataclass(frozen=True)
class _Read:
    namespace: str
    secret: dict[str, Any] | None = None
    failure: NamespaceResult | None = None


class _Workers:
    """The threads one operation uses for its namespaces (at most MAX_PARALLEL_WRITES at a time)."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool

    def map(self, function: Callable[[_In], _Out], items: Iterable[_In]) -> list[_Out]:
        """``function`` over ``items`` concurrently, results in order, each run with the caller's log context."""
        return list(self._pool.map(logs.in_context(function), items))


@contextmanager
def _workers(settings: Settings) -> Iterator[_Workers]:
    size = min(settings.max_parallel_writes, max(len(settings.namespaces), 1))
    with ThreadPoolExecutor(max_workers=size, thread_name_prefix="namespace") as pool:
        yield _Workers(pool)


def status(settings: Settings, cluster: Cluster) -> list[dict[str, Any]]:
    """Per namespace: does the secret exist, and what do the rotator's annotations say (never its data).

    A namespace that cannot be read is reported with its error; status itself never fails.
    """

    def one(namespace: str) -> dict[str, Any]:
        try:
            secret = cluster.read_secret(namespace, settings.secret_name)
        except KubeError as exc:
            return {"namespace": namespace, "error": exc.message}
        return {"namespace": namespace, **describe(secret, settings.registry)}

    with _workers(settings) as workers:
        return workers.map(one, settings.namespaces)


def plan(settings: Settings, cluster: Cluster) -> Report:
    """What a rotation would do now, from reads alone: no token is minted and nothing is written."""
    started = time.monotonic()
    with _workers(settings) as workers:
        reads = _read_all(settings, cluster, workers)
    report = _unreadable(settings, reads, dry_run=True) or _planned(settings, reads)
    return _finished(report, started)


def rotate(
    settings: Settings,
    registry: Registry,
    cluster: Cluster,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    mint_backoff: Backoff = MINT_BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Rotate the pull secret in every namespace. Never raises a RotatorError: the report says what failed."""
    started = time.monotonic()
    run = _Rotation(settings, registry, cluster, clock=clock, mint_backoff=mint_backoff, sleep=sleep)
    with _workers(settings) as workers:
        report = run.execute(workers)
    # ``run`` holds the minted SecretStr until here, so even the summary line is redacted.
    return _finished(report, started)


def _finished(report: Report, started: float) -> Report:
    report.duration_ms = round((time.monotonic() - started) * 1000)
    log_summary(report)
    return report


def _read_all(settings: Settings, cluster: Cluster, workers: _Workers) -> list[_Read]:
    def one(namespace: str) -> _Read:
        try:
            secret = cluster.read_secret(namespace, settings.secret_name)
            require_compatible(secret)
        except (KubeError, SecretConflictError) as exc:
            return _Read(namespace, failure=_failure(namespace, exc))
        return _Read(namespace, secret=secret)

    return workers.map(one, settings.namespaces)


def _unreadable(settings: Settings, reads: list[_Read], *, dry_run: bool) -> Report | None:
    """The failed report when no namespace can take a token (so none is minted), else None."""
    if any(read.failure is None for read in reads):
        return None
    failures = [read.failure for read in reads if read.failure is not None]
    first = failures[0].error if failures and failures[0].error else None
    return Report(
        status="failed",
        dry_run=dry_run,
        namespaces=_ordered(settings, failures),
        error=f"no namespace can be written, so no token was minted: {first}" if first else "no namespace configured",
        retryable=all(f.retryable for f in failures),
    )


def _planned(settings: Settings, reads: list[_Read]) -> Report:
    results = [
        read.failure or NamespaceResult(read.namespace, "would-update" if read.secret else "would-create")
        for read in reads
    ]
    failures = [r for r in results if r.result == "failed"]
    return Report(
        status="failed" if failures else "ok",
        dry_run=True,
        namespaces=_ordered(settings, results),
        retryable=all(f.retryable for f in failures),
    )


@dataclass
class _Rotation:
    """One rotation's state: what it talks to, and the login it minted (kept referenced, see :func:`rotate`)."""

    settings: Settings
    registry: Registry
    cluster: Cluster
    clock: Callable[[], datetime]
    mint_backoff: Backoff
    sleep: Callable[[float], None]
    login: RegistryLogin | None = None
    strays: list[str] = field(default_factory=list)

    def execute(self, workers: _Workers) -> Report:
        """Read, mint, write, revoke: each step only when the one before left nothing to lose."""
        reads = _read_all(self.settings, self.cluster, workers)
        unreadable = _unreadable(self.settings, reads, dry_run=False)
        if unreadable is not None:
            return unreadable
        readable = [read for read in reads if read.failure is None]
        failures = [read.failure for read in reads if read.failure is not None]
        try:
            login = self.login = self._mint()
        except CrusoeApiError as exc:
            return Report(status="failed", namespaces=failures, error=exc.message, retryable=exc.retryable)
        token = {"alias": login.alias, "expires_at": format_timestamp(login.expires_at)}
        log.info("minted registry token %s, expires %s", login.alias, token["expires_at"], extra=_alias(login.alias))
        results = _ordered(self.settings, workers.map(partial(self._write, login=login), readable) + failures)
        failed = [r for r in results if r.result == "failed"]
        if failed:
            return Report(
                status="failed",
                token=token,
                namespaces=results,
                error=f"{len(failed)} of {len(results)} namespaces do not hold the new token; nothing was revoked",
                retryable=all(r.retryable for r in failed),
            )
        delivered = {alias for read in readable if (alias := _token_alias(read.secret))}
        revoked, warnings = self._revoke(login.alias, delivered)
        return Report(status="ok", token=token, namespaces=results, revoked=revoked, warnings=warnings)

    def _mint(self) -> RegistryLogin:
        """Mint, with a new alias per try; the aliases of tries whose answer may have been lost become strays."""

        def attempt(_: int) -> RegistryLogin:
            now = self.clock()
            alias = new_alias(self.settings.alias_prefix, now)
            expires_at = now + self.settings.token_lifetime
            try:
                password = self.registry.create_registry_token(alias, expires_at)
            except CrusoeApiError as exc:
                if exc.status != HTTPStatus.TOO_MANY_REQUESTS:  # a throttled request minted nothing
                    self.strays.append(alias)
                raise
            return RegistryLogin(self.settings.registry, self.settings.registry_username, password, alias, expires_at)

        return call_with_retries(
            attempt, classify=_mint_retryable, backoff=self.mint_backoff, what="minting", sleep=self.sleep
        )

    def _write(self, read: _Read, *, login: RegistryLogin) -> NamespaceResult:
        """Merge and apply; a conflict (someone wrote in between) re-reads and merges again."""
        namespace, name = read.namespace, self.settings.secret_name
        seen = [read.secret]

        def attempt(number: int) -> None:
            if number > 0:
                seen[0] = self.cluster.read_secret(namespace, name)
            secret = seen[0]
            manifest = apply_manifest(
                namespace=namespace,
                name=name,
                dockerconfig=merged_dockerconfig(secret, login),
                login=login,
                rotated_at=self.clock(),
                resource_version=(secret or {}).get("metadata", {}).get("resourceVersion"),
            )
            self.cluster.apply_secret(namespace, name, manifest)

        try:
            call_with_retries(
                attempt, classify=_conflict, backoff=CONFLICT_BACKOFF, what=f"writing {namespace}", sleep=self.sleep
            )
        except (KubeError, SecretConflictError) as exc:
            return _logged(_failure(namespace, exc))
        return _logged(NamespaceResult(namespace, "created" if read.secret is None else "updated"))

    def _revoke(self, current_alias: str, delivered: set[str]) -> tuple[list[str], list[str]]:
        """Revoke what the rules select; a failure here is a warning: every namespace is already fresh."""
        try:
            keys = self.registry.list_registry_tokens()
        except CrusoeApiError as exc:
            return [], [f"old tokens were not revoked this time: {exc.message}"]
        doomed = select_revocations(
            keys,
            prefix=self.settings.alias_prefix,
            current_alias=current_alias,
            keep_previous=self.settings.keep_previous_tokens,
            strays=self.strays,
            delivered=delivered,
        )
        revoked: list[str] = []
        warnings: list[str] = []
        for key in doomed:
            try:
                self.registry.delete_key(key.key_id)
            except CrusoeApiError as exc:
                warnings.append(f"token {key.alias} was not revoked: {exc.message}")
                continue
            revoked.append(key.alias)
            log.info("revoked registry token %s", key.alias, extra=_alias(key.alias))
        return revoked, warnings


def _mint_retryable(error: RotatorError) -> bool:
    """Any temporary minting failure is worth another try: the next try has a new alias, so none is a duplicate."""
    return isinstance(error, CrusoeApiError) and error.retryable


def _conflict(error: RotatorError) -> bool:
    return isinstance(error, KubeError) and error.status == HTTPStatus.CONFLICT


def _ordered(settings: Settings, results: list[NamespaceResult]) -> list[NamespaceResult]:
    position = {name: index for index, name in enumerate(settings.namespaces)}
    return sorted(results, key=lambda r: position[r.namespace])


def _token_alias(secret: dict[str, Any] | None) -> str | None:
    """The alias of the token a pull secret held when it was read (from the rotator's annotation)."""
    annotations = ((secret or {}).get("metadata") or {}).get("annotations") or {}
    alias = annotations.get(TOKEN_ALIAS)
    return alias if isinstance(alias, str) else None


def _failure(namespace: str, exc: RotatorError) -> NamespaceResult:
    return NamespaceResult(namespace, "failed", exc.message, exc.retryable)


def _alias(alias: str) -> dict[str, Any]:
    return {"fields": {"token_alias": alias}}


def _logged(result: NamespaceResult) -> NamespaceResult:
    fields = {"namespace": result.namespace, "result": result.result}
    if result.error:
        log.error("namespace %s: %s", result.namespace, result.error, extra={"fields": fields})
    else:
        log.info("namespace %s: %s", result.namespace, result.result, extra={"fields": fields})
    return result


#: The ``event`` field of the one summary line each rotation or plan logs.
SUMMARY_EVENT: Final = "rotation_summary"


def log_summary(report: Report) -> None:
    """One line that says how the rotation went."""
    counts: dict[str, int] = {}
    for namespace in report.namespaces:
        counts[namespace.result] = counts.get(namespace.result, 0) + 1
    # These field names are what the Terraform module's log-based metrics read: keep them stable.
    fields = {
        "event": SUMMARY_EVENT,
        "status": report.status,
        "counts": counts,
        "namespaces_failed": counts.get("failed", 0),
        "revoked": report.revoked,
        "revoked_count": len(report.revoked),
        "duration_ms": report.duration_ms,
        "dry_run": report.dry_run,
    }
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no namespace"
    if report.status == "ok":
        log.info(
            "rotation %s: %s; revoked %d old token(s)",
            "planned" if report.dry_run else "succeeded",
            summary,
            len(report.revoked),
            extra={"fields": fields},
        )
    else:
        log.error("rotation failed: %s (%s)", report.error or "see namespaces", summary, extra={"fields": fields})
