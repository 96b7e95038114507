"""In-memory fakes of the rotation's two protocols (``Registry`` and ``Cluster``), sharing one journal.

The journal records every call in the order it happened (``("read", ns)``, ``("mint", alias)``,
``("write", ns)``, ``("list", "")``, ``("revoke", alias)``), so tests can check the safety order. Failures
are planned per call, so no test needs a server, a sleep or a mock chain.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rotator.config import DEFAULT_SECRET_NAME
from rotator.dockerconfig import DOCKERCONFIG_TYPE, EXPIRES_AT, TOKEN_ALIAS
from rotator.errors import CrusoeApiError, KubeError
from rotator.secret import SecretStr
from rotator.selection import NamespaceInfo
from rotator.tokens import ApiKey


@dataclass
class Journal:
    """Every call both fakes saw, in order (thread-safe)."""

    entries: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, subject: str) -> None:
        with self.lock:
            self.entries.append((kind, subject))

    def kinds(self) -> list[str]:
        """The call kinds with consecutive repeats folded: ``["read", "mint", "write", "list", "revoke"]``."""
        return [kind for kind, _ in itertools.groupby(kind for kind, _ in self.entries)]

    def of(self, kind: str) -> list[str]:
        return [subject for k, subject in self.entries if k == kind]


@dataclass
class Minted:
    """A token the fake minted; only its value is kept, so the rotator alone keeps the SecretStr alive."""

    alias: str
    expires_at: datetime
    token: str


class FakeRegistry:
    """The Crusoe API's token operations, in memory.

    ``mint_failures`` are raised by the next mints in turn; an entry ``(error, True)`` mints the token
    before raising (an answer lost on its way back). ``list_failure`` fails the listing;
    ``revoke_failures`` maps a key id to the error revoking it raises.
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.keys: dict[str, ApiKey] = {}
        self.minted: list[Minted] = []
        self.mint_failures: list[tuple[CrusoeApiError, bool]] = []
        self.list_failure: CrusoeApiError | None = None
        self.revoke_failures: dict[str, CrusoeApiError] = {}
        self.revoked: list[str] = []
        #: Called with the alias after a token is minted, before its answer returns (a test holds it there).
        self.after_mint: Callable[[str], None] | None = None
        self._ids = itertools.count(1)

    def seed(self, alias: str, *, usage: str = "registry", created_at: datetime | None = None) -> ApiKey:
        """An existing token, as if minted earlier (by the rotator or by someone else)."""
        key = ApiKey(f"key-{next(self._ids)}", alias, usage, created_at or datetime.now(UTC), None)
        self.keys[key.key_id] = key
        return key

    def create_registry_token(self, alias: str, expires_at: datetime) -> SecretStr:
        self.journal.add("mint", alias)
        failure, minted = self.mint_failures.pop(0) if self.mint_failures else (None, True)
        token = f"ccr-token-{len(self.minted) + 1:04d}-{alias}"
        if minted:
            self.minted.append(Minted(alias, expires_at, token))
            self.seed(alias)
        if failure is not None:
            raise failure
        if self.after_mint is not None:
            self.after_mint(alias)
        return SecretStr(token)

    def list_registry_tokens(self) -> list[ApiKey]:
        self.journal.add("list", "")
        if self.list_failure is not None:
            raise self.list_failure
        return list(self.keys.values())

    def delete_key(self, key_id: str) -> None:
        alias = self.keys[key_id].alias if key_id in self.keys else key_id
        self.journal.add("revoke", alias)
        if key_id in self.revoke_failures:
            raise self.revoke_failures[key_id]
        del self.keys[key_id]
        self.revoked.append(alias)

    def aliases(self) -> set[str]:
        return {key.alias for key in self.keys.values()}

    def close(self) -> None:
        """Nothing to release (here so the fake can stand in a ``Clients``)."""


