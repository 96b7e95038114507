"""What the pull secrets hold, read as the cluster admin: the facts fault tests and the soak check.

Read through the admin client straight from kube-apiserver (never through the fault proxy), so a check never
depends on the fault it checks. Tokens read here stay in memory: callers compare them, never print them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devkit.kube import PULL_SECRET_NAME

#: The rotator's annotation naming the token a secret holds (its alias, never the token).
TOKEN_ALIAS = "ccr-pull-secret-rotator/token-alias"
#: The label the rotator puts on every secret it writes.
MANAGED_BY = "app.kubernetes.io/managed-by=ccr-pull-secret-rotator"
_NOT_FOUND = 404


@dataclass(frozen=True)
class Held:
    """One namespace's pull secret: the alias it is annotated with and the registry password it holds."""

    namespace: str
    alias: str | None
    password: str | None


def _held(namespace: str, secret: Any, registry: str) -> Held:
    notes = (secret.metadata.annotations if secret.metadata else None) or {}
    raw = (secret.data or {}).get(".dockerconfigjson")
    password = None
    if raw:
        try:
            entry = json.loads(base64.b64decode(raw)).get("auths", {}).get(registry, {})
        except (ValueError, AttributeError):
            entry = {}
        password = entry.get("password") if isinstance(entry, dict) else None
    return Held(namespace, notes.get(TOKEN_ALIAS), password if isinstance(password, str) else None)


def read_held(api: client.ApiClient, namespace: str, registry: str, name: str = PULL_SECRET_NAME) -> Held | None:
    """The pull secret of one namespace, or None when there is none."""
    try:
        secret = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == _NOT_FOUND:
            return None
        raise
    return _held(namespace, secret, registry)


def list_held(api: client.ApiClient, namespaces: Iterable[str], registry: str) -> dict[str, Held]:
    """Every target namespace's rotator-managed pull secret, in one list call (the soak's sample)."""
    wanted = set(namespaces)
    held: dict[str, Held] = {}
    for item in client.CoreV1Api(api).list_secret_for_all_namespaces(label_selector=MANAGED_BY).items:
        meta = item.metadata
        if meta is not None and meta.namespace in wanted and meta.name == PULL_SECRET_NAME:
            held[str(meta.namespace)] = _held(str(meta.namespace), item, registry)
    return held


def summary(status: int, body: dict[str, Any]) -> str:
    """One line for a report: HTTP status, which namespaces were written and which not, what was revoked."""
    namespaces = body.get("namespaces") or []
    written = [n["namespace"] for n in namespaces if n.get("result") in ("created", "updated")]
    failed = [n["namespace"] for n in namespaces if n.get("result") == "failed"]
    revoked = body.get("revoked") or []
    return (
        f"HTTP {status}, {len(written)}/{len(namespaces)} written"
        + (f", not written: {len(failed)}" if failed else "")
        + f", revoked {len(revoked)}"
    )
