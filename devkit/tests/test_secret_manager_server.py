"""The fake Secret Manager + GCE metadata server, driven by google-auth's real ADC flow.

Every test runs with a socket guard that records any connection to a non-loopback address
(google-auth's default metadata IP is 169.254.169.254): the list must stay empty.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import google.auth
import google_crc32c
import pytest
import requests
from google.auth import compute_engine
from google.auth.transport.requests import AuthorizedSession

from devkit.secret_manager import SecretManagerServer

REPO = Path(__file__).resolve().parents[2]
KUBECONFIG = b"apiVersion: v1\nkind: Config\nclusters: []\n"


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Refuse and record every connection to anything but loopback."""
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if not ipaddress.ip_address(host).is_loopback:
                attempts.append(address)
                raise OSError(f"test guard: no network beyond loopback ({host})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield attempts
    assert attempts == []


@pytest.fixture
def sm(monkeypatch):
    with SecretManagerServer() as server:
        server.apply_env(monkeypatch)
        yield server


@pytest.fixture
def session(sm):
    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    with AuthorizedSession(credentials) as authorized:
        yield authorized


def _access(session, sm, name):
    return session.get(f"{sm.endpoint}/v1/{name}:access", timeout=5)


def _assert_google_error(response, status, code_name):
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "status"}
    assert body["error"]["code"] == status
    assert body["error"]["status"] == code_name


def test_adc_finds_the_fake_metadata_server_and_reads_a_secret(sm, session):
    name = sm.add_version("proj", "kubeconfig", KUBECONFIG)
    credentials, project = google.auth.default()
    assert isinstance(credentials, compute_engine.Credentials)
    assert project == sm.project_id
    response = _access(session, sm, name)
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "projects/proj/secrets/kubeconfig/versions/1"
    data = base64.b64decode(body["payload"]["data"])
    assert data == KUBECONFIG
    assert body["payload"]["dataCrc32c"] == str(google_crc32c.value(data))
    assert sm.tokens_issued == 1
    paths = [r.path for r in sm.requests]
    assert "/computeMetadata/v1/instance/service-accounts/default/token" in paths
    assert not any("ya29" in repr(r) for r in sm.requests)


def test_env_names_what_a_client_process_needs(sm):
    env = sm.env()
    assert env["GCE_METADATA_HOST"] == sm.metadata_host == f"127.0.0.1:{sm.port}"
    assert env["GCE_METADATA_IP"] == sm.metadata_host
    assert env["NO_GCE_CHECK"] == "false"
    assert env["SECRET_MANAGER_ENDPOINT"] == sm.endpoint == f"http://127.0.0.1:{sm.port}"
    assert Path(env["CLOUDSDK_CONFIG"]).is_dir()
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in os.environ


def test_latest_resolves_to_the_newest_enabled_version(sm, session):
    first = sm.add_version("p", "s", b"one")
    second = sm.add_version("p", "s", b"two")
    assert second == "projects/p/secrets/s/versions/2"
    latest = _access(session, sm, "projects/p/secrets/s/versions/latest").json()
    assert latest["name"] == second
    assert base64.b64decode(latest["payload"]["data"]) == b"two"
    assert base64.b64decode(_access(session, sm, first).json()["payload"]["data"]) == b"one"
    sm.set_state(second, "DISABLED")
    assert _access(session, sm, "projects/p/secrets/s/versions/latest").json()["name"] == first
    disabled = _access(session, sm, second)
    assert disabled.status_code == 400
    _assert_google_error(disabled, 400, "FAILED_PRECONDITION")


def test_missing_secret_and_version_answer_404(sm, session):
    sm.add_version("p", "s", b"x")
    for name in ("projects/p/secrets/nope/versions/latest", "projects/p/secrets/s/versions/7"):
        response = _access(session, sm, name)
        assert response.status_code == 404
        _assert_google_error(response, 404, "NOT_FOUND")


def test_denied_secret_answers_403(sm, session):
    name = sm.add_version("p", "s", b"x")
    sm.deny("p", "s")
    response = _access(session, sm, name)
    assert response.status_code == 403
    _assert_google_error(response, 403, "PERMISSION_DENIED")
    assert "secretmanager.versions.access" in response.json()["error"]["message"]
    sm.allow("p", "s")
    assert _access(session, sm, name).status_code == 200


