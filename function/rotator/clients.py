"""The one place where the rotator's clients are built from settings and secrets (the I/O edge)."""

from __future__ import annotations

from dataclasses import dataclass

import requests

from rotator.config import LocalFile, SecretManagerRef, Settings
from rotator.crusoe import CrusoeClient
from rotator.errors import SecretStoreError
from rotator.kube import KubeClient
from rotator.kubeconfig import parse_kubeconfig
from rotator.secretstore import SCOPES, SecretManager, SecretReader, load_credentials, load_kubeconfig


@dataclass
class Clients:
    """The clients one call uses; close them when the call is done."""

    kube: KubeClient
    crusoe: CrusoeClient | None

    def close(self) -> None:
        """Release the pooled connections of both clients."""
        self.kube.close()
        if self.crusoe is not None:
            self.crusoe.close()


def secret_reader(settings: Settings) -> SecretReader | None:
    """A Secret Manager client with application default credentials, if any setting names a secret."""
    if not isinstance(settings.credentials, SecretManagerRef) and not isinstance(settings.kubeconfig, SecretManagerRef):
        return None
    # Imported here, not at the top: google-auth costs about a quarter second of cold start and local runs
    # that read no secret from Secret Manager never need it.
    import google.auth  # noqa: PLC0415
    import google.auth.exceptions  # noqa: PLC0415
    from google.auth.transport.requests import AuthorizedSession  # noqa: PLC0415

    try:
        credentials, _ = google.auth.default(scopes=SCOPES)
    except google.auth.exceptions.DefaultCredentialsError:
        raise SecretStoreError(
            "no Google credentials to read Secret Manager with: deploy with a service account, or run "
            "`gcloud auth application-default login` for local runs",
        ) from None
    session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
    return SecretManager(settings.secret_manager_endpoint, session)


def connect(settings: Settings, *, with_registry: bool = True) -> Clients:
    """Read the secrets and build the clients; every failure here happens before any token exists."""
    reader = secret_reader(settings)
    kubeconfig, local = load_kubeconfig(settings.kubeconfig, reader)
    access = parse_kubeconfig(
        kubeconfig,
        context=settings.kube_context,
        base_dir=local.path.parent if isinstance(local, LocalFile) else None,
    )
    kube = KubeClient(access, pool_size=settings.max_parallel_writes)
    if not with_registry:
        return Clients(kube=kube, crusoe=None)
    try:
        credentials = load_credentials(settings.credentials, reader)
    except BaseException:
        kube.close()
        raise
    return Clients(kube=kube, crusoe=CrusoeClient(settings.api_endpoint, credentials, requests.Session()))
