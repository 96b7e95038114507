"""The function as Cloud Run serves it: a real ``functions-framework`` process called over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import MAIN, assert_no_leak, secret_values

pytestmark = pytest.mark.integration
FRAMEWORK = Path(sys.executable).with_name("functions-framework")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(deployment, secret_manager) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    env = {**os.environ, **deployment.env, **secret_manager.env(), "LOG_EXECUTION_ID": "true"}
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    process = subprocess.Popen(
        [str(FRAMEWORK), "--source", str(MAIN), "--target", "rotate", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/", process
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_functions_framework_process_rotates_and_logs_json(served, deployment, crusoe):
    url, process = served
    first = requests.post(url, timeout=60)
    second = requests.post(url, json={}, timeout=60)
    status = requests.get(url, timeout=60)
    assert first.status_code == 200, first.text
    assert [n["result"] for n in second.json()["namespaces"]] == ["updated"] * 3
    assert status.status_code == 200
    assert requests.patch(url, timeout=10).status_code == 405
    process.terminate()
    output, _ = process.communicate(timeout=10)
    lines = [json.loads(line) for line in output.splitlines() if line.startswith('{"severity"')]
    summaries = [line for line in lines if str(line["message"]).startswith("rotation succeeded")]
    assert len(summaries) == 2
    assert all("execution_id" in line["logging.googleapis.com/labels"] for line in summaries)
    assert_no_leak([first.text, second.text, status.text, output], secret_values(deployment, crusoe))
