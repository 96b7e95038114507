"""The control plane is real: its version, RBAC, validation and optimistic concurrency.

These tests talk plain HTTP to kube-apiserver (``requests`` with a bearer token or client certificate)
so that each asserts the exact status code and content type the rotator will meet, independent of any
client library. The least-privilege account comes from ``infra/rbac/render.py`` via the fixtures.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import pytest
import requests
import yaml
from kubernetes import client

from devkit import kube
from devkit.binaries import KUBE_APISERVER, parse_version, pinned_version

if TYPE_CHECKING:
    from pathlib import Path

    from devkit.cluster import ClusterHandle

pytestmark = pytest.mark.integration

PULL_SECRET = kube.PULL_SECRET_NAME
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
FIELD_MANAGER = "ccr-pull-secret-rotator"


class Http:
    """Raw HTTP to the apiserver as one identity (bearer token, or the admin client certificate)."""

    def __init__(self, handle: ClusterHandle, tmp_path: Path, token: str | None = None) -> None:
        ca = tmp_path / "ca.crt"
        ca.write_bytes(handle.credentials.ca_cert)
        self.server = handle.server
        self.ca = str(ca)
        self.session = requests.Session()
        # Ignore REQUESTS_CA_BUNDLE & co: they would override a session-level ``verify``.
        self.session.trust_env = False
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"
        else:
            cert, key = tmp_path / "admin.crt", tmp_path / "admin.key"
            cert.write_bytes(handle.credentials.admin_cert)
            key.write_bytes(handle.credentials.admin_key)
            self.session.cert = (str(cert), str(key))

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> requests.Response:
        data = body if isinstance(body, str) or body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        return self.session.request(
            method, self.server + path, data=data, headers=headers, params=params, verify=self.ca, timeout=30
        )


def _secrets(namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/secrets" + (f"/{name}" if name else "")


def _dockerconfig(token: str) -> str:
    auth = base64.b64encode(f"user:{token}".encode()).decode()
    return json.dumps({"auths": {"registry.invalid": {"auth": auth}}})


def _apply_body(namespace: str, name: str, dockerconfigjson: str) -> str:
    # JSON is valid YAML; string data keeps the test readable (the server stores it base64-encoded).
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": dockerconfigjson},
        }
    )


def _apply(http: Http, namespace: str, name: str, dockerconfigjson: str) -> requests.Response:
    return http.call(
        "PATCH",
        _secrets(namespace, name),
        _apply_body(namespace, name, dockerconfigjson),
        content_type=APPLY,
        params={"fieldManager": FIELD_MANAGER},
    )


def _stored_config(http: Http, namespace: str, name: str) -> dict[str, Any]:
    response = http.call("GET", _secrets(namespace, name))
    assert response.status_code == 200, response.text
    decoded: dict[str, Any] = json.loads(base64.b64decode(response.json()["data"][".dockerconfigjson"]))
    return decoded


@pytest.fixture
def admin_http(control_plane, tmp_path):
    return Http(control_plane, tmp_path)


@pytest.fixture
def rotator(control_plane, tmp_path, namespace_factory, rotator_account_factory):
    """A target namespace and the rotator's least-privilege account for it, as raw HTTP."""
    target = namespace_factory(prefix="target")
    access = rotator_account_factory([target])
    return target, access, Http(control_plane, tmp_path, access.token)


def test_version_reports_the_built_release(control_plane, kube_admin):
    info = client.VersionApi(kube_admin).get_code()
    assert info.git_version == control_plane.version
    if control_plane.binary_source in {"cache", "go build"}:
        expected = pinned_version(KUBE_APISERVER)
        major, minor, _ = parse_version(expected) or (0, 0, 0)
        assert info.git_version == expected
        assert (info.major, info.minor) == (str(major), str(minor))


def test_rbac_rotator_account_kubeconfig_is_self_contained(rotator):
    _, access, _ = rotator
    config = yaml.safe_load(access.kubeconfig)
    (cluster,) = config["clusters"]
    (user,) = config["users"]
    assert set(cluster["cluster"]) == {"server", "certificate-authority-data"}
    assert set(user["user"]) == {"token"}

    with access.api_client() as api:
        review = client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview())

    assert review.status.user_info.username == f"system:serviceaccount:{access.namespace}:{access.name}"


