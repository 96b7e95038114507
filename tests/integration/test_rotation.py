"""The function end to end through ``create_app``: real apiserver, Crusoe emulator, Secret Manager server."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from kubernetes import client
from rotator.config import load_settings
from rotator.crusoe import CrusoeClient
from rotator.fleet import Target
from rotator.kube import KubeClient
from rotator.kubeconfig import parse_kubeconfig
from rotator.rotation import rotate
from rotator.secret import SecretStr

from tests.integration.conftest import ACCESS_KEY_ID, REGISTRY, SECRET_KEY, USERNAME

pytestmark = pytest.mark.integration
SECRET = "crusoe-image-pull-secrets"
OWNED_OLD = "ccr-rotator-20261101T000000Z-0a0a0a"


def read_secret(kube_admin, namespace):
    try:
        return client.CoreV1Api(kube_admin).read_namespaced_secret(SECRET, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def dockerconfig(secret):
    return json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))


def token_for(crusoe, alias):
    return next(key.token for key in crusoe.tokens() if key.alias == alias)


def posts(crusoe):
    return [r for r in crusoe.requests if r.method == "POST"]


def test_first_rotation_creates_every_secret(deployment, invoke, crusoe, kube_admin):
    response = invoke()
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert [n["result"] for n in body["namespaces"]] == ["created"] * 3
    assert [n["namespace"] for n in body["namespaces"]] == deployment.namespaces
    alias = body["token"]["alias"]
    assert alias.startswith("ccr-rotator-")
    token = token_for(crusoe, alias)
    for namespace in deployment.namespaces:
        secret = read_secret(kube_admin, namespace)
        assert secret.type == "kubernetes.io/dockerconfigjson"
        entry = dockerconfig(secret)["auths"][REGISTRY]
        assert (entry["username"], entry["password"]) == (USERNAME, token)
        assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "ccr-pull-secret-rotator"
        assert secret.metadata.annotations["ccr-pull-secret-rotator/token-alias"] == alias
        assert secret.metadata.annotations["ccr-pull-secret-rotator/expires-at"] == body["token"]["expires_at"]
        assert token not in json.dumps(secret.metadata.annotations)
    expires = datetime.fromisoformat(body["token"]["expires_at"])
    assert timedelta(hours=11, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=12)
    assert len(posts(crusoe)) == 1
    logs = invoke.logs()
    per_namespace = [line for line in logs if line.get("namespace") and line.get("result") == "created"]
    assert {line["namespace"] for line in per_namespace} == set(deployment.namespaces)
    assert all(line["logging.googleapis.com/labels"] == {"execution_id": "exec-test"} for line in per_namespace)
    assert any("rotation succeeded" in str(line["message"]) for line in logs)


def test_second_rotation_keeps_previous_revokes_older_and_spares_foreign_tokens(deployment, invoke, crusoe):
    foreign = [
        crusoe.seed_token("someone-elses-token", created_at=datetime.now(UTC) - timedelta(days=30)),
        crusoe.seed_token("ccr-rotator-manual", created_at=datetime.now(UTC) - timedelta(days=30)),
        crusoe.seed_token(
            "ccr-rotator-20261001T000000Z-abcdef", usage="inference", created_at=datetime.now(UTC) - timedelta(days=30)
        ),
    ]
    older = crusoe.seed_token(OWNED_OLD, created_at=datetime.now(UTC) - timedelta(days=20))
    first = invoke().get_json()
    assert first["revoked"] == []  # the older one is inside the grace window of one previous token
    second = invoke()
    body = second.get_json()
    assert second.status_code == 200, body
    assert [n["result"] for n in body["namespaces"]] == ["updated"] * 3
    assert body["revoked"] == [older.alias]
    live = {key.alias for key in crusoe.tokens()}
    assert first["token"]["alias"] in live
    assert body["token"]["alias"] in live
    assert {key.alias for key in foreign} <= live
    assert [key.alias for key in crusoe.deleted()] == [older.alias]


def test_foreign_registry_entries_labels_and_annotations_are_preserved(deployment, invoke, kube_admin):
    namespace = deployment.namespaces[0]
    other = {"auths": {"ghcr.io": {"auth": base64.b64encode(b"bot:ghp").decode()}}}
    client.CoreV1Api(kube_admin).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=SECRET, labels={"team": "a"}, annotations={"owner": "platform"}),
            type="kubernetes.io/dockerconfigjson",
            data={".dockerconfigjson": base64.b64encode(json.dumps(other).encode()).decode()},
        ),
    )
    response = invoke()
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["namespaces"][0]["result"] == "updated"
    secret = read_secret(kube_admin, namespace)
    auths = dockerconfig(secret)["auths"]
    assert auths["ghcr.io"] == other["auths"]["ghcr.io"]
    assert REGISTRY in auths
    assert secret.metadata.labels["team"] == "a"
    assert secret.metadata.annotations["owner"] == "platform"


def test_wrong_type_secret_is_refused_and_untouched(deployment, invoke, crusoe, kube_admin):
    namespace = deployment.namespaces[1]
    created = client.CoreV1Api(kube_admin).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=SECRET),
            type="Opaque",
            data={"keep": base64.b64encode(b"me").decode()},
        ),
    )
    crusoe.seed_token(OWNED_OLD, created_at=datetime.now(UTC) - timedelta(days=20))
    response = invoke()
    body = response.get_json()
    assert response.status_code == 500
    assert body["status"] == "failed"
    results = {n["namespace"]: n for n in body["namespaces"]}
    assert results[namespace]["result"] == "failed"
    assert "'Opaque'" in results[namespace]["error"]
    assert [results[n]["result"] for n in deployment.namespaces if n != namespace] == ["created", "created"]
    assert body["revoked"] == []
    assert crusoe.deleted() == []
    after = read_secret(kube_admin, namespace)
    assert after.metadata.resource_version == created.metadata.resource_version
    assert after.type == "Opaque"


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        ({"status": 500, "times": 5}, 503),
        ({"status": 503, "times": 5}, 503),
        ({"status": 429, "times": 5, "retry_after": 0}, 503),
        ({"status": None, "malformed": True, "times": 5}, 503),
        ({"status": 400, "times": 1}, 500),
    ],
)
def test_crusoe_failures_change_nothing(deployment, invoke, crusoe, kube_admin, fault, status):
    crusoe.inject("createCcrToken", **fault)
    response = invoke()
    body = response.get_json()
    assert response.status_code == status, body
    assert body["status"] == "failed"
    assert "createCcrToken" in body["error"]
    assert all(read_secret(kube_admin, n) is None for n in deployment.namespaces)
    # A garbled answer may come with a minted token: the run revokes those strays itself, and nothing else.
    assert {key.alias for key in crusoe.deleted()} <= set(crusoe.mint_aliases)
    assert crusoe.tokens() == []


def test_lost_mint_answers_are_retried_with_new_aliases_and_strays_revoked(deployment, invoke, crusoe):
    crusoe.inject("createCcrToken", status=None, malformed=True, times=1)  # minted, but the answer is garbage
    response = invoke()
    body = response.get_json()
    assert response.status_code == 200, body
    assert len(posts(crusoe)) == 2
    assert len(body["revoked"]) == 1
    assert body["revoked"][0] != body["token"]["alias"]
    assert {k.alias for k in crusoe.tokens()} == {body["token"]["alias"]}


def test_wrong_crusoe_credentials_fail_before_writing(deployment, invoke, crusoe, kube_admin, secret_manager):
    secret_manager.add_version(
        "demo-project",
        "rotator-crusoe",
        json.dumps({"access_key_id": "nobody", "secret_key": "AAAAAAAAAAAAAAAAAAAAAA"}).encode(),
    )
    response = invoke()
    assert response.status_code == 500
    assert "401" in response.get_json()["error"]
    assert all(read_secret(kube_admin, n) is None for n in deployment.namespaces)


def test_a_failing_namespace_does_not_stop_the_others_and_revokes_nothing(
    deployment, invoke, crusoe, kube_admin, namespace_factory, monkeypatch
):
    outside = namespace_factory(prefix="no-rbac")  # the rotator's Role does not reach it: 403
    monkeypatch.setenv("TARGET_NAMESPACES", ",".join([*deployment.namespaces, outside]))
    crusoe.seed_token(OWNED_OLD, created_at=datetime.now(UTC) - timedelta(days=20))
    crusoe.seed_token("ccr-rotator-20261102T000000Z-0b0b0b", created_at=datetime.now(UTC) - timedelta(days=19))
    response = invoke()
    body = response.get_json()
    assert response.status_code == 500, body
    results = {n["namespace"]: n for n in body["namespaces"]}
    assert results[outside]["result"] == "failed"
    assert "403" in results[outside]["error"]
    assert all(results[n]["result"] == "created" for n in deployment.namespaces)
    assert body["revoked"] == []
    assert crusoe.deleted() == []
    assert all(read_secret(kube_admin, n) is not None for n in deployment.namespaces)


EXEC_KUBECONFIG = """
apiVersion: v1
kind: Config
current-context: cmk
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: crusoe}}}]
contexts: [{name: cmk, context: {cluster: c, user: u}}]
"""


def test_exec_plugin_kubeconfig_fails_before_minting(deployment, invoke, crusoe, secret_manager):
    secret_manager.add_version("demo-project", "rotator-kubeconfig", EXEC_KUBECONFIG.encode())
    response = invoke()
    assert response.status_code == 500
    assert "exec" in response.get_json()["error"]
    assert posts(crusoe) == []


def test_unreachable_cluster_fails_before_minting(deployment, invoke, crusoe, secret_manager):
    unreachable = deployment.account.kubeconfig.replace(
        deployment.account.kubeconfig.split("server: ")[1].split()[0], "https://127.0.0.1:9"
    )
    secret_manager.add_version("demo-project", "rotator-kubeconfig", unreachable.encode())
    response = invoke()
    body = response.get_json()
    assert response.status_code == 503, body
    assert "no token was minted" in body["error"]
    assert posts(crusoe) == []


def test_corrupted_secret_payload_fails_before_minting(deployment, invoke, crusoe, secret_manager):
    secret_manager.corrupt_crc32c(times=10)
    response = invoke()
    assert response.status_code == 503
    assert "CRC32C" in response.get_json()["error"]
    assert posts(crusoe) == []


def test_missing_configuration_names_the_variable_and_does_nothing(deployment, invoke, crusoe, monkeypatch):
    monkeypatch.delenv("REGISTRY_URL")
    response = invoke()
    assert response.status_code == 500
    assert "REGISTRY_URL" in response.get_json()["error"]
    assert crusoe.requests == []


def test_status_reports_annotations_without_changing_anything(deployment, invoke, crusoe, kube_admin):
    before = invoke("GET").get_json()
    assert [n["exists"] for n in before["namespaces"]] == [False] * 3
    alias = invoke().get_json()["token"]["alias"]
    requests_after_rotation = len(crusoe.requests)
    status = invoke("GET")
    assert status.status_code == 200
    namespaces = status.get_json()["namespaces"]
    assert all(n["exists"] and n["token_alias"] == alias and n["registry_entry"] for n in namespaces)
    assert len(crusoe.requests) == requests_after_rotation


def test_dry_run_mints_and_writes_nothing(deployment, invoke, crusoe, kube_admin):
    response = invoke("POST", {"dry_run": True})
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["dry_run"] is True
    assert [n["result"] for n in body["namespaces"]] == ["would-create"] * 3
    assert [r.method for r in crusoe.requests] == ["GET"]  # the key was proven with a signed read-only call
    assert all(read_secret(kube_admin, n) is None for n in deployment.namespaces)


@pytest.mark.parametrize(
    ("method", "raw", "status"),
    [("POST", b"{not json", 400), ("POST", b'{"force": true}', 400), ("PUT", b"", 405), ("DELETE", b"", 405)],
)
def test_bad_requests_do_nothing(deployment, invoke, crusoe, kube_admin, method, raw, status):
    response = invoke(method, raw=raw)
    assert response.status_code == status
    assert crusoe.requests == []
    assert all(read_secret(kube_admin, n) is None for n in deployment.namespaces)


def test_client_certificate_kubeconfig_like_cmk_admin_cert(deployment, invoke, secret_manager, control_plane):
    secret_manager.add_version("demo-project", "rotator-kubeconfig", control_plane.admin_kubeconfig().encode())
    response = invoke()
    assert response.status_code == 200, response.get_json()


def test_credentials_in_crusoe_cli_config_format(deployment, invoke, secret_manager):
    toml = f'[default]\naccess_key_id = "{ACCESS_KEY_ID}"\nsecret_key = "{SECRET_KEY}"\n'
    secret_manager.add_version("demo-project", "rotator-crusoe", toml.encode())
    response = invoke()
    assert response.status_code == 200, response.get_json()


def test_secret_manager_permission_denied_says_which_role(deployment, invoke, crusoe, secret_manager):
    secret_manager.deny("demo-project", "rotator-kubeconfig")
    response = invoke()
    assert response.status_code == 500
    assert "roles/secretmanager.secretAccessor" in response.get_json()["error"]
    assert crusoe.requests == []


class ChangesBeforeFirstWrite:
    """The real client, but someone else edits the secret between the rotator's read and its first write."""

    def __init__(self, kube, edit):
        self._kube = kube
        self._edit = edit
        self.writes = 0

    def __getattr__(self, name):
        return getattr(self._kube, name)

    def apply_secret(self, namespace, name, manifest, *, dry_run=False):
        self.writes += 1
        if self.writes == 1:
            self._edit()
        return self._kube.apply_secret(namespace, name, manifest, dry_run=dry_run)


