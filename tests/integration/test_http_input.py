"""Hostile and mistaken HTTP input against the real ``functions-framework`` process (gunicorn in front).

Every refusal is a JSON 4xx, and the function touches nothing: no Secret Manager read, no Crusoe API call,
no secret in any namespace.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
import requests
from kubernetes import client
from rotator.requests_guard import MAX_BODY_BYTES

from devkit.function import FunctionProcess, start_function
from tests.integration.conftest import assert_no_leak, secret_values

pytestmark = pytest.mark.integration


@pytest.fixture
def served(deployment, secret_manager) -> Iterator[FunctionProcess]:
    env = {**os.environ, **deployment.env, **secret_manager.env()}
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    with start_function(env, output=subprocess.PIPE) as function:
        yield function


def chunked(size: int) -> Iterator[bytes]:
    """A body without Content-Length (requests sends it chunked), in 8 KiB pieces."""
    sent = 0
    while sent < size:
        piece = min(8192, size - sent)
        sent += piece
        yield b"[" * piece


HOSTILE = [
    ("HEAD", "", {}, b"", 405),
    ("OPTIONS", "", {}, b"", 405),
    ("PUT", "", {}, b"{}", 405),
    ("DELETE", "", {}, b"", 405),
    ("POST", "admin", {}, b"", 404),
    ("GET", "a/b/../c", {}, b"", 404),
    ("POST", "", {"Content-Type": "application/json"}, b"x" * (MAX_BODY_BYTES + 1), 413),
    ("POST", "", {"Content-Type": "text/html"}, b"<html></html>", 400),
    ("POST", "", {}, b"[" * 20_000, 400),
    ("POST", "", {"Content-Type": "application/x-www-form-urlencoded"}, b'{"dry_run": true}', 415),
    ("POST", "", {"Content-Type": "application/json"}, b'{"dry_run": "yes"}', 400),
]


def test_http_hostile_input_is_refused_with_json_and_touches_nothing(served, deployment, crusoe, secret_manager):
    answers = []
    for method, path, headers, data, expected in HOSTILE:
        response = requests.request(method, served.url + path, headers=headers, data=data, timeout=30)
        answers.append(response.text)
        assert response.status_code == expected, (method, path, response.text)
        assert response.headers["Content-Type"] == "application/json"
        if method != "HEAD":
            assert response.json()["status"] == "failed"
            assert "Traceback" not in response.text
        if expected == 405:
            assert response.headers["Allow"] == "GET, POST"
    big = requests.post(served.url, data=chunked(50 * MAX_BODY_BYTES), timeout=30)
    assert big.status_code == 413, big.text
    assert secret_manager.requests == []
    assert crusoe.requests == []
    core = client.CoreV1Api(deployment.account.api_client())
    for namespace in deployment.namespaces:
        with pytest.raises(client.ApiException) as caught:
            core.read_namespaced_secret(deployment.account.secret_name, namespace)
        assert caught.value.status == 404
    served.process.terminate()
    output = served.process.communicate(timeout=10)[0].decode()
    assert "Traceback" not in output
    assert_no_leak([*answers, big.text, output], secret_values(deployment, crusoe))


def test_http_empty_body_of_any_type_rotates_and_json_as_octets_plans(served, deployment):
    scheduler = requests.post(served.url, headers={"Content-Type": "application/octet-stream"}, timeout=60)
    assert scheduler.status_code == 200, scheduler.text
    assert [n["result"] for n in scheduler.json()["namespaces"]] == ["created"] * 3
    body = b'{"dry_run": true}'
    plan = requests.post(served.url, data=body, headers={"Content-Type": "application/octet-stream"}, timeout=60)
    assert plan.status_code == 200, plan.text
    assert plan.json()["dry_run"] is True
    chunked_plan = requests.post(served.url, data=iter([body]), timeout=60)
    assert chunked_plan.status_code == 200, chunked_plan.text
    assert chunked_plan.json()["dry_run"] is True
