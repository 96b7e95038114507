"""RENEW_KUBECONFIG: the rotator renews its own ServiceAccount token before it expires.

After a rotation (never a dry run or a status call), for each cluster whose kubeconfig comes from Secret
Manager as ``versions/latest``:

1. **Disable what is no longer needed.** Once the version this run read has rotated its cluster without a
   failure and is ``RENEW_GRACE_HOURS`` old, every older ENABLED version of the secret is disabled (never
   destroyed: an operator can enable one again). Until then an older version stays, so a renewed kubeconfig
   that turns out bad can be rolled back by disabling the new version.
2. **Renew inside the margin.** When the kubeconfig's token expires within ``CREDENTIAL_WARNING_HOURS``, a
   TokenRequest for the token's own service account (named by its ``kubernetes.io`` claim or ``sub``) asks
   for a token of ``RENEW_TOKEN_HOURS`` with the same audiences; the same kubeconfig with that token is added
   as a new version. The next run reads it as ``latest``. The old token stays valid until its own expiry.

A client certificate, a token of no service account, or a secret shared by two clusters is not renewed:
the result says why. A failure here never fails the rotation; the status answer keeps saying 503 while the
credential is inside the margin, so the alert still fires. Tokens are never logged or returned.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final, Literal

from rotator.clients import Connection
from rotator.config import Renewal, SecretManagerRef, Settings, renewable
from rotator.errors import RotatorError
from rotator.kubeconfig import with_token
from rotator.secretstore import SecretWriter, VersionInfo

log = logging.getLogger(__name__)

#: The ``event`` field of the line each cluster's renewal logs.
RENEWAL_EVENT: Final = "credential_renewal"

Result = Literal["renewed", "not-due", "not-renewable", "failed"]


@dataclass(frozen=True)
class RenewalResult:
    """What renewal did for one cluster: the version it added and the versions it disabled."""

    cluster: str
    result: Result
    detail: str | None = None
    version: str | None = None
    disabled: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The response form (no empty keys)."""
        body: dict[str, Any] = {"cluster": self.cluster, "result": self.result}
        body |= {key: value for key, value in (("detail", self.detail), ("version", self.version)) if value}
        if self.disabled:
            body["disabled"] = list(self.disabled)
        return body


def renew_credentials(
    settings: Settings,
    connections: Sequence[Connection],
    store: SecretWriter,
    *,
    proven: Collection[str],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[RenewalResult]:
    """Prune and renew each connected cluster's kubeconfig secret; never raises.

    Args:
        settings: the function's settings (``renewal`` None: nothing to do).
        connections: the clusters this run connected to, with the kubeconfig version each one read.
        store: Secret Manager, to list, add and disable versions.
        proven: the clusters this run rotated without a failure, whose kubeconfig version is known good.
        clock: the time now.
    """
    if settings.renewal is None:
        return []
    renewal = settings.renewal
    now = clock()
    uses = Counter(_secret_of(c) for c in connections)
    results = []
    for connection in connections:
        secret = _secret_of(connection)
        if secret is not None and uses[secret] > 1:
            result = RenewalResult(
                connection.config.name,
                "not-renewable",
                f"{secret} is the kubeconfig of more than one cluster: give each cluster its own secret",
            )
        else:
            result = _guarded(connection, partial(_renew, renewal, settings, connection, store, proven, now))
        _log(result)
        results.append(result)
    return results


def disable_plan(versions: Sequence[VersionInfo], in_use: str, now: datetime, grace: timedelta) -> list[str]:
    """The ENABLED versions older than the one in use, once that one is ``grace`` old (else none)."""
    number = _number(in_use)
    current = next((v for v in versions if v.number == number), None)
    if current is None or current.created is None or now - current.created < grace:
        return []
    return [v.name for v in versions if v.state == "ENABLED" and 0 < v.number < number]


def _renew(
    renewal: Renewal,
    settings: Settings,
    connection: Connection,
    store: SecretWriter,
    proven: Collection[str],
    now: datetime,
) -> RenewalResult:
    name, credential = connection.config.name, connection.credential
    secret, in_use = _secret_of(connection), connection.kubeconfig.version
    if secret is None or in_use is None:
        return RenewalResult(name, "not-renewable", "the kubeconfig is not read from Secret Manager as latest")
    disabled: list[str] = []
    if name in proven:
        for version in disable_plan(store.list_versions(secret), in_use, now, renewal.grace):
            store.disable_version(version)
            disabled.append(version)
    if not credential.at_risk(now, settings.credential_warning):
        return RenewalResult(name, "not-due", disabled=tuple(disabled))
    if credential.kind != "token" or credential.account is None:
        why = (
            "a client certificate cannot be renewed by the function: renew the kubeconfig by hand"
            if credential.kind == "certificate"
            else "the token names no service account (not a Kubernetes token): renew the kubeconfig by hand"
        )
        return RenewalResult(name, "not-renewable", why, disabled=tuple(disabled))
    account = credential.account
    token = connection.kube.request_token(
        account.namespace,
        account.name,
        audiences=credential.audiences,
        seconds=round(renewal.token_lifetime.total_seconds()),
    )
    text = with_token(connection.kubeconfig.text, context=connection.config.context, token=token)
    version = store.add_version(secret, text.reveal().encode())
    return RenewalResult(name, "renewed", version=version, disabled=tuple(disabled))


def _guarded(connection: Connection, step: Callable[[], RenewalResult]) -> RenewalResult:
    """One cluster's renewal; any failure is that cluster's result (its message holds no secret)."""
    try:
        return step()
    except RotatorError as exc:
        return RenewalResult(connection.config.name, "failed", exc.message)
    except Exception as exc:
        log.exception("cluster %s: unexpected %s while renewing", connection.config.name, type(exc).__name__)
        return RenewalResult(connection.config.name, "failed", f"unexpected {type(exc).__name__} (see the logs)")


def _secret_of(connection: Connection) -> str | None:
    """``projects/P/secrets/S`` of a renewable kubeconfig, else None."""
    source = connection.config.kubeconfig
    if not isinstance(source, SecretManagerRef) or not renewable(source):
        return None
    return source.version_name.rpartition("/versions/")[0]


def _number(version_name: str) -> int:
    tail = version_name.rpartition("/")[2]
    return int(tail) if tail.isdigit() else 0


def _log(result: RenewalResult) -> None:
    fields = {"event": RENEWAL_EVENT, **result.to_json()}
    level = logging.ERROR if result.result == "failed" else logging.INFO
    if result.result == "not-renewable":
        level = logging.WARNING
    log.log(level, "kubeconfig of %s: %s", result.cluster, result.result, extra={"fields": fields})