def test_requests_without_a_token_it_issued_answer_401(sm):
    name = sm.add_version("p", "s", b"x")
    for headers in ({}, {"Authorization": "Bearer ya29.made-up"}):
        response = requests.get(f"{sm.endpoint}/v1/{name}:access", headers=headers, timeout=5)
        assert response.status_code == 401
        _assert_google_error(response, 401, "UNAUTHENTICATED")


def test_revoked_token_is_refreshed_by_the_authorized_session(sm, session):
    name = sm.add_version("p", "s", b"x")
    assert _access(session, sm, name).status_code == 200
    sm.revoke_tokens()
    assert _access(session, sm, name).status_code == 200
    assert sm.tokens_issued == 2
    assert [r.status for r in sm.requests if r.path.endswith(":access")] == [200, 401, 200]


def test_injected_503_then_success(sm, session):
    name = sm.add_version("p", "s", b"x")
    sm.inject(503, times=2)
    for _ in range(2):
        response = _access(session, sm, name)
        assert response.status_code == 503
        _assert_google_error(response, 503, "UNAVAILABLE")
    assert _access(session, sm, name).status_code == 200


def test_wrong_crc32c_once(sm, session):
    name = sm.add_version("p", "s", b"payload")
    sm.corrupt_crc32c()
    bad = _access(session, sm, name).json()["payload"]
    assert bad["dataCrc32c"] != str(google_crc32c.value(b"payload"))
    assert bad["data"] == base64.b64encode(b"payload").decode()
    good = _access(session, sm, name).json()["payload"]
    assert good["dataCrc32c"] == str(google_crc32c.value(b"payload"))


def test_metadata_requires_the_flavor_header_and_answers_with_it(sm):
    assert requests.get(f"{sm.endpoint}/computeMetadata/v1/project/project-id", timeout=5).status_code == 403
    ping = requests.get(f"{sm.endpoint}/", headers={"Metadata-Flavor": "Google"}, timeout=5)
    assert ping.status_code == 200
    assert ping.headers["Metadata-Flavor"] == "Google"


def test_token_endpoint_faults_reach_google_auth(sm):
    sm.inject(403, times=10, target="token")
    credentials, _ = google.auth.default()
    with pytest.raises(google.auth.exceptions.RefreshError):
        credentials.refresh(google.auth.transport.requests.Request())


def test_server_binds_loopback_only():
    with pytest.raises(ValueError, match="loopback"):
        SecretManagerServer(host="10.0.0.1")


def test_cli_serves_a_secret_from_a_file_to_a_client_process(tmp_path):
    secret_file = tmp_path / "kubeconfig"
    secret_file.write_bytes(KUBECONFIG)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devkit.secret_manager",
            "--port",
            "0",
            "--secret",
            f"projects/p/secrets/kc=@{secret_file}",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = json.loads(server.stdout.readline())
        assert ready["versions"] == {"projects/p/secrets/kc": "projects/p/secrets/kc/versions/1"}
        # A separate process picks the variables up at import time, as the function will.
        client_env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"} | ready["env"]
        client = (
            "import base64, os, google.auth\n"
            "from google.auth.transport.requests import AuthorizedSession\n"
            "creds, _ = google.auth.default()\n"
            "r = AuthorizedSession(creds).get(os.environ['SECRET_MANAGER_ENDPOINT']"
            " + '/v1/projects/p/secrets/kc/versions/latest:access', timeout=5)\n"
            "print(base64.b64decode(r.json()['payload']['data']).decode(), end='')\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", client], env=client_env, capture_output=True, text=True, timeout=60, check=True
        )
        assert result.stdout == KUBECONFIG.decode()
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
        server.stdout.close()


def test_a_fault_can_target_one_secret(sm, session):
    kubeconfig = sm.add_version("p", "kubeconfig", b"k")
    credentials = sm.add_version("p", "credentials", b"c")
    sm.inject(404, times=5, secret="credentials")
    assert _access(session, sm, kubeconfig).status_code == 200
    assert _access(session, sm, credentials).status_code == 404


def test_a_delayed_answer_outlasts_the_client_timeout(sm, session):
    name = sm.add_version("p", "s", b"x")
    sm.inject(None, delay=2.0)
    with pytest.raises(requests.Timeout):
        session.get(f"{sm.endpoint}/v1/{name}:access", timeout=(5, 0.2))
    assert _access(session, sm, name).status_code == 200
