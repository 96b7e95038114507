"""The HTTP glue with fake clients: methods, bodies, which clients each operation asks for, status codes."""

from __future__ import annotations

import flask
import pytest
from rotator.clients import Clients
from rotator.errors import BadRequestError, KubeError
from rotator.fleet import Target
from rotator.handler import Handler, RunRequest, parse_body

from tests.unit.fakes import FakeCluster, FakeRegistry, Journal

HOST = "registry.us-east1-a.ccr.crusoecloudcompute.com"
ENV = {
    "CRUSOE_ACCESS_KEY": "key-id",
    "CRUSOE_SECRET_KEY": "c2VjcmV0LWtleS0xMjM0NTY3OA",
    "REGISTRY_URL": HOST,
    "REGISTRY_USERNAME": "ops@example.com",
    "TARGET_NAMESPACES": "web,ml",
    "KUBECONFIG": "/nowhere/kubeconfig",
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", RunRequest()),
        (b"  ", RunRequest()),
        (b"{}", RunRequest()),
        (b'{"dry_run": true}', RunRequest(dry_run=True)),
        (b'{"dry_run": false}', RunRequest()),
        (b'{"clusters": ["a", "b", "a"]}', RunRequest(clusters=("a", "b"))),
        (b'{"clusters": ["a"], "dry_run": true}', RunRequest(dry_run=True, clusters=("a",))),
    ],
)
def test_parse_body_accepts(raw, expected):
    assert parse_body(raw) == expected


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"force": true}', "unknown field"),
        (b'{"dry_run": "yes"}', "true or false"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"clusters": []}', "non-empty list"),
        (b'{"clusters": "a"}', "non-empty list"),
        (b'{"clusters": [1]}', "non-empty list"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON|JSON object"),
    ],
)
def test_parse_body_rejects(raw, match):
    with pytest.raises(BadRequestError, match=match):
        parse_body(raw)


class Connector:
    """Stands in for ``connect``: records what was asked for and hands out the fakes."""

    def __init__(self):
        journal = Journal()
        self.cluster = FakeCluster(journal)
        self.registry = FakeRegistry(journal)
        self.asked: list[bool] = []

    def __call__(self, settings, *, with_registry):
        assert [c.selection.names for c in settings.clusters] == [("web", "ml")]
        self.asked.append(with_registry)
        targets = [Target(config, lambda: self.cluster) for config in settings.clusters]
        return Clients(crusoe=self.registry if with_registry else None, targets=targets)


def call(handler, method="POST", data=b""):
    with flask.Flask(__name__).test_request_context("/", method=method, data=data):
        return handler(flask.request)


@pytest.fixture
def connector():
    return Connector()


@pytest.fixture
def handler(connector):
    return Handler(ENV, connector=connector)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_handler_answers_405_with_allow_for_other_methods(handler, connector, method):
    response = call(handler, method)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"
    assert connector.asked == []


def test_handler_answers_400_for_a_bad_body_and_connects_to_nothing(handler, connector):
    response = call(handler, data=b'{"force": true}')
    assert response.status_code == 400
    assert response.get_json() == {"status": "failed", "error": "unknown field(s) force; allowed: clusters, dry_run"}
    assert connector.asked == []


@pytest.mark.parametrize(
    ("method", "data", "asked", "code"), [("GET", b"", False, 503), ("POST", b'{"dry_run": true}', True, 200)]
)
def test_handler_asks_for_a_registry_client_only_to_rotate_or_prove_the_key(
    handler, connector, method, data, asked, code
):
    assert call(handler, method, data).status_code == code
    assert connector.asked == [asked]
    assert connector.registry.minted == []


def test_handler_answers_400_for_an_unknown_cluster_and_changes_nothing(handler, connector):
    response = call(handler, data=b'{"clusters": ["nope"]}')
    assert response.status_code == 400
    assert "unknown cluster(s) nope; configured: default" in response.get_json()["error"]
    assert connector.registry.minted == []


def test_handler_rotation_of_the_whole_fleet_by_name_keeps_the_plain_prefix(handler, connector):
    body = call(handler, data=b'{"clusters": ["default"]}').get_json()
    assert body["token"]["alias"].startswith("ccr-rotator-2")


def test_handler_rotates_with_a_registry_client(handler, connector):
    response = call(handler)
    body = response.get_json()
    assert response.status_code == 200, body
    assert connector.asked == [True]
    assert [n["result"] for n in body["namespaces"]] == ["created", "created"]
    assert body["token"]["alias"] == connector.registry.minted[0].alias


def test_handler_status_answer_names_the_secret_and_registry(handler):
    body = call(handler, "GET").get_json()
    assert body["secret_name"] == "crusoe-image-pull-secrets"
    assert body["registry"] == HOST
    assert [(n["cluster"], n["namespace"], n["exists"]) for n in body["namespaces"]] == [
        ("default", "web", False),
        ("default", "ml", False),
    ]
    assert body["clusters"] == [{"name": "default", "server": "fake-apiserver.example:6443"}]


def test_handler_dry_run_answer_is_marked(handler):
    body = call(handler, data=b'{"dry_run": true}').get_json()
    assert body["dry_run"] is True
    assert [n["result"] for n in body["namespaces"]] == ["would-create", "would-create"]


@pytest.mark.parametrize(("retryable", "status"), [(True, 503), (False, 500)])
def test_handler_status_code_follows_the_reports_failure(handler, connector, retryable, status):
    failure = KubeError("cannot write", status=503 if retryable else 403, retryable=retryable)
    connector.cluster.write_failures["ml"] = failure
    response = call(handler)
    assert response.status_code == status
    assert response.get_json()["status"] == "failed"


def test_handler_configuration_error_names_the_variable_and_connects_to_nothing(connector):
    handler = Handler({**ENV, "REGISTRY_URL": ""}, connector=connector)
    response = call(handler, "GET")
    assert response.status_code == 500
    assert "REGISTRY_URL" in response.get_json()["error"]
    assert connector.asked == []
