"""Adding the pull secret to service accounts' ``imagePullSecrets``, so pods get it without naming it.

An entry is added only when absent; entries others put there are kept, in their order. Each patch is a JSON
merge patch of the whole list as read plus the new entry, with the version read as a precondition: a
concurrent edit makes it fail with 409, and the account is read and merged again. A service account that does
not exist is reported as ``missing``, never created (that is its namespace owner's call).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

from rotator.config import ServiceAccounts
from rotator.errors import KubeError, RotatorError
from rotator.fleet import AccountResult, Cluster
from rotator.retry import Backoff, call_with_retries

#: A conflict's cure is a fresh read and merge, not a wait.
CONFLICT_BACKOFF: Final = Backoff(attempts=4, base_seconds=0.0, cap_seconds=0.0)


def references(account: dict[str, Any], secret_name: str) -> bool:
    """Whether the account already lists the secret in ``imagePullSecrets``."""
    entries = account.get("imagePullSecrets") or []
    return any(isinstance(e, dict) and e.get("name") == secret_name for e in entries)


def merge_patch(account: dict[str, Any], secret_name: str) -> dict[str, Any]:
    """The merge patch that appends the secret to the list as read, conditional on the version read."""
    entries = [e for e in account.get("imagePullSecrets") or [] if isinstance(e, dict)]
    return {
        "metadata": {"resourceVersion": (account.get("metadata") or {}).get("resourceVersion")},
        "imagePullSecrets": [*entries, {"name": secret_name}],
    }


@dataclass(frozen=True)
class AccountPatcher:
    """Patches (or, with ``dry_run``, checks patching) the configured accounts of one namespace."""

    cluster: Cluster
    secret_name: str
    dry_run: bool = False
    sleep: Callable[[float], None] = time.sleep

    def patch_all(self, namespace: str, accounts: ServiceAccounts) -> tuple[AccountResult, ...]:
        """Every configured account of ``namespace``; a failure is that account's, reported, never raised."""
        if not accounts:
            return ()
        if accounts.every:
            try:
                listed = self.cluster.list_service_accounts(namespace)
            except RotatorError as exc:
                return (AccountResult("*", "failed", exc.message),)
            return tuple(self._one(namespace, _name(a), a) for a in listed)
        return tuple(self._one(namespace, name, None) for name in accounts.names)

    def _one(self, namespace: str, name: str, known: dict[str, Any] | None) -> AccountResult:
        seen = [known]

        def attempt(number: int) -> AccountResult:
            if number > 0 or seen[0] is None:
                seen[0] = self.cluster.read_service_account(namespace, name)
            account = seen[0]
            if account is None:
                return AccountResult(name, "missing", "the service account does not exist (it is not created)")
            if references(account, self.secret_name):
                return AccountResult(name, "unchanged")
            patch = merge_patch(account, self.secret_name)
            self.cluster.patch_service_account(namespace, name, patch, dry_run=self.dry_run)
            return AccountResult(name, "would-patch" if self.dry_run else "patched")

        try:
            return call_with_retries(
                attempt, classify=_conflict, backoff=CONFLICT_BACKOFF, what=f"patching {name}", sleep=self.sleep
            )
        except RotatorError as exc:
            return AccountResult(name, "failed", exc.message)
        except Exception as exc:  # noqa: BLE001 - one odd account fails alone
            return AccountResult(name, "failed", f"unexpected {type(exc).__name__}")

    def describe(self, namespace: str, accounts: ServiceAccounts) -> tuple[AccountResult, ...]:
        """Whether each configured account references the secret (status; reads only)."""
        if not accounts:
            return ()
        found: list[tuple[str, dict[str, Any] | None]]
        try:
            if accounts.every:
                found = [(_name(a), a) for a in self.cluster.list_service_accounts(namespace)]
            else:
                found = [(n, self.cluster.read_service_account(namespace, n)) for n in accounts.names]
        except RotatorError as exc:
            return (AccountResult("*", "failed", exc.message),)
        return tuple(
            AccountResult(name, "missing")
            if account is None
            else AccountResult(name, "references" if references(account, self.secret_name) else "does-not-reference")
            for name, account in found
        )


def _name(account: dict[str, Any]) -> str:
    return str((account.get("metadata") or {}).get("name", ""))


def _conflict(error: RotatorError) -> bool:
    return isinstance(error, KubeError) and error.status == HTTPStatus.CONFLICT
