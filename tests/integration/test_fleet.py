"""The fleet features end to end on real control planes, each with the project's RBAC.

Selection (globs, selectors, exclusions, terminating namespaces), service accounts, dry runs checked by the API
server, status and its 503 margin, Events, a hostile secret, and several clusters (a second control plane
started for this module, plus one that cannot be reached), including two groups rotated at once.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from functions_framework import create_app
from kubernetes import client
from rotator.errors import NamespaceGoneError
from rotator.kube import KubeClient
from rotator.kubeconfig import parse_kubeconfig
from rotator.secret import SecretStr

from devkit import kube
from devkit.cluster import ControlPlane, kubeconfig_yaml
from devkit.function import MAIN
from tests.integration.conftest import PROJECT

pytestmark = pytest.mark.integration
SECRET = "crusoe-image-pull-secrets"
ALIAS = "ccr-pull-secret-rotator/token-alias"


def read_secret(api, namespace):
    try:
        return client.CoreV1Api(api).read_namespaced_secret(SECRET, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def results(body):
    return {(n["cluster"], n["namespace"]): n["result"] for n in body["namespaces"]}


def use_one_cluster(monkeypatch, deployment, **env):
    """The deployment's environment with some variables replaced (None removes one)."""
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


@pytest.fixture
def labelled(kube_admin):
    """Create namespaces with labels (``factory(name, labels)``); deleted after the test."""
    created = []

    def factory(name, labels=None):
        body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels or {}))
        client.CoreV1Api(kube_admin).create_namespace(body)
        created.append(name)
        return name

    yield factory
    kube.delete_namespaces(kube_admin, created)


@pytest.fixture
def glob_account(rotator_account_factory, secret_manager, deployment):
    """The rotator's account with the all-namespaces RBAC (one ClusterRole), stored as the kubeconfig."""
    account = rotator_account_factory([], all_namespaces=True, service_accounts=["default"])
    secret_manager.add_version(PROJECT, "rotator-kubeconfig", account.kubeconfig.encode())
    return account


# -- selection -----------------------------------------------------------------------------------------------------


def test_a_glob_picks_up_a_new_namespace_and_never_touches_excluded_or_terminating_ones(
    deployment, glob_account, labelled, invoke, kube_admin, monkeypatch
):
    tag = uuid.uuid4().hex[:6]
    first_ns = labelled(f"fleet-{tag}-a")
    excluded = labelled(f"fleet-{tag}-skip")
    dying = labelled(f"fleet-{tag}-dying")
    client.CoreV1Api(kube_admin).delete_namespace(dying)  # no controller-manager: it stays Terminating
    monkeypatch.setattr("rotator.kube.PAGE_SIZE", 2)  # the listing takes many pages
    use_one_cluster(monkeypatch, deployment, TARGET_NAMESPACES=f"fleet-{tag}-*", EXCLUDE_NAMESPACES=f"fleet-{tag}-skip")
    first = invoke().get_json()
    assert first["status"] == "ok", first
    assert results(first) == {("default", first_ns): "created", ("default", dying): "skipped"}
    late = labelled(f"fleet-{tag}-late")
    second = invoke().get_json()
    assert results(second) == {
        ("default", first_ns): "updated",
        ("default", late): "created",
        ("default", dying): "skipped",
    }
    assert read_secret(kube_admin, excluded) is None
    assert read_secret(kube_admin, dying) is None


def test_a_label_selector_chooses_namespaces_and_a_named_missing_one_fails_clearly(
    deployment, glob_account, labelled, invoke, monkeypatch
):
    tag = uuid.uuid4().hex[:6]
    chosen = labelled(f"sel-{tag}-a", {"ccr-test": tag})
    labelled(f"sel-{tag}-b", {"ccr-test": "other"})
    use_one_cluster(
        monkeypatch, deployment, TARGET_NAMESPACES=f"nowhere-{tag}", TARGET_NAMESPACE_SELECTOR=f"ccr-test={tag}"
    )
    response = invoke()
    body = response.get_json()
    assert results(body) == {("default", f"nowhere-{tag}"): "failed", ("default", chosen): "created"}
    missing = next(n for n in body["namespaces"] if n["result"] == "failed")
    assert missing["error"] == f"namespace 'nowhere-{tag}' does not exist"
    assert response.status_code == 500
    assert body["revoked"] == []


# -- robustness, service accounts, events ----------------------------------------------------------------------------


