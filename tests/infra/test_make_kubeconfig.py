"""The kubectl user's path on the real control plane: render.py manifests, make_kubeconfig.py, least privilege."""

from __future__ import annotations

import json
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
MAKE = shutil.which("make") or "make"
RENDER_PY = ROOT / "infra" / "rbac" / "render.py"
TOOL = ROOT / "infra" / "tools" / "make_kubeconfig.py"
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


@pytest.fixture
def rbac_applied(admin_kubeconfig, namespace_factory, kube_admin) -> dict[str, str]:
    """The kubectl user's RBAC applied from render.py: names of the account's, a target and another namespace."""
    names = {
        "system": namespace_factory(prefix="crusoe-system"),
        "target": namespace_factory(prefix="target"),
        "other": namespace_factory(prefix="other"),
    }
    manifests = subprocess.run(
        [
            sys.executable,
            str(RENDER_PY),
            "--namespaces",
            names["target"],
            "--service-account-namespace",
            names["system"],
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    env = {**os.environ, "KUBECONFIG": str(admin_kubeconfig)}
    subprocess.run([KUBECTL, "apply", "-f", "-"], input=manifests, check=True, capture_output=True, text=True, env=env)
    return names


def _tool(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), *args], check=False, capture_output=True, text=True, env=env)


def test_make_kubeconfig_gives_a_kubeconfig_that_can_write_only_the_pull_secret(admin_kubeconfig, rbac_applied):
    target, other = rbac_applied["target"], rbac_applied["other"]
    env = {**os.environ, "KUBECONFIG": str(admin_kubeconfig)}

    made = _tool(["--stdout", "--namespace", rbac_applied["system"], "--duration", "1h"], env)

    assert made.returncode == 0, made.stderr
    assert "expires at 20" in made.stderr
    kubeconfig = yaml.safe_load(made.stdout)
    token = kubeconfig["users"][0]["user"]["token"]
    assert token
    assert token not in made.stderr
    assert "client-key-data" not in made.stdout
    assert kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]

    api = kube.api_client_from_kubeconfig(made.stdout)
    core = client.CoreV1Api(api)
    try:
        _apply_secret(api, target, SECRET_NAME)  # first write: create through server-side apply
        _apply_secret(api, target, SECRET_NAME)  # second write: patch
        assert core.read_namespaced_secret(SECRET_NAME, target).metadata.name == SECRET_NAME
        assert _forbidden(lambda: _apply_secret(api, target, "some-other-secret"))
        assert _forbidden(lambda: _apply_secret(api, other, SECRET_NAME))
        assert _forbidden(lambda: core.list_namespaced_secret(target))
        assert _forbidden(
            lambda: core.replace_namespaced_secret(
                SECRET_NAME, target, core.read_namespaced_secret(SECRET_NAME, target)
            )
        )
        assert _forbidden(lambda: core.delete_namespaced_secret(SECRET_NAME, target))
        assert _forbidden(core.list_namespace)
    finally:
        api.close()


FAKE_GCLOUD = """#!{python}
import json, sys
with open({record!r}, "w") as handle:
    json.dump({{"argv": sys.argv[1:], "stdin": sys.stdin.read()}}, handle)
print("Created version [7] of the secret.", file=sys.stderr)
"""


def test_make_kubeconfig_adds_a_secret_version_from_stdin_and_prints_no_token(admin_kubeconfig, rbac_applied, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "gcloud.json"
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD.format(python=sys.executable, record=str(record)), encoding="utf-8")
    gcloud.chmod(0o755)
    env = {**os.environ, "KUBECONFIG": str(admin_kubeconfig), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    secret = "projects/p/secrets/ccr-pull-secret-rotator-kubeconfig"

    made = _tool(["--secret", secret, "--namespace", rbac_applied["system"], "--duration", "1h"], env)

    assert made.returncode == 0, made.stderr
    call = json.loads(record.read_text(encoding="utf-8"))
    assert call["argv"] == ["secrets", "versions", "add", secret, "--data-file=-"]
    token = yaml.safe_load(call["stdin"])["users"][0]["user"]["token"]
    assert token
    assert token not in made.stdout
    assert token not in made.stderr
    assert not list(tmp_path.glob("*.yaml"))  # nothing written to disk


def test_make_kubeconfig_names_a_missing_service_account(admin_kubeconfig, namespace_factory):
    env = {**os.environ, "KUBECONFIG": str(admin_kubeconfig)}
    made = _tool(["--stdout", "--namespace", namespace_factory(prefix="empty")], env)
    assert made.returncode == 2
    assert "ccr-pull-secret-rotator" in made.stderr
    assert "apply the RBAC first" in made.stderr
    assert not made.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--secret is required"),
        (["--secret", "a/b"], "--secret 'a/b'"),
        (["--stdout", "--duration", "90d"], "--duration '90d'"),
        (["--stdout", "--namespace", "Bad_NS"], "--namespace 'Bad_NS'"),
        (["--stdout", "--server", "http://plain:6443"], "must be an https:// URL"),
    ],
)
def test_make_kubeconfig_refuses_bad_input_before_calling_kubectl(args, message, tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}  # no kubectl reachable
    made = _tool(args, env)
    assert made.returncode == 2
    assert message in made.stderr


def test_make_kubeconfig_without_secret_prints_the_make_usage():
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET", "MAKEFLAGS"}}
    made = subprocess.run([MAKE, "-s", "kubeconfig"], cwd=ROOT, check=False, capture_output=True, text=True, env=env)
    assert made.returncode == 2
    assert "usage: make kubeconfig SECRET=" in made.stderr


def test_make_kubeconfig_target_passes_the_make_variables():
    env = {k: v for k, v in os.environ.items() if k != "MAKEFLAGS"}
    dry = subprocess.run(
        [MAKE, "-n", "kubeconfig", "SECRET=projects/p/secrets/s", "NAMESPACE=ops", "DURATION=1h", "CONTEXT=admin"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    command = " ".join(dry.replace("\\\n", " ").split())
    assert 'infra/tools/make_kubeconfig.py --secret "projects/p/secrets/s"' in command
    assert '--namespace "ops"' in command
    assert '--duration "1h"' in command
    assert '--context "admin"' in command


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
