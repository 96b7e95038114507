"""Fixtures that deploy the function against the local servers: the real control plane, the Crusoe API
emulator and the Secret Manager server (which also plays the GCE metadata server for google-auth).

``deployment`` gives each test fresh namespaces, a ServiceAccount bound only by the project's RBAC, both
secrets stored in Secret Manager, and the environment a deployed function would have. ``invoke`` calls
the function through ``functions_framework.create_app`` and the Flask test client; every response and
every captured output line is scanned for credentials when the test ends.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
from collections.abc import Callable, Iterator

import pytest
from functions_framework import create_app
from rotator.config import VARIABLES

from devkit.crusoe_emulator import CrusoeEmulator
from devkit.function import MAIN
from devkit.kube import ServiceAccountAccess
from devkit.secret_manager import SecretManagerServer

ACCESS_KEY_ID = "Hm11C1coQZm2+Aihn9ofYg"  # the spec's own example: needs escaping in a query
SECRET_KEY = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
REGISTRY = "registry.us-east1-a.ccr.crusoecloudcompute.com"
USERNAME = "ops@example.com"
PROJECT = "demo-project"


def pytest_configure(config: pytest.Config) -> None:
    """Load the control-plane fixtures (``devkit.pytest_plugin``) for this tier only."""
    config.pluginmanager.import_plugin("devkit.pytest_plugin")


@pytest.fixture(scope="session")
def crusoe_server() -> Iterator[CrusoeEmulator]:
    with CrusoeEmulator() as emulator:
        emulator.add_api_key(ACCESS_KEY_ID, SECRET_KEY)
        yield emulator


@pytest.fixture
def crusoe(crusoe_server: CrusoeEmulator) -> Iterator[CrusoeEmulator]:
    crusoe_server.reset()
    yield crusoe_server
    assert crusoe_server.contract_violations == []


@pytest.fixture(scope="session")
def secret_manager_server() -> Iterator[SecretManagerServer]:
    with SecretManagerServer(project_id=PROJECT) as server:
        yield server


@pytest.fixture
def secret_manager(secret_manager_server: SecretManagerServer, monkeypatch) -> SecretManagerServer:
    secret_manager_server.reset()
    secret_manager_server.apply_env(monkeypatch)
    return secret_manager_server


@dataclasses.dataclass
class Deployment:
    """What a deployed function would be configured with, and the identities behind it."""

    env: dict[str, str]
    namespaces: list[str]
    account: ServiceAccountAccess
    kubeconfig_version: str
    credentials_version: str


@pytest.fixture
def deployment(
    namespace_factory,
    rotator_account_factory,
    crusoe: CrusoeEmulator,
    secret_manager: SecretManagerServer,
    monkeypatch,
) -> Deployment:
    namespaces = [namespace_factory(prefix="team") for _ in range(3)]
    account = rotator_account_factory(namespaces)
    kubeconfig_version = secret_manager.add_version(PROJECT, "rotator-kubeconfig", account.kubeconfig.encode())
    credentials = json.dumps({"access_key_id": ACCESS_KEY_ID, "secret_key": SECRET_KEY}).encode()
    credentials_version = secret_manager.add_version(PROJECT, "rotator-crusoe", credentials)
    env = {
        "CRUSOE_CREDENTIALS_SECRET": f"projects/{PROJECT}/secrets/rotator-crusoe/versions/latest",
        "CRUSOE_API_ENDPOINT": crusoe.base_url,
        "REGISTRY_URL": REGISTRY,
        "REGISTRY_USERNAME": USERNAME,
        "TARGET_NAMESPACES": ",".join(namespaces),
        "KUBECONFIG_SECRET": f"projects/{PROJECT}/secrets/rotator-kubeconfig/versions/latest",
        "KEEP_PREVIOUS_TOKENS": "1",
        "LOG_LEVEL": "DEBUG",
    }
    for name in VARIABLES:
        if name == "SECRET_MANAGER_ENDPOINT":
            continue  # set by the secret_manager fixture
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Deployment(env, namespaces, account, kubeconfig_version, credentials_version)


class Invoker:
    """Calls the function like Cloud Scheduler would, and remembers every answer for the leak scan."""

    def __init__(self, capfd) -> None:
        self.bodies: list[str] = []
        self._capfd = capfd

    def logs(self) -> list[dict[str, object]]:
        """The JSON log lines printed so far (kept for the leak scan as well)."""
        out, err = self._capfd.readouterr()
        self.bodies += [out, err]
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def __call__(self, method: str = "POST", body: object = None, *, raw: bytes | None = None):
        client = create_app(target="rotate", source=str(MAIN)).test_client()
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        response = client.open("/", method=method, data=data, headers={"Function-Execution-Id": "exec-test"})
        self.bodies.append(response.get_data(as_text=True))
        return response


def secret_values(deployment: Deployment | None, crusoe: CrusoeEmulator) -> list[str]:
    """Every credential that must never be shown: tokens (live and revoked), keys, kubeconfigs."""
    values = [SECRET_KEY]
    values += [key.token for key in crusoe.tokens() + crusoe.deleted() if key.token]
    if deployment is not None:
        values += [deployment.account.token, deployment.account.kubeconfig]
    return values


def assert_no_leak(texts: list[str], values: list[str]) -> None:
    for text in texts:
        for value in values:
            assert value not in text, "a credential appeared in a log line or a response"
        for value in values:
            # Also the base64 form, as it would appear inside a dockerconfig or an Authorization header.
            assert base64.b64encode(value.encode()).decode() not in text


@pytest.fixture
def invoke(request, capfd, crusoe: CrusoeEmulator) -> Iterator[Callable[..., object]]:
    invoker = Invoker(capfd)
    yield invoker
    out, err = capfd.readouterr()
    deployment = request.getfixturevalue("deployment") if "deployment" in request.fixturenames else None
    assert_no_leak([*invoker.bodies, out, err], secret_values(deployment, crusoe))