def test_a_hostile_secret_fails_only_its_namespace(deployment, invoke, kube_admin):
    hostile = deployment.namespaces[1]
    deep = b'{"x":' * 2000 + b"{}" + b"}" * 2000  # the API server's decoder takes it; Python's json recurses too deep
    client.CoreV1Api(kube_admin).create_namespaced_secret(
        hostile,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=SECRET),
            type="kubernetes.io/dockerconfigjson",
            data={".dockerconfigjson": base64.b64encode(deep).decode()},
        ),
    )
    body = invoke().get_json()
    outcome = {n["namespace"]: n for n in body["namespaces"]}
    assert outcome[hostile]["result"] == "failed"
    assert "nested deeper than" in outcome[hostile]["error"]
    others = [ns for ns in deployment.namespaces if ns != hostile]
    assert [outcome[ns]["result"] for ns in others] == ["created", "created"]
    assert all(read_secret(kube_admin, ns) is not None for ns in others)
    assert body["revoked"] == []


def test_service_accounts_keep_other_pull_secrets_in_order_and_missing_ones_are_reported(
    deployment, rotator_account_factory, secret_manager, invoke, kube_admin, monkeypatch
):
    account = rotator_account_factory(deployment.namespaces, service_accounts=["default", "builder"])
    secret_manager.add_version(PROJECT, "rotator-kubeconfig", account.kubeconfig.encode())
    namespace = deployment.namespaces[0]
    core = client.CoreV1Api(kube_admin)
    refs = [client.V1LocalObjectReference(name=n) for n in ("ghcr", "quay")]
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"), image_pull_secrets=refs)
    )
    use_one_cluster(monkeypatch, deployment, PATCH_SERVICE_ACCOUNTS="default,builder")
    body = invoke().get_json()
    assert body["status"] == "ok", body
    first = next(n for n in body["namespaces"] if n["namespace"] == namespace)
    assert first["service_accounts"] == [
        {"name": "default", "result": "patched"},
        {"name": "builder", "result": "missing", "error": "the service account does not exist (it is not created)"},
    ]
    patched = core.read_namespaced_service_account("default", namespace)
    assert [r.name for r in patched.image_pull_secrets] == ["ghcr", "quay", SECRET]
    again = invoke().get_json()
    assert next(n for n in again["namespaces"] if n["namespace"] == namespace)["service_accounts"][0]["result"] == (
        "unchanged"
    )
    status = invoke("GET").get_json()
    assert next(n for n in status["namespaces"] if n["namespace"] == namespace)["service_accounts"][0] == {
        "name": "default",
        "result": "references",
    }


def test_events_tell_each_namespaces_story(deployment, invoke, kube_admin):
    body = invoke().get_json()
    events = client.EventsV1Api(kube_admin).list_namespaced_event(deployment.namespaces[0]).items
    (event,) = [e for e in events if e.regarding.name == SECRET]
    assert (event.type, event.reason, event.reporting_controller) == ("Normal", "Rotated", "ccr-pull-secret-rotator")
    assert body["token"]["alias"] in event.note


# -- dry run ---------------------------------------------------------------------------------------------------------


def cluster_state(api, namespaces):
    return {ns: (s.metadata.resource_version if (s := read_secret(api, ns)) else None) for ns in namespaces}


def test_a_dry_run_reports_the_servers_403_and_changes_nothing(
    deployment, invoke, crusoe, kube_admin, namespace_factory, monkeypatch, control_plane
):
    read_only = namespace_factory(prefix="readonly")
    rbac = client.RbacAuthorizationV1Api(kube_admin)
    subject = client.RbacV1Subject(
        kind="ServiceAccount", name=deployment.account.name, namespace=deployment.account.namespace
    )
    rbac.create_namespaced_role(
        read_only,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="read-only"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["get"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        read_only,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="read-only"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="read-only"),
            subjects=[subject],
        ),
    )
    crusoe.seed_token("ccr-rotator-20261001T000000Z-0d0d0d", created_at=datetime.now(UTC) - timedelta(days=30))
    crusoe.seed_token("ccr-rotator-20261002T000000Z-0e0e0e", created_at=datetime.now(UTC) - timedelta(days=29))
    namespaces = [*deployment.namespaces, read_only]
    use_one_cluster(monkeypatch, deployment, TARGET_NAMESPACES=",".join(namespaces))
    before = (cluster_state(kube_admin, namespaces), sorted(k.alias for k in crusoe.tokens()))
    response = invoke("POST", {"dry_run": True})
    body = response.get_json()
    assert response.status_code == 500, body
    assert results(body)[("default", read_only)] == "failed"
    assert "HTTP 403" in next(n["error"] for n in body["namespaces"] if n["namespace"] == read_only)
    assert [results(body)[("default", ns)] for ns in deployment.namespaces] == ["would-create"] * 3
    assert body["would_revoke"] == ["ccr-rotator-20261001T000000Z-0d0d0d"]
    assert body["clusters"][0]["server"] == urlsplit(control_plane.server).netloc
    after = (cluster_state(kube_admin, namespaces), sorted(k.alias for k in crusoe.tokens()))
    assert after == before
    assert {r.method for r in crusoe.requests} == {"GET"}


