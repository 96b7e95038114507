"""The function as Cloud Run serves it: a real ``functions-framework`` process called over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest
import requests

from devkit.function import FunctionProcess, start_function
from tests.integration.conftest import assert_no_leak, secret_values

pytestmark = pytest.mark.integration


@pytest.fixture
def served(deployment, secret_manager) -> Iterator[FunctionProcess]:
    env = {**os.environ, **deployment.env, **secret_manager.env(), "LOG_EXECUTION_ID": "true"}
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    with start_function(env, output=subprocess.PIPE) as function:
        yield function


def test_functions_framework_process_rotates_and_logs_json(served, deployment, crusoe):
    url, process = served.url, served.process
    first = requests.post(url, timeout=60)
    second = requests.post(url, json={}, timeout=60)
    status = requests.get(url, timeout=60)
    assert first.status_code == 200, first.text
    assert [n["result"] for n in second.json()["namespaces"]] == ["updated"] * 3
    assert status.status_code == 200
    assert requests.patch(url, timeout=10).status_code == 405
    process.terminate()
    output = process.communicate(timeout=10)[0].decode()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith('{"severity"')]
    summaries = [line for line in lines if str(line["message"]).startswith("rotation succeeded")]
    assert len(summaries) == 2
    assert all("execution_id" in line["logging.googleapis.com/labels"] for line in summaries)
    # The fields the Terraform module's log-based metrics read.
    assert all(line["event"] == "rotation_summary" and line["status"] == "ok" for line in summaries)
    assert [(line["namespaces_failed"], line["revoked_count"]) for line in summaries] == [(0, 0), (0, 0)]
    assert_no_leak([first.text, second.text, status.text, output], secret_values(deployment, crusoe))
