"""The rotator's two writing operations: :func:`rotate` and :func:`plan` (a dry run checked by the servers).

A rotation runs in the order that makes it safe, over every cluster of the call at once:

1. Survey every cluster (:func:`rotator.fleet.survey`): connect, select the namespaces, read each pull
   secret. This proves the clusters are reachable *before* a token exists; if no namespace anywhere can
   take a token, none is minted.
2. Mint one token with a fresh alias.
3. Write every cluster concurrently (each cluster's namespaces concurrently too) with server-side apply,
   each merge based on what was read and conditional on it not having changed since (a conflict re-reads
   and merges again); then add the secret to the configured service accounts and record an Event.
4. Only if every cluster and every namespace now holds the new token: revoke the rotator's older tokens
   beyond the grace window, and the tokens that were never delivered (lost mint answers of this run, and
   tokens minted after the newest one the secrets held, by runs that stopped before writing). On any
   failure nothing is revoked.

A dry run does steps 1 and 3 with the API server's server-side dry run (RBAC, admission and validation all
answer, nothing is stored), proves the Crusoe key with a signed read-only call, and names the tokens a
rotation would revoke; it mints, writes and revokes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any, Final, Literal, Protocol

from rotator.accounts import AccountPatcher
from rotator.bounded import check_deadline, run_ends
from rotator.config import ClusterConfig, Settings
from rotator.dockerconfig import RegistryLogin, apply_manifest, expires_at_of, merged_dockerconfig, token_alias_of
from rotator.errors import CrusoeApiError, DeadlineError, KubeError, NamespaceGoneError, RotatorError, http_status
from rotator.events import record
from rotator.fleet import (
    Cluster,
    NamespaceResult,
    Outcome,
    Read,
    Survey,
    Target,
    guarded,
    ordered,
    over_clusters,
    over_namespaces,
    survey,
)
from rotator.retry import Backoff, call_with_retries
from rotator.secret import SecretStr
from rotator.signing import format_timestamp
from rotator.tokens import ApiKey, RevocationPolicy, minted_at, new_alias, plan_revocations

log = logging.getLogger(__name__)

#: Minting tries: each try has its own alias, so a lost answer leaves a stray to revoke, never a doubt.
MINT_BACKOFF: Final = Backoff(attempts=3, base_seconds=1.0, cap_seconds=4.0)
#: Writes that met a conflict (409): the cure is a fresh read and merge, not a wait.
CONFLICT_BACKOFF: Final = Backoff(attempts=4, base_seconds=0.0, cap_seconds=0.0)
#: Stands in for the token in a dry run's writes: the servers check everything but the token itself.
_DRY_RUN_PASSWORD: Final = "dry-run-placeholder"


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


@dataclass
class ClusterReport:
    """One cluster's part of a report: which cluster (name and API server host), and its namespaces."""

    name: str
    server: str
    namespaces: list[NamespaceResult] = field(default_factory=list)
    error: str | None = None
    retryable: bool = False

    @property
    def failed(self) -> list[NamespaceResult]:
        """Namespaces that do not hold what they should."""
        return [n for n in self.namespaces if n.result == "failed"]

    @property
    def account_failures(self) -> int:
        """Service accounts that could not be patched."""
        return sum(a.result == "failed" for n in self.namespaces for a in n.service_accounts)

    @property
    def status(self) -> Literal["ok", "failed"]:
        """``failed`` when the cluster, a namespace or a service account failed."""
        return "failed" if self.error or self.failed or self.account_failures else "ok"

    def counts(self) -> dict[str, int]:
        """How many namespaces had each outcome."""
        counts: dict[str, int] = {}
        for namespace in self.namespaces:
            counts[namespace.result] = counts.get(namespace.result, 0) + 1
        return counts

    def earliest_expiry(self, now: datetime) -> float | None:
        """Seconds until the earliest expiry among the targets (0 for one holding no token; None if unknown)."""
        if self.error:
            return None
        held = [n for n in self.namespaces if n.result != "skipped"]
        seconds = [(n.expires_at - now).total_seconds() if n.expires_at else 0.0 for n in held]
        return max(min(seconds), 0.0) if seconds else None

    def to_json(self) -> dict[str, Any]:
        """The per-cluster summary of a report (the namespaces are in the report's flat list)."""
        body: dict[str, Any] = {
            "name": self.name,
            "server": self.server,
            "status": self.status,
            "counts": self.counts(),
        }
        if self.error:
            body["error"] = self.error
        return body


