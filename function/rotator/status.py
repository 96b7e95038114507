"""``GET``: where every target stands, and whether any token (or the rotator's own credential) is close to expiring.

Per cluster and namespace: the secret's presence, type, the rotator's annotations, seconds left before the
token expires, whether the registry entry is there, and per configured service account whether it references
the secret. Per cluster also the kubeconfig's own credential: its kind (token or certificate), when it expires
and the seconds left (null for a token without ``exp``). The answer is 200 only when every target holds a
token that outlives ``EXPIRY_WARNING_HOURS`` and every kubeconfig credential outlives
``CREDENTIAL_WARNING_HOURS``, and 503 otherwise, naming what is at risk (``cluster/namespace``,
``cluster/credential``, ``cluster/*``), so a plain uptime check alerts before pulls or rotations start failing.
Nothing is written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Final

from rotator.accounts import AccountPatcher
from rotator.config import Settings
from rotator.dockerconfig import describe, expires_at_of
from rotator.fleet import Read, Survey, Target, over_clusters, over_namespaces, survey

log = logging.getLogger(__name__)

#: The ``event`` field of the line each status answer logs.
STATUS_EVENT: Final = "status_summary"


@dataclass
class StatusReport:
    """The status answer."""

    secret_name: str
    registry: str
    warning_seconds: float
    clusters: list[dict[str, Any]] = field(default_factory=list)
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    credential_warning_seconds: float = 0.0
    at_risk: list[str] = field(default_factory=list)
    earliest_expiry_seconds: float | None = None
    credential_expiry_seconds: float | None = None

    def http_status(self) -> HTTPStatus:
        """200 when no target is at risk, 503 otherwise."""
        return HTTPStatus.SERVICE_UNAVAILABLE if self.at_risk else HTTPStatus.OK

    def to_json(self) -> dict[str, Any]:
        """The JSON body of the answer (annotations and outcomes, never secret data)."""
        return {
            "status": "at_risk" if self.at_risk else "ok",
            "secret_name": self.secret_name,
            "registry": self.registry,
            "expiry_warning_seconds": self.warning_seconds,
            "earliest_expiry_seconds": self.earliest_expiry_seconds,
            "credential_warning_seconds": self.credential_warning_seconds,
            "credential_expiry_seconds": self.credential_expiry_seconds,
            "at_risk": self.at_risk,
            "clusters": self.clusters,
            "namespaces": self.namespaces,
        }


def status(
    settings: Settings, targets: Sequence[Target], *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> StatusReport:
    """Read every target and say how long its token has left; never raises for a cluster or namespace."""
    now = clock()
    report = StatusReport(
        settings.secret_name,
        settings.registry,
        settings.expiry_warning.total_seconds(),
        credential_warning_seconds=settings.credential_warning.total_seconds(),
    )
    surveys = over_clusters(settings, targets, lambda target: survey(settings, target, strict=False))
    for entries in over_clusters(settings, surveys, lambda s: _cluster(settings, s, now)):
        report.namespaces += entries
    for target, one in zip(targets, surveys, strict=True):
        report.clusters.append(_cluster_entry(settings, report, target, one, now))
    report.at_risk += [f"{e['cluster']}/{e['namespace']}" for e in report.namespaces if e.get("at_risk")]
    seconds = [e.get("seconds_left") or 0.0 for e in report.namespaces if "skipped" not in e]
    report.earliest_expiry_seconds = max(min(seconds), 0.0) if seconds else None
    credentials = [
        c["credential_seconds_left"] for c in report.clusters if c.get("credential_seconds_left") is not None
    ]
    report.credential_expiry_seconds = max(min(credentials), 0.0) if credentials else None
    fields = {
        "event": STATUS_EVENT,
        "earliest_expiry_seconds": report.earliest_expiry_seconds,
        "credential_expiry_seconds": report.credential_expiry_seconds,
        "at_risk": report.at_risk,
    }
    level = logging.WARNING if report.at_risk else logging.INFO
    log.log(level, "status: %d target(s) at risk", len(report.at_risk), extra={"fields": fields})
    return report


def _cluster_entry(
    settings: Settings, report: StatusReport, target: Target, one: Survey, now: datetime
) -> dict[str, Any]:
    """A cluster's line: its server, why it could not be read, and its kubeconfig credential's expiry."""
    name = one.config.name
    entry: dict[str, Any] = {"name": name, "server": one.server}
    if one.error is not None:
        entry["error"] = one.error.message
        report.at_risk.append(f"{name}/*")
    credential = target.credential()  # known once the kubeconfig was read, even if the cluster then failed
    if credential is not None:
        entry |= credential.to_json(now)
        entry["credential_at_risk"] = credential.at_risk(now, settings.credential_warning)
        if entry["credential_at_risk"]:
            report.at_risk.append(f"{name}/credential")
    return entry


def _cluster(settings: Settings, one: Survey, now: datetime) -> list[dict[str, Any]]:
    name = one.config.name
    entries = [
        {"cluster": name, "namespace": r.namespace, "skipped": r.error}
        if r.result == "skipped"
        else {"cluster": name, "namespace": r.namespace, "error": r.error, "at_risk": True}
        for r in one.settled
    ]
    if one.cluster is None:
        return entries
    patcher = AccountPatcher(one.cluster, settings.secret_name)
    return over_namespaces(settings, one.reads, lambda read: _namespace(settings, one, read, patcher, now)) + entries


def _namespace(settings: Settings, one: Survey, read: Read, patcher: AccountPatcher, now: datetime) -> dict[str, Any]:
    entry: dict[str, Any] = {"cluster": one.config.name, "namespace": read.namespace}
    if read.failure is not None:
        return {**entry, "error": read.failure.error, "at_risk": True}
    described = describe(read.secret, settings.registry)
    expires = expires_at_of(read.secret)
    seconds_left = round((expires - now).total_seconds()) if expires and described.get("registry_entry") else None
    entry |= described | {"seconds_left": seconds_left}
    entry["at_risk"] = seconds_left is None or seconds_left <= settings.expiry_warning.total_seconds()
    accounts = patcher.describe(read.namespace, one.config.service_accounts)
    if accounts:
        entry["service_accounts"] = [a.to_json() for a in accounts]
    return entry
