"""The rotation itself, in the order that makes it safe.

1. Read the pull secret in every namespace (this proves the cluster is reachable and the kubeconfig
   works *before* a token exists, and tells which namespaces can take the new token).
2. Mint one token with a fresh alias.
3. Write every namespace concurrently with server-side apply, each merge based on what was read and
   conditional on it not having changed since (a conflict re-reads and merges again).
4. Only if every namespace now holds the new token: revoke the rotator's older tokens beyond the grace
   window, and the tokens that were never delivered (lost mint answers of this run, and tokens minted after
   the newest one the secrets held, by runs that stopped before writing). On any failure nothing is revoked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

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
from rotator.errors import CrusoeApiError, KubeError, RotatorError, SecretConflictError
from rotator.secret import SecretStr
from rotator.tokens import ApiKey, new_alias, select_revocations

log = logging.getLogger(__name__)

MINT_ATTEMPTS = 3
CONFLICT_ATTEMPTS = 4

Outcome = Literal["created", "updated", "failed", "would-create", "would-update"]


class Registry(Protocol):
    """The Crusoe API operations a rotation uses."""

    def create_registry_token(self, alias: str, expires_at: datetime) -> SecretStr:
        """Mint a registry token."""
        ...

    def list_registry_tokens(self) -> list[ApiKey]:
        """List the organisation's registry tokens."""
        ...

    def delete_key(self, key_id: str) -> None:
        """Revoke a token."""
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
    """The answer to one rotation request."""

    status: Literal["ok", "failed"]
    dry_run: bool = False
    token: dict[str, str] | None = None
    namespaces: list[NamespaceResult] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    retryable: bool = False
    duration_ms: int = 0

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