def test_a_dry_run_with_a_wrong_crusoe_key_fails(deployment, invoke, crusoe, secret_manager):
    wrong = json.dumps({"access_key_id": "wrong-key", "secret_key": "c2VjcmV0LWtleS0xMjM0NTY3OA"}).encode()
    secret_manager.add_version(PROJECT, "rotator-crusoe", wrong)
    response = invoke("POST", {"dry_run": True})
    assert response.status_code == 500
    assert response.get_json()["error"].startswith("the Crusoe API key does not work")
    assert crusoe.tokens() == []


# -- status ----------------------------------------------------------------------------------------------------------


def test_status_turns_503_inside_the_margin_naming_the_targets(deployment, invoke, monkeypatch):
    use_one_cluster(monkeypatch, deployment, TOKEN_EXPIRATION_HOURS="4", EXPIRY_WARNING_HOURS="1")
    assert invoke().status_code == 200
    fresh = invoke("GET")
    assert fresh.status_code == 200, fresh.get_json()
    use_one_cluster(monkeypatch, deployment, TOKEN_EXPIRATION_HOURS="720", EXPIRY_WARNING_HOURS="5")
    late = invoke("GET")
    body = late.get_json()
    assert late.status_code == 503
    assert body["at_risk"] == [f"default/{ns}" for ns in deployment.namespaces]
    assert 3 * 3600 < body["earliest_expiry_seconds"] <= 4 * 3600
    lines = [line for line in invoke.logs() if line.get("event") == "status_summary"]
    assert lines[-1]["at_risk"] == body["at_risk"]


# -- several clusters --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def second_plane(control_plane):  # the session plane first: it proves the binaries exist (or fails under CI)
    with ControlPlane() as plane:
        admin = kube.admin_client(plane.handle)
        try:
            yield plane.handle, admin
        finally:
            admin.close()