def test_rbac_rotator_account_creates_pull_secret_by_server_side_apply(rotator):
    target, _, http = rotator
    assert http.call("GET", _secrets(target, PULL_SECRET)).status_code == 404

    created = _apply(http, target, PULL_SECRET, _dockerconfig("first"))

    assert created.status_code == 201, created.text
    assert created.json()["type"] == "kubernetes.io/dockerconfigjson"
    assert _stored_config(http, target, PULL_SECRET)["auths"]["registry.invalid"]["auth"]


def test_rbac_rotator_account_applies_and_patches_pull_secret_but_may_not_put_it(rotator):
    target, _, http = rotator
    assert _apply(http, target, PULL_SECRET, _dockerconfig("first")).status_code == 201

    reapplied = _apply(http, target, PULL_SECRET, _dockerconfig("second"))
    assert reapplied.status_code == 200, reapplied.text

    # The Role has no `update`: the function only reads and applies, so a whole-object PUT is refused.
    current = http.call("GET", _secrets(target, PULL_SECRET)).json()
    current["data"][".dockerconfigjson"] = base64.b64encode(_dockerconfig("third").encode()).decode()
    assert http.call("PUT", _secrets(target, PULL_SECRET), current).status_code == 403

    labelled = http.call(
        "PATCH", _secrets(target, PULL_SECRET), {"metadata": {"labels": {"a": "b"}}}, content_type=MERGE
    )
    assert labelled.status_code == 200, labelled.text
    auth = _stored_config(http, target, PULL_SECRET)["auths"]["registry.invalid"]["auth"]
    assert base64.b64decode(auth) == b"user:second"


def test_rbac_rotator_account_forbidden_on_other_secrets(rotator, admin_http):
    target, _, http = rotator
    other = "someone-elses-secret"
    made = admin_http.call("POST", _secrets(target), {"metadata": {"name": other}, "stringData": {"k": "v"}})
    assert made.status_code == 201, made.text

    assert http.call("GET", _secrets(target, other)).status_code == 403
    assert _apply(http, target, other, _dockerconfig("x")).status_code == 403
    assert http.call("PATCH", _secrets(target, other), {"data": {"k": ""}}, content_type=MERGE).status_code == 403
    assert http.call("DELETE", _secrets(target, other)).status_code == 403
    # create is narrowed to the pull secret's name, so a POST (no name at authorization) is refused
    posted = http.call("POST", _secrets(target), {"metadata": {"name": "new-secret"}, "stringData": {"k": "v"}})
    assert posted.status_code == 403, posted.text
    assert http.call("GET", _secrets(target)).status_code == 403  # no list: names stay private


def test_rbac_rotator_account_forbidden_in_other_namespaces(rotator, namespace_factory, admin_http):
    _, access, http = rotator
    elsewhere = namespace_factory(prefix="unbound")

    assert _apply(http, elsewhere, PULL_SECRET, _dockerconfig("x")).status_code == 403
    assert http.call("GET", _secrets(elsewhere, PULL_SECRET)).status_code == 403
    assert (
        http.call(
            "POST",
            _secrets(elsewhere),
            json.loads(_apply_body(elsewhere, PULL_SECRET, _dockerconfig("x"))),
        ).status_code
        == 403
    )
    # Nor in its own namespace, where it has no Role.
    assert _apply(http, access.namespace, PULL_SECRET, _dockerconfig("x")).status_code == 403
    assert admin_http.call("GET", _secrets(elsewhere, PULL_SECRET)).status_code == 404


def test_validation_rejects_invalid_dockerconfigjson(rotator):
    target, _, http = rotator

    rejected = _apply(http, target, PULL_SECRET, "this is not json")

    assert rejected.status_code == 422, rejected.text
    status = rejected.json()
    assert status["reason"] == "Invalid"
    assert any(cause.get("field") == "data[.dockerconfigjson]" for cause in status["details"]["causes"])
    assert http.call("GET", _secrets(target, PULL_SECRET)).status_code == 404


