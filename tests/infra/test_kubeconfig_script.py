"""The kubectl user's path on the real control plane: render.py manifests, make-kubeconfig.sh, least privilege."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit import kube

if TYPE_CHECKING:
    from collections.abc import Callable

    from devkit.cluster import ClusterHandle

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl") or "kubectl"
RENDER_PY = ROOT / "infra" / "rbac" / "render.py"
SCRIPT = ROOT / "infra" / "scripts" / "make-kubeconfig.sh"
SECRET_NAME = "crusoe-image-pull-secrets"
FIELD_MANAGER = "ccr-pull-secret-rotator"

# kubectl ships with the machine image (google-cloud-cli); a missing one fails here rather than skipping.
pytestmark = pytest.mark.integration


def _apply_secret(api: client.ApiClient, namespace: str, name: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": "e30="},
    }
    client.CoreV1Api(api).patch_namespaced_secret(
        name,
        namespace,
        body,
        field_manager=FIELD_MANAGER,
        force=True,
        _content_type="application/apply-patch+yaml",
    )


def _forbidden(call: Callable[[], object]) -> bool:
    try:
        call()
    except ApiException as exc:
        return exc.status == 403
    return False


@pytest.fixture
def admin_kubeconfig(control_plane: ClusterHandle, tmp_path: Path) -> Path:
    path = tmp_path / "admin.kubeconfig"
    path.touch(mode=0o600)
    path.write_text(control_plane.admin_kubeconfig(), encoding="utf-8")
    return path


def test_kubectl_path_gives_a_kubeconfig_that_can_write_only_the_pull_secret(
    admin_kubeconfig, namespace_factory, kube_admin
):
    system_ns = namespace_factory(prefix="crusoe-system")
    target = namespace_factory(prefix="target")
    other = namespace_factory(prefix="other")
    env = {**os.environ, "KUBECONFIG": str(admin_kubeconfig)}

    manifests = subprocess.run(
        [
            sys.executable,
            str(RENDER_PY),
            "--namespaces",
            target,
            "--service-account-namespace",
            system_ns,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    subprocess.run([KUBECTL, "apply", "-f", "-"], input=manifests, check=True, capture_output=True, text=True, env=env)

    made = subprocess.run(
        [str(SCRIPT), "--stdout", "--namespace", system_ns, "--duration", "1h"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    assert "expires at 20" in made.stderr
    kubeconfig = yaml.safe_load(made.stdout)
    assert kubeconfig["users"][0]["user"]["token"]
    assert "client-key-data" not in made.stdout

    api = kube.api_client_from_kubeconfig(made.stdout)
    core = client.CoreV1Api(api)
    try:
        _apply_secret(api, target, SECRET_NAME)  # first write: create through server-side apply
        _apply_secret(api, target, SECRET_NAME)  # second write: patch
        assert core.read_namespaced_secret(SECRET_NAME, target).metadata.name == SECRET_NAME
        assert _forbidden(lambda: _apply_secret(api, target, "some-other-secret"))
        assert _forbidden(lambda: _apply_secret(api, other, SECRET_NAME))
        assert _forbidden(lambda: core.list_namespaced_secret(target))
        assert _forbidden(lambda: core.delete_namespaced_secret(SECRET_NAME, target))
        assert _forbidden(core.list_namespace)
    finally:
        api.close()


def test_server_side_apply_create_is_authorized_by_name(namespace_factory, kube_admin, control_plane):
    """Answers: can `create` be narrowed by resourceNames when the write is a server-side apply PATCH?"""
    target = namespace_factory(prefix="narrow")
    rbac = client.RbacAuthorizationV1Api(kube_admin)
    core = client.CoreV1Api(kube_admin)
    account = "narrow-create"
    core.create_namespaced_service_account(target, {"metadata": {"name": account}})
    rbac.create_namespaced_role(
        target,
        {
            "metadata": {"name": account},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "verbs": ["create", "get", "patch", "update"],
                    "resourceNames": [SECRET_NAME],
                },
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        target,
        {
            "metadata": {"name": account},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": target}],
        },
    )
    token = core.create_namespaced_service_account_token(
        account, target, {"spec": {"expirationSeconds": 600}}
    ).status.token
    kubeconfig = yaml.safe_load(control_plane.admin_kubeconfig())
    kubeconfig["users"][0]["user"] = {"token": token}
    api = kube.api_client_from_kubeconfig(yaml.safe_dump(kubeconfig))
    try:
        _apply_secret(api, target, SECRET_NAME)
        assert client.CoreV1Api(api).read_namespaced_secret(SECRET_NAME, target).type == (
            "kubernetes.io/dockerconfigjson"
        )
        assert _forbidden(lambda: _apply_secret(api, target, "another-name"))
    finally:
        api.close()
