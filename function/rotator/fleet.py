"""The clusters of one call: which ones a request names, how each is surveyed, and the bounded worker pools.

Every operation starts with a *survey* of each cluster: connect, evaluate the namespace selection against
the namespaces that exist now, and read the pull secret in every target namespace. A cluster that cannot be
reached is that cluster's failure, never the whole call's, and every per-namespace step turns any exception
into that namespace's failure, with a message that holds no secret.

Concurrency has two bounds: at most ``MAX_PARALLEL_CLUSTERS`` clusters at once, and in each of them at most
``MAX_PARALLEL_WRITES`` namespaces at once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from rotator import logs
from rotator.config import ClusterConfig, Settings
from rotator.credential import Credential
from rotator.dockerconfig import require_compatible
from rotator.errors import BadRequestError, RotatorError
from rotator.selection import NamespaceInfo, resolve

log = logging.getLogger(__name__)

_In = TypeVar("_In")
_Out = TypeVar("_Out")

#: ``superseded``: an overlapping run wrote a newer token there first; it is left in place (a success).
Outcome = Literal["created", "updated", "superseded", "failed", "skipped", "would-create", "would-update"]
#: Room left in an alias prefix (40 characters, limits.json) for ``-g`` and six hex digits.
_GROUP_PREFIX_ROOM: Final = 40 - len("-g000000")


class Cluster(Protocol):
    """The Kubernetes operations the rotator uses on one cluster."""

    @property
    def server(self) -> str:
        """The API server's URL."""
        ...

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The secret, or None if absent."""
        ...

    def apply_secret(
        self, namespace: str, name: str, manifest: dict[str, Any], *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Server-side apply a secret (with ``dry_run``, checked by the server and not stored)."""
        ...

    def list_namespaces(self) -> list[NamespaceInfo]:
        """Every namespace (paginated by the client)."""
        ...

    def read_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A service account, or None if absent."""
        ...

    def list_service_accounts(self, namespace: str) -> list[dict[str, Any]]:
        """Every service account of a namespace."""
        ...

    def patch_service_account(
        self, namespace: str, name: str, patch: dict[str, Any], *, dry_run: bool = False
    ) -> dict[str, Any]:
        """JSON merge patch of a service account."""
        ...

    def create_event(self, namespace: str, event: dict[str, Any]) -> None:
        """Record an Event."""
        ...


def _unknown_credential() -> Credential | None:
    return None


@dataclass(frozen=True)
class Target:
    """One configured cluster, and how to connect to it (called inside the operation, in a worker).

    ``credential`` tells, once connected, what the kubeconfig authenticates with and when that expires.
    """

    config: ClusterConfig
    connect: Callable[[], Cluster]
    credential: Callable[[], Credential | None] = _unknown_credential


@dataclass(frozen=True)
class AccountResult:
    """What happened to one service account's ``imagePullSecrets``."""

    name: str
    result: Literal["patched", "unchanged", "missing", "failed", "would-patch", "references", "does-not-reference"]
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The response form (no ``error`` key when there was none)."""
        body: dict[str, Any] = {"name": self.name, "result": self.result}
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass(frozen=True)
class NamespaceResult:
    """What happened in one namespace; ``expires_at`` is when the token it holds afterwards expires."""

    namespace: str
    result: Outcome
    error: str | None = None
    retryable: bool = False
    cluster: str = ""
    service_accounts: tuple[AccountResult, ...] = ()
    expires_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The response form: no ``error`` key when there was none, no ``service_accounts`` when none is set."""
        body: dict[str, Any] = {"cluster": self.cluster, "namespace": self.namespace, "result": self.result}
        if self.error is not None:
            body["error"] = self.error
        if self.service_accounts:
            body["service_accounts"] = [account.to_json() for account in self.service_accounts]
        return body


@dataclass(frozen=True)
class Read:
    """A target namespace as the survey found it: its secret, or why it cannot take the token."""

    namespace: str
    secret: dict[str, Any] | None = None
    failure: NamespaceResult | None = None


@dataclass
class Survey:
    """One cluster, surveyed: its client, its target namespaces read, or why it could not be reached."""

    config: ClusterConfig
    cluster: Cluster | None = None
    server: str = ""
    reads: list[Read] = field(default_factory=list)
    settled: list[NamespaceResult] = field(default_factory=list)
    error: RotatorError | None = None

    @property
    def readable(self) -> list[Read]:
        """The namespaces that can take a token."""
        return [read for read in self.reads if read.failure is None]

    @property
    def failures(self) -> list[NamespaceResult]:
        """Namespaces that failed the survey, and the settled ones (skipped, missing)."""
        return self.settled + [read.failure for read in self.reads if read.failure is not None]