def test_validation_rejects_dockerconfigjson_secret_without_the_key(rotator):
    target, _, http = rotator
    body = json.loads(_apply_body(target, PULL_SECRET, "{}"))
    body["stringData"] = {"other": "x"}

    rejected = http.call(
        "PATCH",
        _secrets(target, PULL_SECRET),
        json.dumps(body),
        content_type=APPLY,
        params={"fieldManager": FIELD_MANAGER},
    )

    assert rejected.status_code == 422, rejected.text


def test_apply_with_stale_resource_version_conflicts(rotator):
    target, _, http = rotator
    assert _apply(http, target, PULL_SECRET, _dockerconfig("first")).status_code == 201
    stale_version = http.call("GET", _secrets(target, PULL_SECRET)).json()["metadata"]["resourceVersion"]
    assert _apply(http, target, PULL_SECRET, _dockerconfig("second")).status_code == 200

    # The rotator's writes carry the resourceVersion it read: a stale one is a 409, not a lost edit.
    body = json.loads(_apply_body(target, PULL_SECRET, _dockerconfig("late")))
    body["metadata"]["resourceVersion"] = stale_version
    conflict = http.call(
        "PATCH",
        _secrets(target, PULL_SECRET),
        json.dumps(body),
        content_type=APPLY,
        params={"fieldManager": FIELD_MANAGER},
    )

    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["reason"] == "Conflict"
    auth = _stored_config(http, target, PULL_SECRET)["auths"]["registry.invalid"]["auth"]
    assert base64.b64decode(auth) == b"user:second"


def _account_with_rules(admin_http: Http, namespace: str, rules: list[dict[str, Any]]) -> str:
    """Bind a fresh ServiceAccount (in ``namespace``) to a Role with ``rules``; return a token for it.

    A test-only Role on purpose: these tests probe RBAC semantics that decide what the project's RBAC
    (``infra/modules/cluster-rbac/rules.json``) may narrow, so they cannot use that RBAC itself.
    """
    name = "probe"
    for path, body in (
        (f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": name}}),
        (
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
            {"metadata": {"name": name}, "rules": rules},
        ),
        (
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            },
        ),
    ):
        response = admin_http.call("POST", path, body)
        assert response.status_code == 201, response.text
    token = admin_http.call(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}},
    )
    assert token.status_code == 201, token.text
    value: str = token.json()["status"]["token"]
    return value


def _secret_rule(verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": [""], "resources": ["secrets"], "verbs": verbs, "resourceNames": [PULL_SECRET]}


def test_rbac_create_narrowed_by_resource_names_allows_server_side_apply_create(
    control_plane, tmp_path, namespace_factory, admin_http
):
    """A server-side-apply PATCH that creates the object is authorized as ``create`` WITH the name.

    So ``create`` can be narrowed with ``resourceNames`` for a rotator that only ever creates through
    apply; a plain POST carries no name at authorization time and is refused under the same Role.
    """
    namespace = namespace_factory(prefix="rn-create")
    token = _account_with_rules(admin_http, namespace, [_secret_rule(["get", "patch", "update", "create"])])
    http = Http(control_plane, tmp_path, token)

    created = _apply(http, namespace, PULL_SECRET, _dockerconfig("first"))
    assert created.status_code == 201, created.text
    assert _apply(http, namespace, PULL_SECRET, _dockerconfig("second")).status_code == 200
    assert _apply(http, namespace, "other-name", _dockerconfig("x")).status_code == 403

    admin_http.call("DELETE", _secrets(namespace, PULL_SECRET))
    posted = http.call("POST", _secrets(namespace), json.loads(_apply_body(namespace, PULL_SECRET, "{}")))
    assert posted.status_code == 403, posted.text


def test_rbac_server_side_apply_create_needs_the_create_verb(control_plane, tmp_path, namespace_factory, admin_http):
    """``patch`` alone does not let apply create the object: the create is authorized separately."""
    namespace = namespace_factory(prefix="rn-patch")
    token = _account_with_rules(admin_http, namespace, [_secret_rule(["get", "patch", "update"])])
    http = Http(control_plane, tmp_path, token)

    refused = _apply(http, namespace, PULL_SECRET, _dockerconfig("first"))

    assert refused.status_code == 403, refused.text
    assert admin_http.call("GET", _secrets(namespace, PULL_SECRET)).status_code == 404
