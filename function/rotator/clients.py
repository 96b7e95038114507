"""The one place where the rotator's clients are built from settings and secrets (the I/O edge)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import requests

from rotator.config import ClusterConfig, SecretManagerRef, Settings, parse_clusters
from rotator.credential import Credential, credential_of
from rotator.crusoe import CrusoeClient
from rotator.errors import SecretStoreError
from rotator.fleet import Cluster, Target
from rotator.kube import KubeClient
from rotator.kubeconfig import parse_kubeconfig
from rotator.rotation import Registry
from rotator.secretstore import (
    SCOPES,
    KubeconfigText,
    SecretManager,
    SecretReader,
    SecretWriter,
    load_credentials,
    load_kubeconfig,
)


@dataclass
class Clients:
    """The clients one call uses: the registry's, and one target per cluster; close them when the call is done."""

    crusoe: Registry | None
    targets: list[Target]
    closers: list[Callable[[], None]] = field(default_factory=list)
    connections: Connections | None = None
    store: SecretWriter | None = None  # Secret Manager, when any setting names a secret

    def close(self) -> None:
        """Release the pooled connections of every client built."""
        for close in self.closers:
            close()


@dataclass(frozen=True)
class Connection:
    """One connected cluster: its client, the kubeconfig it was built from, and that kubeconfig's credential."""

    config: ClusterConfig
    kube: KubeClient
    kubeconfig: KubeconfigText
    credential: Credential


class Connections:
    """Builds each cluster's client when the operation first asks for it (in a worker), and closes them all."""

    def __init__(self, settings: Settings, reader: SecretReader | None) -> None:
        self._settings = settings
        self._reader = reader
        self._built: dict[str, Connection] = {}
        self._lock = threading.Lock()

    def connect(self, config: ClusterConfig) -> Cluster:
        """A client for one cluster; every failure here is that cluster's, before any token exists."""
        kubeconfig = load_kubeconfig(config.kubeconfig, self._reader)
        access = parse_kubeconfig(
            kubeconfig.text,
            context=config.context,
            base_dir=kubeconfig.local.path.parent if kubeconfig.local is not None else None,
            allow_insecure=self._settings.allow_insecure_tls,
        )
        kube = KubeClient(access, pool_size=self._settings.max_parallel_writes)
        connection = Connection(config, kube, kubeconfig, credential_of(access))
        with self._lock:
            earlier = self._built.pop(config.name, None)
            self._built[config.name] = connection
        if earlier is not None:
            earlier.kube.close()
        return kube

    def credential(self, name: str) -> Credential | None:
        """The credential of cluster ``name``, once it is connected."""
        with self._lock:
            connection = self._built.get(name)
        return connection.credential if connection is not None else None

    def connected(self) -> list[Connection]:
        """Every cluster connected so far, in the order they connected."""
        with self._lock:
            return list(self._built.values())

    def close(self) -> None:
        """Release the pooled connections of every client built."""
        with self._lock:
            built, self._built = list(self._built.values()), {}
        for connection in built:
            connection.kube.close()


def _needs_secret_manager(settings: Settings) -> bool:
    sources = [settings.credentials, settings.clusters_secret, *(c.kubeconfig for c in settings.clusters)]
    return any(isinstance(source, SecretManagerRef) for source in sources)


def secret_reader(settings: Settings) -> SecretManager | None:
    """A Secret Manager client with application default credentials, if any setting names a secret."""
    if not _needs_secret_manager(settings):
        return None
    # Imported here, not at the top: google-auth costs about a quarter second of cold start and local runs
    # that read no secret from Secret Manager never need it.
    import google.auth  # noqa: PLC0415
    import google.auth.exceptions  # noqa: PLC0415
    from google.auth.transport.requests import AuthorizedSession, Request  # noqa: PLC0415

    try:
        credentials, _ = google.auth.default(scopes=SCOPES)
    except google.auth.exceptions.DefaultCredentialsError:
        raise SecretStoreError(
            "no Google credentials to read Secret Manager with: deploy with a service account, or run "
            "`gcloud auth application-default login` for local runs",
        ) from None
    try:
        # Fetched now, so a failing metadata server (or token endpoint) is one clear error before any read.
        credentials.refresh(Request())  # type: ignore[no-untyped-call]
    except google.auth.exceptions.GoogleAuthError as exc:
        # google-auth's message can quote the server's answer: name the failure's type only.
        raise SecretStoreError(
            f"cannot get an access token for Secret Manager ({type(exc).__name__}): on Google Cloud the "
            "metadata server did not answer as expected; the next run retries",
            retryable=True,
        ) from None
    session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
    return SecretManager(settings.secret_manager_endpoint, session)


def clusters_of(settings: Settings, reader: SecretReader | None) -> tuple[ClusterConfig, ...]:
    """The configured clusters: from the settings, or read from CLUSTERS_SECRET and checked now."""
    if settings.clusters_secret is None:
        return settings.clusters
    if reader is None:  # pragma: no cover - secret_reader builds one whenever CLUSTERS_SECRET is set
        raise SecretStoreError("no Secret Manager client to read CLUSTERS_SECRET")
    name = settings.clusters_secret.version_name
    try:
        text = reader.access(name).decode()
    except UnicodeDecodeError:
        raise SecretStoreError(f"the payload of {name} is not UTF-8 text") from None
    return parse_clusters(text, "CLUSTERS_SECRET")


def connect(settings: Settings, *, with_registry: bool = True) -> Clients:
    """Read the secrets the call needs and prepare the clients; clusters are connected inside the operation."""
    reader = secret_reader(settings)
    configs = clusters_of(settings, reader)
    connections = Connections(settings, reader)
    targets = [
        Target(config, partial(connections.connect, config), partial(connections.credential, config.name))
        for config in configs
    ]
    if not with_registry:
        return Clients(None, targets, [connections.close], connections, reader)
    credentials = load_credentials(settings.credentials, reader)
    crusoe = CrusoeClient(settings.api_endpoint, credentials, requests.Session())
    return Clients(crusoe, targets, [connections.close, crusoe.close], connections, reader)