class Rotation:
    """One rotation or status check over the configured namespaces."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry | None,
        cluster: Cluster,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._cluster = cluster
        self._clock = clock
        self._pool = ThreadPoolExecutor(
            max_workers=min(settings.max_parallel_writes, max(len(settings.namespaces), 1)),
            thread_name_prefix="namespace",
        )

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=True)

    def status(self) -> list[dict[str, Any]]:
        """Per namespace: does the secret exist, and what do the rotator's annotations say (no data)."""
        name, registry = self._settings.secret_name, self._settings.registry

        def one(namespace: str) -> dict[str, Any]:
            try:
                return {"namespace": namespace, **describe(self._cluster.read_secret(namespace, name), registry)}
            except KubeError as exc:
                return {"namespace": namespace, "error": exc.message}

        return self._map(one, self._settings.namespaces)

    def run(self, *, dry_run: bool = False) -> Report:
        """Rotate (or, with ``dry_run``, say what a rotation would do). Never raises a RotatorError."""
        started = time.monotonic()
        report = self._run(dry_run=dry_run)
        report.duration_ms = round((time.monotonic() - started) * 1000)
        log_summary(report)
        return report

    def _run(self, *, dry_run: bool) -> Report:
        reads = self._map(self._read, self._settings.namespaces)
        readable = [r for r in reads if r.failure is None]
        failures = [r.failure for r in reads if r.failure is not None]
        if not readable:
            return Report(
                status="failed",
                dry_run=dry_run,
                namespaces=failures,
                error="no namespace can be written, so no token was minted: " + failures[0].error
                if failures and failures[0].error
                else "no namespace configured",
                retryable=all(f.retryable for f in failures),
            )
        if dry_run:
            planned = [NamespaceResult(r.namespace, "would-update" if r.secret else "would-create") for r in readable]
            return Report(
                status="failed" if failures else "ok",
                dry_run=True,
                namespaces=self._ordered(planned + failures),
                retryable=all(f.retryable for f in failures),
            )

        try:
            login, strays = self._mint()
        except CrusoeApiError as exc:
            return Report(status="failed", namespaces=failures, error=exc.message, retryable=exc.retryable)
        token = {"alias": login.alias, "expires_at": _stamp(login.expires_at)}
        log.info(
            "minted registry token %s, expires %s",
            login.alias,
            token["expires_at"],
            extra={"fields": {"token_alias": login.alias}},
        )

        writes = self._map(lambda read: self._write(read, login), readable)
        results = self._ordered(writes + failures)
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
        revoked, warnings = self._revoke(login.alias, strays, delivered)
        return Report(status="ok", token=token, namespaces=results, revoked=revoked, warnings=warnings)

    def _read(self, namespace: str) -> _Read:
        try:
            secret = self._cluster.read_secret(namespace, self._settings.secret_name)
            require_compatible(secret)
        except (KubeError, SecretConflictError) as exc:
            return _Read(namespace, failure=_failure(namespace, exc))
        return _Read(namespace, secret=secret)

    def _mint(self) -> tuple[RegistryLogin, list[str]]:
        """Mint with a new alias per attempt; aliases of attempts whose answer was lost are strays."""
        registry = self._require_registry()
        strays: list[str] = []
        for attempt in range(MINT_ATTEMPTS):
            now = self._clock()
            alias = new_alias(self._settings.alias_prefix, now)
            expires_at = now + self._settings.token_lifetime
            try:
                password = registry.create_registry_token(alias, expires_at)
            except CrusoeApiError as exc:
                if not exc.retryable or attempt + 1 == MINT_ATTEMPTS:
                    raise
                if exc.status != 429:  # noqa: PLR2004 - a throttled request minted nothing
                    strays.append(alias)
                log.warning("minting failed (%s), trying again with a new alias", exc.message)
                time.sleep(min(2.0**attempt, 4.0))
                continue
            login = RegistryLogin(
                self._settings.registry, self._settings.registry_username, password.reveal(), alias, expires_at
            )
            return login, strays
        raise AssertionError("unreachable")  # pragma: no cover

    def _write(self, read: _Read, login: RegistryLogin) -> NamespaceResult:
        namespace, name = read.namespace, self._settings.secret_name
        secret = read.secret
        created = secret is None
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                manifest = apply_manifest(
                    namespace=namespace,
                    name=name,
                    dockerconfig=merged_dockerconfig(secret, login),
                    login=login,
                    rotated_at=self._clock(),
                    resource_version=(secret or {}).get("metadata", {}).get("resourceVersion"),
                )
                self._cluster.apply_secret(namespace, name, manifest)
            except KubeError as exc:
                if exc.status == 409 and attempt + 1 < CONFLICT_ATTEMPTS:  # noqa: PLR2004
                    log.info("secret changed while writing; merging again", extra={"fields": {"namespace": namespace}})
                    try:
                        secret = self._cluster.read_secret(namespace, name)
                    except KubeError as read_error:
                        return _logged(_failure(namespace, read_error))
                    continue
                return _logged(_failure(namespace, exc))
            except SecretConflictError as exc:
                return _logged(_failure(namespace, exc))
            return _logged(NamespaceResult(namespace, "created" if created else "updated"))
        raise AssertionError("unreachable")  # pragma: no cover

    def _revoke(self, current_alias: str, strays: list[str], delivered: set[str]) -> tuple[list[str], list[str]]:
        """Revoke what the rules select; a failure here is a warning: every namespace is already fresh."""
        registry = self._require_registry()
        try:
            keys = registry.list_registry_tokens()
        except CrusoeApiError as exc:
            return [], [f"old tokens were not revoked this time: {exc.message}"]
        doomed = select_revocations(
            keys,
            prefix=self._settings.alias_prefix,
            current_alias=current_alias,
            keep_previous=self._settings.keep_previous_tokens,
            strays=strays,
            delivered=delivered,
        )
        revoked: list[str] = []
        warnings: list[str] = []
        for key in doomed:
            try:
                registry.delete_key(key.key_id)
            except CrusoeApiError as exc:
                warnings.append(f"token {key.alias} was not revoked: {exc.message}")
                continue
            revoked.append(key.alias)
            log.info("revoked registry token %s", key.alias, extra={"fields": {"token_alias": key.alias}})
        return revoked, warnings

    def _require_registry(self) -> Registry:
        if self._registry is None:
            raise AssertionError("this rotation was built without a registry client (status or dry run)")
        return self._registry

    def _map(self, function: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        return list(self._pool.map(logs.in_context(function), items))

    def _ordered(self, results: list[NamespaceResult]) -> list[NamespaceResult]:
        position = {name: index for index, name in enumerate(self._settings.namespaces)}
        return sorted(results, key=lambda r: position[r.namespace])


def _token_alias(secret: dict[str, Any] | None) -> str | None:
    """The alias of the token a pull secret held when it was read (from the rotator's annotation)."""
    annotations = ((secret or {}).get("metadata") or {}).get("annotations") or {}
    alias = annotations.get(TOKEN_ALIAS)
    return alias if isinstance(alias, str) else None


def _failure(namespace: str, exc: RotatorError) -> NamespaceResult:
    return NamespaceResult(namespace, "failed", exc.message, exc.retryable)


def _logged(result: NamespaceResult) -> NamespaceResult:
    fields = {"namespace": result.namespace, "result": result.result}
    if result.error:
        log.error("namespace %s: %s", result.namespace, result.error, extra={"fields": fields})
    else:
        log.info("namespace %s: %s", result.namespace, result.result, extra={"fields": fields})
    return result


def log_summary(report: Report) -> None:
    """One line that says how the rotation went."""
    counts: dict[str, int] = {}
    for namespace in report.namespaces:
        counts[namespace.result] = counts.get(namespace.result, 0) + 1
    fields = {
        "status": report.status,
        "counts": counts,
        "revoked": report.revoked,
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


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