def test_a_concurrent_edit_is_merged_not_lost(deployment, crusoe, kube_admin, tmp_path):

    namespace = deployment.namespaces[0]
    core = client.CoreV1Api(kube_admin)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=SECRET),
            type="kubernetes.io/dockerconfigjson",
            data={".dockerconfigjson": base64.b64encode(b'{"auths":{}}').decode()},
        ),
    )

    def someone_adds_a_registry():
        config = {"auths": {"quay.io": {"auth": base64.b64encode(b"u:p").decode()}}}
        core.patch_namespaced_secret(
            SECRET, namespace, {"data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}
        )

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(deployment.account.kubeconfig)
    settings = load_settings(
        {
            "CRUSOE_ACCESS_KEY": ACCESS_KEY_ID,
            "CRUSOE_SECRET_KEY": SECRET_KEY,
            "CRUSOE_API_ENDPOINT": crusoe.base_url,
            "REGISTRY_URL": REGISTRY,
            "REGISTRY_USERNAME": USERNAME,
            "TARGET_NAMESPACES": namespace,
            "KUBECONFIG": str(kubeconfig),
        }
    )
    kube = KubeClient(
        parse_kubeconfig(SecretStr(deployment.account.kubeconfig), context=None, base_dir=None), pool_size=2
    )
    cluster = ChangesBeforeFirstWrite(kube, someone_adds_a_registry)
    registry = CrusoeClient(settings.api_endpoint, settings.credentials, requests.Session())
    try:
        report = rotate(settings, registry, [Target(settings.clusters[0], lambda: cluster)])
    finally:
        registry.close()
        kube.close()
    assert report.status == "ok", report.to_json()
    assert cluster.writes == 2  # the first write met a 409, the second was merged from a fresh read
    auths = dockerconfig(read_secret(kube_admin, namespace))["auths"]
    assert set(auths) == {"quay.io", REGISTRY}


def test_a_token_from_a_run_that_stopped_before_writing_is_revoked_once_no_run_can_write_it(
    deployment, invoke, crusoe, monkeypatch
):
    monkeypatch.setenv("RUN_DEADLINE_SECONDS", "5")  # a run may write its token for 5 s, plus 5 s of margin
    first = invoke().get_json()["token"]["alias"]
    orphan = crusoe.seed_token(f"ccr-rotator-{datetime.now(UTC):%Y%m%dT%H%M%S}Z-0c0c0c")  # minted, never written
    meanwhile = invoke().get_json()
    assert meanwhile["status"] == "ok"
    assert orphan.alias not in meanwhile["revoked"]  # its run may still be writing it
    assert first in {key.alias for key in crusoe.tokens()}  # the delivered previous token keeps its grace window
    time.sleep(11)  # the rule is time-based: wait out the in-flight window it allows
    body = invoke().get_json()
    assert body["status"] == "ok"
    assert orphan.alias in body["revoked"]  # never delivered: it never takes a place in the grace window
    assert meanwhile["token"]["alias"] in {key.alias for key in crusoe.tokens()}


def _readme_sample() -> dict:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("A rotation or dry run answers:\n\n```json\n", 1)[1].split("```", 1)[0]
    return json.loads(block)


def test_readme_sample_answer_has_the_shape_of_a_real_one(deployment, invoke, crusoe):
    """The README's sample answer cannot drift from the real one: same fields, same consistent status."""
    invoke()
    real = invoke().get_json()
    sample = _readme_sample()
    assert set(sample) <= set(real), set(sample) - set(real)
    assert set(sample["clusters"][0]) <= set(real["clusters"][0])
    assert set(sample["token"]) == set(real["token"])
    updated = [n for n in sample["namespaces"] if n["result"] == "updated"]
    optional = {"service_accounts", "error"}  # shown in the sample, present in a real answer when they apply
    assert set(updated[0]) - optional <= set(real["namespaces"][0])
    # A sample that says ok has no failed namespace, and revokes only when everything succeeded.
    assert sample["status"] == "ok"
    assert all(n["result"] != "failed" for n in sample["namespaces"])
    assert all(c["status"] == "ok" for c in sample["clusters"])
