"""Test helpers on a running control plane: API clients, namespaces, and the rotator's ServiceAccount.

The ServiceAccount gets its permissions **only** from the project's own RBAC renderer
(``infra/rbac/render.py``, loaded by file path because ``infra/`` is not a package), so integration tests
exercise exactly the privileges users grant the rotator; there is no test-only copy of the rules.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, cast

import yaml
from kubernetes import client, config, dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ConflictError

from devkit import REPO_ROOT
from devkit.cluster import ClusterHandle, kubeconfig_yaml

LOG = logging.getLogger(__name__)

RBAC_RENDERER = REPO_ROOT / "infra" / "rbac" / "render.py"
PULL_SECRET_NAME = "crusoe-image-pull-secrets"
SERVICE_ACCOUNT_NAME = "ccr-pull-secret-rotator"
_CONFLICT = 409
_NOT_FOUND = 404


class RenderRBAC(Protocol):
    """The contract of ``infra/rbac/render.py``'s ``render`` (``self_renewal``: the Role for RENEW_KUBECONFIG)."""

    def __call__(
        self,
        namespaces: list[str],
        secret_name: str,
        service_account_namespace: str,
        service_account_name: str,
        *,
        service_accounts: list[str] | None = None,
        all_namespaces: bool = False,
        self_renewal: bool = False,
    ) -> list[dict[str, Any]]:
        """Return ServiceAccount, (Cluster)Role and (Cluster)RoleBinding objects as plain dicts."""
        ...


def api_client_from_kubeconfig(kubeconfig: str) -> client.ApiClient:
    """Return an ``ApiClient`` for a kubeconfig YAML string (embedded data, as these helpers write).

    The client library writes embedded certificates to temporary files; they go to a private temp dir.
    """
    configuration = client.Configuration()
    config.load_kube_config_from_dict(  # type: ignore[no-untyped-call]  # untyped in the client library
        yaml.safe_load(kubeconfig),
        client_configuration=configuration,
        temp_file_path=tempfile.mkdtemp(prefix="ccr-kubeconfig-"),
    )
    return client.ApiClient(configuration)


def admin_client(handle: ClusterHandle) -> client.ApiClient:
    """Return a ``system:masters`` API client for the control plane."""
    return api_client_from_kubeconfig(handle.admin_kubeconfig())


def unique_name(prefix: str) -> str:
    """Return ``prefix`` plus a short random suffix: a valid, collision-free namespace name."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_namespace(api: client.ApiClient, name: str | None = None, *, prefix: str = "test") -> str:
    """Create a namespace (a fresh unique name unless ``name`` is given; existing is fine) and return it."""
    name = name or unique_name(prefix)
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    try:
        client.CoreV1Api(api).create_namespace(body)
    except ApiException as exc:
        if exc.status != _CONFLICT:
            raise
    return name


def delete_namespaces(api: client.ApiClient, names: Iterable[str]) -> None:
    """Delete namespaces, best effort.

    With no controller-manager running they stay ``Terminating``; the data goes with the control plane.
    """
    core = client.CoreV1Api(api)
    for name in names:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != _NOT_FOUND:
                LOG.warning("could not delete namespace %s: %s", name, exc.reason)


def load_rbac_renderer(path: Path = RBAC_RENDERER) -> RenderRBAC:
    """Import ``render`` from the project's RBAC renderer by file path."""
    if not path.is_file():
        raise FileNotFoundError(f"the project's RBAC renderer {path} does not exist")
    spec = importlib.util.spec_from_file_location("ccr_infra_rbac_render", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return cast("RenderRBAC", module.render)


def apply_objects(api: client.ApiClient, objects: Iterable[dict[str, Any]]) -> None:
    """Create each object, or replace it if it exists (so applying twice is safe)."""
    dyn = dynamic.DynamicClient(api)  # type: ignore[no-untyped-call]  # untyped in the client library
    for obj in objects:
        resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        namespace = obj["metadata"].get("namespace")
        try:
            resource.create(body=obj, namespace=namespace)
        except ConflictError:
            current = resource.get(name=obj["metadata"]["name"], namespace=namespace)
            body = {
                **obj,
                "metadata": {**obj["metadata"], "resourceVersion": current.metadata.resourceVersion},
            }
            resource.replace(body=body, namespace=namespace)


@dataclasses.dataclass(frozen=True)
class ServiceAccountAccess:
    """A ServiceAccount bound only by the project's RBAC, and a kubeconfig that authenticates as it."""

    namespace: str
    name: str
    target_namespaces: tuple[str, ...]
    secret_name: str
    token: str
    kubeconfig: str

    def api_client(self) -> client.ApiClient:
        """Return an API client that acts as this ServiceAccount."""
        return api_client_from_kubeconfig(self.kubeconfig)


def rotator_service_account(  # noqa: PLR0913 - keyword-only knobs with the production defaults
    handle: ClusterHandle,
    api: client.ApiClient,
    target_namespaces: list[str],
    *,
    secret_name: str = PULL_SECRET_NAME,
    service_account_namespace: str | None = None,
    service_account_name: str = SERVICE_ACCOUNT_NAME,
    token_seconds: int = 8 * 24 * 3600,  # outlives the function's default CREDENTIAL_WARNING_HOURS (7 days)
    render: RenderRBAC | None = None,
    service_accounts: list[str] | None = None,
    all_namespaces: bool = False,
    self_renewal: bool = False,
) -> ServiceAccountAccess:
    """Apply the project's RBAC for ``target_namespaces`` and mint a TokenRequest token for the account.

    The ServiceAccount's namespace is fresh by default, so accounts of different tests never share
    bindings (a test's "forbidden in another namespace" stays true). ``service_accounts`` and
    ``all_namespaces`` select the RBAC modes of ``rules.json`` (PATCH_SERVICE_ACCOUNTS; globs or selectors);
    ``self_renewal`` lets the account request tokens for itself (RENEW_KUBECONFIG).
    """
    sa_namespace = create_namespace(api, service_account_namespace, prefix="rotator")
    if self_renewal and render is not None:
        raise ValueError("self_renewal renders with the project's own renderer")
    objects = (render or load_rbac_renderer())(
        target_namespaces,
        secret_name,
        sa_namespace,
        service_account_name,
        service_accounts=service_accounts,
        all_namespaces=all_namespaces,
        self_renewal=self_renewal,
    )
    apply_objects(api, objects)
    token = service_account_token(api, sa_namespace, service_account_name, token_seconds)
    user = f"system:serviceaccount:{sa_namespace}:{service_account_name}"
    return ServiceAccountAccess(
        namespace=sa_namespace,
        name=service_account_name,
        target_namespaces=tuple(target_namespaces),
        secret_name=secret_name,
        token=token,
        kubeconfig=kubeconfig_yaml(handle.server, handle.credentials.ca_cert, user_name=user, user={"token": token}),
    )


def service_account_token(api: client.ApiClient, namespace: str, name: str, seconds: int) -> str:
    """A bound token for a ServiceAccount (TokenRequest), as `kubectl create token` makes one."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
    )
    response = client.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, request)
    if response.status is None or not response.status.token:
        raise RuntimeError(f"TokenRequest for {namespace}/{name} returned no token")
    return str(response.status.token)