@pytest.fixture
def two_clusters(deployment, second_plane, secret_manager, monkeypatch):
    """CLUSTERS: the deployment's cluster as ``east``, the second control plane as ``west``."""
    handle, admin = second_plane
    namespaces = [kube.create_namespace(admin, prefix="west") for _ in range(2)]
    account = kube.rotator_service_account(handle, admin, namespaces)
    west = secret_manager.add_version(PROJECT, "kube-west", account.kubeconfig.encode())
    clusters = [
        {"name": "east", "kubeconfig_secret": deployment.kubeconfig_version, "namespaces": deployment.namespaces},
        {"name": "west", "kubeconfig_secret": west, "namespaces": namespaces},
    ]
    for name in ("TARGET_NAMESPACES", "KUBECONFIG_SECRET"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("CLUSTERS", json.dumps(clusters))
    yield clusters, admin
    kube.delete_namespaces(admin, namespaces)


def test_one_token_reaches_every_cluster_and_the_report_names_each(
    two_clusters, deployment, invoke, crusoe, kube_admin
):
    clusters, west_admin = two_clusters
    response = invoke()
    body = response.get_json()
    assert response.status_code == 200, body
    assert [c["name"] for c in body["clusters"]] == ["east", "west"]
    assert body["clusters"][0]["server"] != body["clusters"][1]["server"]
    assert len([r for r in crusoe.requests if r.method == "POST"]) == 1
    alias = body["token"]["alias"]
    assert all(read_secret(kube_admin, ns).metadata.annotations[ALIAS] == alias for ns in clusters[0]["namespaces"])
    assert all(read_secret(west_admin, ns).metadata.annotations[ALIAS] == alias for ns in clusters[1]["namespaces"])
    summaries = [line for line in invoke.logs() if line.get("event") == "cluster_summary"]
    assert sorted(line["cluster"] for line in summaries) == ["east", "west"]
    assert all(11 * 3600 < line["earliest_expiry_seconds"] <= 12 * 3600 for line in summaries)


def test_an_unreachable_cluster_fails_the_run_while_the_others_are_written_and_nothing_is_revoked(
    two_clusters, invoke, crusoe, secret_manager, control_plane, monkeypatch
):
    clusters, west_admin = two_clusters
    crusoe.seed_token("ccr-rotator-20261001T000000Z-0d0d0d", created_at=datetime.now(UTC) - timedelta(days=30))
    dead = kubeconfig_yaml(
        "https://127.0.0.1:9", control_plane.credentials.ca_cert, user_name="x", user={"token": "t" * 20}
    )
    version = secret_manager.add_version(PROJECT, "kube-dead", dead.encode())
    clusters = [*clusters, {"name": "gone", "kubeconfig_secret": version, "namespaces": "default"}]
    monkeypatch.setenv("CLUSTERS", json.dumps(clusters))
    monkeypatch.setenv("KEEP_PREVIOUS_TOKENS", "0")
    response = invoke()
    body = response.get_json()
    assert response.status_code == 503, body
    assert [c["status"] for c in body["clusters"]] == ["ok", "ok", "failed"]
    assert "cannot reach the API server" in next(n["error"] for n in body["namespaces"] if n["cluster"] == "gone")
    assert {r for (c, _), r in results(body).items() if c != "gone"} == {"created"}
    assert body["revoked"] == []
    assert all(read_secret(west_admin, ns) is not None for ns in clusters[1]["namespaces"])


def test_two_groups_rotated_at_once_never_revoke_each_others_tokens(
    two_clusters, deployment, invoke, crusoe, kube_admin, monkeypatch
):
    clusters, west_admin = two_clusters
    monkeypatch.setenv("KEEP_PREVIOUS_TOKENS", "0")
    answers = {}

    def run(group, key):
        app = create_app(target="rotate", source=str(MAIN)).test_client()
        response = app.post("/", json={"clusters": [group]})
        answers[key] = response.get_json()
        invoke.bodies.append(response.get_data(as_text=True))  # scanned for leaks like every answer

    for round_ in range(2):
        threads = [threading.Thread(target=run, args=(g, (g, round_))) for g in ("east", "west")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert all(a["status"] == "ok" for a in answers.values()), answers
    east_alias, west_alias = answers[("east", 1)]["token"]["alias"], answers[("west", 1)]["token"]["alias"]
    assert east_alias.split("-g")[1][:6] != west_alias.split("-g")[1][:6]
    live = {key.alias for key in crusoe.tokens()}
    assert {east_alias, west_alias} <= live
    assert answers[("east", 1)]["revoked"] == [answers[("east", 0)]["token"]["alias"]]
    assert answers[("west", 1)]["revoked"] == [answers[("west", 0)]["token"]["alias"]]
    assert all(read_secret(kube_admin, ns).metadata.annotations[ALIAS] == east_alias for ns in deployment.namespaces)
    assert all(
        read_secret(west_admin, ns).metadata.annotations[ALIAS] == west_alias for ns in clusters[1]["namespaces"]
    )


# -- the client against the real API server ----------------------------------------------------------------------------


@pytest.fixture
def admin_kube(control_plane):
    access = parse_kubeconfig(SecretStr(control_plane.admin_kubeconfig()), context=None, base_dir=None)
    kube_client = KubeClient(access, pool_size=2)
    yield kube_client
    kube_client.close()


def manifest(namespace):
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": namespace},
        "type": "Opaque",
    }


def test_kube_client_tells_a_missing_namespace_from_a_terminating_one(admin_kube, kube_admin, labelled):
    missing = f"missing-{uuid.uuid4().hex[:6]}"
    with pytest.raises(NamespaceGoneError) as gone:
        admin_kube.apply_secret(missing, SECRET, manifest(missing))
    assert (gone.value.terminating, gone.value.message) == (False, f"namespace {missing!r} does not exist")
    dying = labelled(f"dying-{uuid.uuid4().hex[:6]}")
    client.CoreV1Api(kube_admin).delete_namespace(dying)
    with pytest.raises(NamespaceGoneError) as terminating:
        admin_kube.apply_secret(dying, SECRET, manifest(dying), dry_run=True)
    assert terminating.value.terminating