class FakeCluster:
    """Pull secrets per namespace in memory, with resourceVersion preconditions like the API server's.

    ``read_failures`` / ``write_failures`` map a namespace to the error its read / write raises.
    ``edits`` maps a namespace to the secret someone else writes just before the rotator's first write there
    (so that write meets a conflict). ``on_write`` is called with every manifest the rotator sends.
    ``gate`` (a barrier) makes every write wait for the others: a run that writes one namespace at a time
    breaks it. ``peak`` is the most writes that were ever in flight at once.
    """

    server = "https://fake-apiserver.example:6443"

    def __init__(self, journal: Journal, secret_name: str = DEFAULT_SECRET_NAME) -> None:
        self.journal = journal
        self.secret_name = secret_name
        self.namespaces: dict[str, NamespaceInfo] = {}
        self.list_failure: KubeError | None = None
        self.accounts: dict[tuple[str, str], dict[str, object]] = {}
        self.account_edits: dict[tuple[str, str], list[dict[str, object]]] = {}
        self.account_failures: dict[tuple[str, str], KubeError] = {}
        self.events: list[dict[str, object]] = []
        self.event_failure: Exception | None = None
        self.secrets: dict[str, dict[str, object]] = {}
        self.read_failures: dict[str, KubeError] = {}
        self.write_failures: dict[str, KubeError] = {}
        self.manifests: dict[str, list[dict[str, object]]] = {}
        self.dry_manifests: dict[str, list[dict[str, object]]] = {}
        self.edits: dict[str, dict[str, object]] = {}
        self.on_write: Callable[[dict[str, object]], None] | None = None
        self.gate: threading.Barrier | None = None
        self.peak = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._versions = itertools.count(100)

    def close(self) -> None:
        """Nothing to release (here so the fake can stand in a ``Clients``)."""

    def put(self, namespace: str, secret: dict[str, object]) -> None:
        """A secret that exists before the run (its resourceVersion is set here)."""
        stored = copy.deepcopy(secret)
        stored.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))  # type: ignore[index]
        self.secrets[namespace] = stored

    def read_secret(self, namespace: str, name: str) -> dict[str, object] | None:
        assert name == self.secret_name, f"read of {name!r}, not the configured secret"
        self.journal.add("read", namespace)
        if namespace in self.read_failures:
            raise self.read_failures[namespace]
        secret = self.secrets.get(namespace)
        return copy.deepcopy(secret) if secret is not None else None

    def apply_secret(
        self, namespace: str, name: str, manifest: dict[str, object], *, dry_run: bool = False
    ) -> dict[str, object]:
        if dry_run:
            self.journal.add("dry-write", namespace)
            with self._lock:
                self.dry_manifests.setdefault(namespace, []).append(copy.deepcopy(manifest))
            if namespace in self.write_failures:
                raise self.write_failures[namespace]
            return copy.deepcopy(manifest)
        with self._lock:
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)
        try:
            if self.gate is not None:
                with contextlib.suppress(threading.BrokenBarrierError):  # the test sees gate.broken
                    self.gate.wait()
            return self._apply(namespace, name, manifest)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _apply(self, namespace: str, name: str, manifest: dict[str, object]) -> dict[str, object]:
        assert name == self.secret_name == manifest["metadata"]["name"], "write of another secret"  # type: ignore[index]
        assert manifest["metadata"]["namespace"] == namespace  # type: ignore[index]
        self.journal.add("write", namespace)
        with self._lock:
            self.manifests.setdefault(namespace, []).append(copy.deepcopy(manifest))
            edit = self.edits.pop(namespace, None)
        if edit is not None:
            self.put(namespace, edit)
        if self.on_write is not None:
            self.on_write(manifest)
        if namespace in self.write_failures:
            raise self.write_failures[namespace]
        metadata = dict(manifest["metadata"])  # type: ignore[call-overload]
        current = self.secrets.get(namespace)
        expected = metadata.pop("resourceVersion", None)
        if expected is not None and (current is None or current["metadata"]["resourceVersion"] != expected):  # type: ignore[index]
            raise KubeError("conflict", status=409, retryable=True)
        stored = {**copy.deepcopy(manifest), "metadata": {**metadata, "name": name}}
        self.put(namespace, stored)
        return copy.deepcopy(self.secrets[namespace])

    def namespace(self, name: str, *, labels: dict[str, str] | None = None, terminating: bool = False) -> None:
        """A namespace the fake lists (listing is only used when the selection has a glob or a selector)."""
        self.namespaces[name] = NamespaceInfo(name, labels or {}, terminating)

    def list_namespaces(self) -> list[NamespaceInfo]:
        self.journal.add("list-namespaces", "")
        if self.list_failure is not None:
            raise self.list_failure
        return list(self.namespaces.values())

    def account(self, namespace: str, name: str, pull_secrets: list[str] | None = None) -> None:
        """A service account that exists, with ``imagePullSecrets`` naming ``pull_secrets``."""
        body: dict[str, object] = {"metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"}}
        if pull_secrets is not None:
            body["imagePullSecrets"] = [{"name": n} for n in pull_secrets]
        self.accounts[(namespace, name)] = body

    def pull_secrets_of(self, namespace: str, name: str) -> list[object]:
        return [e["name"] for e in self.accounts[(namespace, name)].get("imagePullSecrets", [])]  # type: ignore[attr-defined,index]

    def read_service_account(self, namespace: str, name: str) -> dict[str, object] | None:
        self.journal.add("read-account", f"{namespace}/{name}")
        account = self.accounts.get((namespace, name))
        return copy.deepcopy(account) if account is not None else None

    def list_service_accounts(self, namespace: str) -> list[dict[str, object]]:
        self.journal.add("list-accounts", namespace)
        return [copy.deepcopy(a) for (ns, _), a in sorted(self.accounts.items()) if ns == namespace]

    def patch_service_account(
        self, namespace: str, name: str, patch: dict[str, object], *, dry_run: bool = False
    ) -> dict[str, object]:
        key = (namespace, name)
        self.journal.add("dry-patch" if dry_run else "patch", f"{namespace}/{name}")
        if key in self.account_failures:
            raise self.account_failures[key]
        with self._lock:
            edits = self.account_edits.get(key)
            if edits:
                self.accounts[key] = edits.pop(0)
            current = self.accounts[key]
            if patch["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:  # type: ignore[index]
                raise KubeError("conflict", status=409, retryable=True)
            if dry_run:
                return copy.deepcopy(current)
            version = str(int(current["metadata"]["resourceVersion"]) + 1)  # type: ignore[index]
            updated = {**copy.deepcopy(current), "imagePullSecrets": patch["imagePullSecrets"]}
            updated["metadata"]["resourceVersion"] = version  # type: ignore[index]
            self.accounts[key] = updated
            return copy.deepcopy(updated)

    def create_event(self, namespace: str, event: dict[str, object]) -> None:
        self.journal.add("event", namespace)
        if self.event_failure is not None:
            raise self.event_failure
        with self._lock:
            self.events.append(copy.deepcopy(event))

    def dockerconfig(self, namespace: str) -> dict[str, object]:
        data = self.secrets[namespace]["data"]
        return json.loads(base64.b64decode(data[".dockerconfigjson"]))  # type: ignore[index]


def pull_secret(
    auths: dict[str, object] | None = None, *, alias: str | None = None, expires_at: str | None = None
) -> dict[str, object]:
    """A dockerconfigjson secret as another tool (or an earlier run, with ``alias``) left it."""
    config = {"auths": auths or {}}
    annotations = {TOKEN_ALIAS: alias} if alias else {}
    if expires_at:
        annotations[EXPIRES_AT] = expires_at
    metadata: dict[str, object] = {"annotations": annotations} if annotations else {}
    return {
        "type": DOCKERCONFIG_TYPE,
        "metadata": metadata,
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }
