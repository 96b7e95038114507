"""The HTTP glue with fake clients: methods, bodies, which clients each operation asks for, status codes."""

from __future__ import annotations

import flask
import pytest
from rotator.clients import Clients
from rotator.errors import BadRequestError, KubeError
from rotator.handler import Handler, parse_body

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
    ("raw", "dry_run"),
    [(b"", False), (b"  ", False), (b"{}", False), (b'{"dry_run": true}', True), (b'{"dry_run": false}', False)],
)
def test_parse_body_accepts(raw, dry_run):
    assert parse_body(raw) is dry_run


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"force": true}', "unknown field"),
        (b'{"dry_run": "yes"}', "true or false"),
        (b"\xff\xfe", "not valid JSON"),
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
        assert settings.namespaces == ("web", "ml")
        self.asked.append(with_registry)
        return Clients(kube=self.cluster, crusoe=self.registry if with_registry else None)


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
    assert response.get_json() == {"status": "failed", "error": "unknown field(s) force; allowed: dry_run"}
    assert connector.asked == []


@pytest.mark.parametrize(("method", "data", "asked"), [("GET", b"", False), ("POST", b'{"dry_run": true}', False)])
def test_handler_asks_for_no_registry_client_to_read(handler, connector, method, data, asked):
    assert call(handler, method, data).status_code == 200
    assert connector.asked == [asked]
    assert connector.registry.minted == []


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
    assert body["namespaces"] == [{"namespace": "web", "exists": False}, {"namespace": "ml", "exists": False}]


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