class Workers:
    """A bounded pool; ``map`` runs a function over items with the caller's log context, results in order."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool

    def map(self, function: Callable[[_In], _Out], items: Iterable[_In]) -> list[_Out]:
        """``function`` over ``items`` concurrently, results in order."""
        return list(self._pool.map(logs.in_context(function), items))


@contextmanager
def workers(size: int, name: str) -> Iterator[Workers]:
    """A pool of at most ``size`` threads for the length of the block."""
    with ThreadPoolExecutor(max_workers=max(size, 1), thread_name_prefix=name) as pool:
        yield Workers(pool)


def over_clusters(settings: Settings, items: Sequence[_In], function: Callable[[_In], _Out]) -> list[_Out]:
    """``function`` over one item per cluster, at most MAX_PARALLEL_CLUSTERS at once."""
    with workers(min(settings.max_parallel_clusters, len(items)), "cluster") as pool:
        return pool.map(function, items)


def over_namespaces(settings: Settings, items: Sequence[_In], function: Callable[[_In], _Out]) -> list[_Out]:
    """``function`` over one cluster's namespaces, at most MAX_PARALLEL_WRITES at once."""
    if not items:
        return []
    with workers(min(settings.max_parallel_writes, len(items)), "namespace") as pool:
        return pool.map(function, items)


def host(server: str) -> str:
    """The API server's host (and port) for reports: enough to tell clusters apart, nothing more."""
    try:
        return urlsplit(server).netloc.rpartition("@")[2] or server
    except ValueError:
        return "?"


def guarded(namespace: str, cluster: str, step: Callable[[], NamespaceResult]) -> NamespaceResult:
    """Run one namespace's step; any exception at all is that namespace's failure (never the run's)."""
    try:
        return step()
    except RotatorError as exc:
        return failure(namespace, cluster, exc)
    except Exception as exc:
        log.exception("namespace %s: unexpected %s", namespace, type(exc).__name__)
        return NamespaceResult(namespace, "failed", f"unexpected {type(exc).__name__} (see the logs)", cluster=cluster)


def failure(namespace: str, cluster: str, exc: RotatorError) -> NamespaceResult:
    """A namespace's failure from a rotator error (its message holds no secret by contract)."""
    return NamespaceResult(namespace, "failed", exc.message, exc.retryable, cluster=cluster)


def survey(settings: Settings, target: Target, *, strict: bool = True) -> Survey:
    """Connect, select the namespaces, read every pull secret; a failure here is this cluster's alone.

    ``strict`` also refuses secrets the rotator could not merge into (status describes them instead).
    """
    config = target.config
    result = Survey(config)
    try:
        result.cluster = target.connect()
        result.server = host(result.cluster.server)
        listed = result.cluster.list_namespaces() if config.selection.needs_listing else None
    except RotatorError as exc:
        result.error = exc
        return result
    except Exception as exc:
        log.exception("cluster %s: unexpected %s", config.name, type(exc).__name__)
        result.error = RotatorError(f"unexpected {type(exc).__name__} while connecting (see the logs)")
        return result
    resolved = resolve(config.selection, listed)
    result.settled = [
        *(
            NamespaceResult(ns, "failed", f"namespace {ns!r} does not exist", cluster=config.name)
            for ns in resolved.missing
        ),
        *(
            NamespaceResult(ns, "skipped", "the namespace is being deleted", cluster=config.name)
            for ns in resolved.skipped
        ),
    ]
    cluster = result.cluster
    result.reads = over_namespaces(
        settings, resolved.targets, lambda ns: _read(settings, config.name, cluster, ns, strict=strict)
    )
    return result


def _read(settings: Settings, cluster_name: str, cluster: Cluster, namespace: str, *, strict: bool) -> Read:
    secret: list[dict[str, Any] | None] = [None]

    def step() -> NamespaceResult:
        secret[0] = cluster.read_secret(namespace, settings.secret_name)
        if strict:
            require_compatible(secret[0])
        return NamespaceResult(namespace, "updated" if secret[0] else "created", cluster=cluster_name)

    result = guarded(namespace, cluster_name, step)
    return Read(namespace, secret[0]) if result.result != "failed" else Read(namespace, failure=result)


def ordered(survey: Survey, results: Iterable[NamespaceResult]) -> list[NamespaceResult]:
    """Results in the order the selection gave (named first, then matches), settled ones last."""
    position = {read.namespace: index for index, read in enumerate(survey.reads)}
    return sorted(results, key=lambda r: position.get(r.namespace, len(position)))


def choose(targets: Sequence[Target], requested: Sequence[str] | None) -> list[Target]:
    """The targets a request names (all when it names none), in the configured order.

    Raises:
        BadRequestError: a requested name is not a configured cluster.
    """
    if requested is None:
        return list(targets)
    known = {target.config.name for target in targets}
    unknown = sorted(set(requested) - known)
    if unknown:
        raise BadRequestError(
            f"unknown cluster(s) {', '.join(unknown)}; configured: {', '.join(t.config.name for t in targets)}"
        )
    return [target for target in targets if target.config.name in set(requested)]


def alias_prefix_for(prefix: str, chosen: Iterable[str], every: Iterable[str]) -> str:
    """The alias prefix of a run over ``chosen`` clusters: the plain prefix for the whole fleet.

    A subset (a group) gets ``<prefix>-g<6 hex of sha256 of its sorted names>`` (the prefix cut so the whole
    stays within the 40 characters limits.json allows), so its revocations select only its own tokens and it
    never revokes a token that secrets outside the subset may hold. The plain prefix's alias pattern cannot
    match a group alias (a group's ``-g`` comes where a UTC time must start).
    """
    names = sorted(set(chosen))
    if set(names) == set(every):
        return prefix
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:6]
    return f"{prefix[:_GROUP_PREFIX_ROOM].rstrip('-')}-g{digest}"