@dataclass
class Report:
    """The answer to one rotation or dry run."""

    status: Literal["ok", "failed"]
    dry_run: bool = False
    token: dict[str, str] | None = None
    clusters: list[ClusterReport] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    would_revoke: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    retryable: bool = False
    duration_ms: int = 0

    @property
    def namespaces(self) -> list[NamespaceResult]:
        """Every namespace of every cluster, cluster by cluster."""
        return [n for cluster in self.clusters for n in cluster.namespaces]

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
            "clusters": [c.to_json() for c in self.clusters],
            "revoked": self.revoked,
            "duration_ms": self.duration_ms,
        }
        if self.dry_run:
            body["dry_run"] = True
            body["would_revoke"] = self.would_revoke
        if self.warnings:
            body["warnings"] = self.warnings
        if self.error:
            body["error"] = self.error
        return body


def rotate(
    settings: Settings,
    registry: Registry,
    targets: Sequence[Target],
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    mint_backoff: Backoff = MINT_BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Rotate the pull secret in every cluster and namespace. Never raises: the report says what failed."""
    started = time.monotonic()
    run = _Rotation(settings, registry, clock=clock, mint_backoff=mint_backoff, sleep=sleep)
    report = run.execute(over_clusters(settings, targets, lambda target: survey(settings, target)))
    # ``run`` holds the minted SecretStr until here, so even the summary lines are redacted.
    return _finished(report, started, clock())


def plan(
    settings: Settings,
    registry: Registry,
    targets: Sequence[Target],
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Report:
    """What a rotation would do now, every write checked by the API server's dry run; nothing is changed."""
    started = time.monotonic()
    now = clock()
    surveys = over_clusters(settings, targets, lambda target: survey(settings, target))
    alias = new_alias(settings.alias_prefix, now)
    login = RegistryLogin(
        settings.registry,
        settings.registry_username,
        SecretStr(_DRY_RUN_PASSWORD),
        alias,
        now + settings.token_lifetime,
    )
    writer = _Writer(settings, login, clock, time.sleep, dry_run=True)
    clusters = over_clusters(settings, surveys, writer.cluster)
    report = _outcome(clusters, dry_run=True)
    try:
        keys = registry.list_registry_tokens()
    except CrusoeApiError as exc:
        report.status, report.error, report.retryable = (
            "failed",
            f"the Crusoe API key does not work: {exc.message}",
            exc.retryable,
        )
        return _finished(report, started, now)
    delivered = {a for s in surveys for read in s.readable if (a := token_alias_of(read.secret))}
    chosen = plan_revocations(keys, revocation_policy(settings, alias, now, delivered, ()))
    report.would_revoke = [key.alias for key in chosen.keys]
    report.warnings += list(chosen.warnings)
    return _finished(report, started, now)


def _finished(report: Report, started: float, now: datetime) -> Report:
    report.duration_ms = round((time.monotonic() - started) * 1000)
    for cluster in report.clusters:
        log_cluster(cluster, report, now)
    log_summary(report)
    return report


def _outcome(clusters: list[ClusterReport], *, dry_run: bool, token: dict[str, str] | None = None) -> Report:
    """The report of written (or dry-run) clusters: ok only when every cluster is."""
    failed = [c for c in clusters if c.status == "failed"]
    if not failed:
        return Report(status="ok", dry_run=dry_run, token=token, clusters=clusters)
    namespaces = sum(len(c.failed) for c in clusters)
    accounts = sum(c.account_failures for c in clusters)
    parts = [f"{len(failed)} of {len(clusters)} cluster(s) failed"]
    parts += [f"{namespaces} namespace(s) do not hold the new token"] if namespaces else []
    parts += [f"{accounts} service account(s) were not patched"] if accounts else []
    retryable = all(c.retryable for c in failed if c.error) and all(n.retryable for c in failed for n in c.failed)
    return Report(
        status="failed", dry_run=dry_run, token=token, clusters=clusters, error="; ".join(parts), retryable=retryable
    )


def _unreached(survey: Survey) -> ClusterReport:
    """A cluster's report from its survey alone (nothing was written there)."""
    error = survey.error
    return ClusterReport(
        survey.config.name,
        survey.server,
        ordered(survey, survey.failures),
        error=f"cluster {survey.config.name!r}: {error.message}" if error else None,
        retryable=error.retryable if error else False,
    )


@dataclass
class _Writer:
    """Writes (or dry-runs) one login into every readable namespace of a cluster, then its service accounts."""

    settings: Settings
    login: RegistryLogin
    clock: Callable[[], datetime]
    sleep: Callable[[float], None]
    dry_run: bool = False

    def cluster(self, survey: Survey) -> ClusterReport:
        """Every readable namespace of one surveyed cluster."""
        cluster = survey.cluster
        if cluster is None:
            return _unreached(survey)
        results = over_namespaces(
            self.settings, survey.readable, lambda read: self._namespace(survey.config, cluster, read)
        )
        return ClusterReport(survey.config.name, survey.server, ordered(survey, results + survey.failures))

    def _namespace(self, config: ClusterConfig, cluster: Cluster, read: Read) -> NamespaceResult:
        """The secret, then the service accounts, then the Event; each step fails alone."""
        result = guarded(read.namespace, config.name, lambda: self._secret(config.name, cluster, read))
        if result.result in {"created", "updated", "superseded", "would-create", "would-update"}:
            patcher = AccountPatcher(cluster, self.settings.secret_name, self.dry_run, self.sleep)
            result = replace(result, service_accounts=patcher.patch_all(read.namespace, config.service_accounts))
        elif not self.dry_run:
            result = replace(result, expires_at=expires_at_of(read.secret))
        if not self.dry_run and _worth_an_event(self.settings.events, result):
            record(cluster, result, self.settings.secret_name, self.login.alias, self.clock())
        _logged(result)
        return result

    def _secret(self, cluster_name: str, cluster: Cluster, read: Read) -> NamespaceResult:
        """Merge and apply; a conflict (someone wrote in between) re-reads and merges again.

        The write is conditional on the version read, so an overlapping run's write is never lost: after a
        conflict the secret is read again. If it holds one of our tokens minted after this run's, that newer
        token stays (``superseded``): runs never move a namespace back to an older token.
        """
        namespace, name = read.namespace, self.settings.secret_name
        check_deadline(f"writing namespace {namespace!r}")
        seen = [read.secret]

        def attempt(number: int) -> bool:
            if number > 0:
                seen[0] = cluster.read_secret(namespace, name)
            if self._newer_than_ours(token_alias_of(seen[0])):
                return False
            manifest = apply_manifest(
                namespace=namespace,
                name=name,
                dockerconfig=merged_dockerconfig(seen[0], self.login),
                login=self.login,
                rotated_at=self.clock(),
                resource_version=(seen[0] or {}).get("metadata", {}).get("resourceVersion"),
            )
            cluster.apply_secret(namespace, name, manifest, dry_run=self.dry_run)
            return True

        try:
            wrote = call_with_retries(
                attempt, classify=_conflict, backoff=CONFLICT_BACKOFF, what=f"writing {namespace}", sleep=self.sleep
            )
        except NamespaceGoneError as exc:
            if not exc.terminating:
                raise
            return NamespaceResult(namespace, "skipped", exc.message, cluster=cluster_name)
        if not wrote:
            return NamespaceResult(namespace, "superseded", cluster=cluster_name, expires_at=expires_at_of(seen[0]))
        created = read.secret is None
        outcome: Outcome = (
            ("would-create" if created else "would-update") if self.dry_run else ("created" if created else "updated")
        )
        expires = None if self.dry_run else self.login.expires_at
        return NamespaceResult(
            namespace, outcome, cluster=cluster_name, expires_at=expires or expires_at_of(read.secret)
        )

    def _newer_than_ours(self, alias: str | None) -> bool:
        """Does ``alias`` name one of this rotator's tokens minted in a later second than this run's?

        Within one second the order of two runs is unknown, so such a token is overwritten: both stay live
        (the run that revokes keeps a token that young, see :func:`rotator.tokens.plan_revocations`).
        """
        prefix = self.settings.alias_prefix
        theirs, ours = minted_at(alias or "", prefix), minted_at(self.login.alias, prefix)
        return theirs is not None and ours is not None and theirs > ours


@dataclass
class _Rotation:
    """One rotation's state: what it talks to, and the login it minted (kept referenced, see :func:`rotate`)."""

    settings: Settings
    registry: Registry
    clock: Callable[[], datetime]
    mint_backoff: Backoff
    sleep: Callable[[float], None]
    login: RegistryLogin | None = None
    strays: list[str] = field(default_factory=list)

    def execute(self, surveys: list[Survey]) -> Report:
        """Mint, write, revoke: each step only when the one before left nothing to lose."""
        if not any(s.readable for s in surveys):
            return self._nothing_writable(surveys)
        try:
            login = self.login = self._mint()
        except (CrusoeApiError, DeadlineError) as exc:
            clusters = [_unreached(s) for s in surveys]
            report = Report(status="failed", clusters=clusters, error=exc.message, retryable=exc.retryable)
            report.revoked, report.warnings = self._revoke_own_strays()
            return report
        token = {"alias": login.alias, "expires_at": format_timestamp(login.expires_at)}
        log.info("minted registry token %s, expires %s", login.alias, token["expires_at"], extra=_alias(login.alias))
        writer = _Writer(self.settings, login, self.clock, self.sleep)
        report = _outcome(over_clusters(self.settings, surveys, writer.cluster), dry_run=False, token=token)
        if any(c.error or c.failed for c in report.clusters):
            report.error = f"{report.error}; nothing was revoked"
            return report
        delivered = {a for s in surveys for read in s.readable if (a := token_alias_of(read.secret))}
        report.revoked, report.warnings = self._revoke(login.alias, delivered)
        return report

    def _nothing_writable(self, surveys: list[Survey]) -> Report:
        """The failed report when no namespace anywhere can take a token (so none is minted)."""
        clusters = [_unreached(s) for s in surveys]
        reasons = [c.error for c in clusters if c.error] + [n.error for c in clusters for n in c.failed if n.error]
        failures = [n for c in clusters for n in c.failed]
        retryable = all(c.retryable for c in clusters if c.error) and all(n.retryable for n in failures)
        return Report(
            status="failed",
            clusters=clusters,
            error=f"no namespace can be written, so no token was minted: {reasons[0]}"
            if reasons
            else "no namespace selected",
            retryable=retryable and bool(reasons),
        )

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

        check_deadline("minting a token")
        return call_with_retries(
            attempt,
            classify=_mint_retryable,
            backoff=self.mint_backoff,
            what="minting",
            sleep=self.sleep,
            deadline=run_ends(),
        )

    def _revoke_own_strays(self) -> tuple[list[str], list[str]]:
        """After minting failed: revoke the tokens this run's lost answers may have left (no run will deliver them)."""
        if not self.strays:
            return [], []
        try:
            check_deadline("revoking this run's stray tokens")
            keys = [key for key in self.registry.list_registry_tokens() if key.alias in self.strays]
        except (CrusoeApiError, DeadlineError) as exc:
            return [], [f"tokens of lost mint answers were not revoked (a later run will): {exc.message}"]
        return self._delete(keys)

    def _revoke(self, current_alias: str, delivered: set[str]) -> tuple[list[str], list[str]]:
        """Revoke what the rules select; a failure here is a warning: every namespace is already fresh."""
        try:
            check_deadline("revoking old tokens")
            keys = self.registry.list_registry_tokens()
        except (CrusoeApiError, DeadlineError) as exc:
            return [], [f"old tokens were not revoked this time: {exc.message}"]
        policy = revocation_policy(self.settings, current_alias, self.clock(), delivered, self.strays)
        chosen = plan_revocations(keys, policy)
        revoked, warnings = self._delete(chosen.keys)
        return revoked, list(chosen.warnings) + warnings

    def _delete(self, keys: Sequence[ApiKey]) -> tuple[list[str], list[str]]:
        """Revoke each key; one that fails is a warning and does not stop the others."""
        revoked: list[str] = []
        warnings: list[str] = []
        for key in keys:
            try:
                self.registry.delete_key(key.key_id)
            except CrusoeApiError as exc:
                warnings.append(f"token {key.alias} was not revoked: {exc.message}")
                continue
            revoked.append(key.alias)
            log.info("revoked registry token %s", key.alias, extra=_alias(key.alias))
        return revoked, warnings


#: How long after its run's deadline a token may still be on its way into the secrets (clock skew, a slow
#: answer): this, or the run deadline itself when that is shorter.
IN_FLIGHT_MARGIN: Final = timedelta(minutes=1)


def revocation_policy(
    settings: Settings, current_alias: str, now: datetime, delivered: Collection[str], strays: Collection[str]
) -> RevocationPolicy:
    """The revocation rules' inputs for a run: its grace window, and how long another run may still be writing."""
    return RevocationPolicy(
        prefix=settings.alias_prefix,
        current_alias=current_alias,
        keep_previous=settings.keep_previous_tokens,
        now=now,
        in_flight=settings.run_deadline + min(IN_FLIGHT_MARGIN, settings.run_deadline),
        strays=strays,
        delivered=delivered,
    )


def _worth_an_event(events: str, result: NamespaceResult) -> bool:
    """EVENTS=all records every outcome, failures only the failed ones (one request less per namespace)."""
    if result.result == "skipped" or events == "none":
        return False
    return events == "all" or result.result == "failed"


def _mint_retryable(error: RotatorError) -> bool:
    """Any temporary minting failure is worth another try: the next try has a new alias, so none is a duplicate."""
    return isinstance(error, CrusoeApiError) and error.retryable


def _conflict(error: RotatorError) -> bool:
    return isinstance(error, KubeError) and error.status == HTTPStatus.CONFLICT


def _alias(alias: str) -> dict[str, Any]:
    return {"fields": {"token_alias": alias}}


def _logged(result: NamespaceResult) -> NamespaceResult:
    fields = {"cluster": result.cluster, "namespace": result.namespace, "result": result.result}
    if result.error and result.result == "failed":
        log.error("namespace %s/%s: %s", result.cluster, result.namespace, result.error, extra={"fields": fields})
    else:
        log.info("namespace %s/%s: %s", result.cluster, result.namespace, result.result, extra={"fields": fields})
    return result


#: The ``event`` field of the one summary line each rotation or plan logs.
SUMMARY_EVENT: Final = "rotation_summary"
#: The ``event`` field of the line each rotation or plan logs per cluster.
CLUSTER_EVENT: Final = "cluster_summary"


def log_cluster(cluster: ClusterReport, report: Report, now: datetime) -> None:
    """One line per cluster: its name and host, how it went, and how long its earliest token has left."""
    fields = {
        "event": CLUSTER_EVENT,
        "cluster": cluster.name,
        "server": cluster.server,
        "status": cluster.status,
        "dry_run": report.dry_run,
        "counts": cluster.counts(),
        "namespaces_failed": len(cluster.failed),
        "earliest_expiry_seconds": cluster.earliest_expiry(now),
    }
    level = logging.INFO if cluster.status == "ok" else logging.ERROR
    log.log(
        level,
        "cluster %s (%s): %s",
        cluster.name,
        cluster.server or "not reached",
        cluster.error or cluster.status,
        extra={"fields": fields},
    )


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
        "clusters": [f"{c.name} ({c.server or 'not reached'})" for c in report.clusters],
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
