"""Secret Manager and the metadata server failing (issue 9): each of the two secrets, each failure.

Both secrets are read before anything else happens, so every scenario must end the same way: an error that
names the secret, no token minted, no namespace written, and a next run (faults gone) that completes.
"""

from __future__ import annotations

import itertools

import pytest

from devkit.pullsecrets import read_held, summary
from tests.integration.conftest import PROJECT, REGISTRY

pytestmark = pytest.mark.integration
SECRETS = ["rotator-kubeconfig", "rotator-crusoe"]


def inject(secret_manager, fault, secret):
    if fault == "403":
        secret_manager.deny(PROJECT, secret)
    elif fault == "timeout":
        secret_manager.inject(None, times=20, secret=secret, delay=2.0)
    else:
        secret_manager.inject(int(fault), times=20, secret=secret)


def assert_nothing_happened(deployment, crusoe, kube_admin):
    assert crusoe.mint_aliases == []
    assert all(read_held(kube_admin, n, REGISTRY) is None for n in deployment.namespaces)


@pytest.fixture
def short_read_timeout(monkeypatch):
    """A Secret Manager read times out after 0.5 s instead of 20 s, so a held answer is a timeout quickly."""
    monkeypatch.setattr("rotator.secretstore.TIMEOUT", (5.0, 0.5))


@pytest.mark.usefixtures("short_read_timeout")
@pytest.mark.parametrize("case", list(itertools.product(["404", "403", "503", "timeout"], SECRETS)), ids="-".join)
def test_secret_manager_failures_mint_nothing_and_name_the_secret(
    deployment, invoke, crusoe, kube_admin, secret_manager, scenario, case
):
    fault, secret = case
    record = scenario(
        f"Secret Manager answers {fault} for {secret}: 5xx naming the secret, nothing minted or written; "
        "the next run completes"
    )
    inject(secret_manager, fault, secret)
    response = invoke()
    body = response.get_json()
    assert response.status_code >= 500, body
    assert secret in body["error"]
    assert_nothing_happened(deployment, crusoe, kube_admin)
    secret_manager.clear_faults()
    after = invoke()
    assert after.status_code == 200, after.get_json()
    record.observed(f"HTTP {response.status_code} naming {secret}, no mint; next: {summary(200, after.get_json())}")


@pytest.mark.parametrize("secret", SECRETS)
def test_secret_manager_one_temporary_failure_is_retried(deployment, invoke, secret_manager, scenario, secret):
    record = scenario(f"Secret Manager answers 503 once for {secret}: retried, the run succeeds")
    secret_manager.inject(503, times=1, secret=secret)
    response = invoke()
    assert response.status_code == 200, response.get_json()
    record.observed(summary(200, response.get_json()))


@pytest.mark.parametrize("status", [403, 503])
def test_metadata_server_failing_mints_nothing_and_says_so(
    deployment, invoke, crusoe, kube_admin, secret_manager, scenario, status
):
    record = scenario(
        f"the metadata server answers {status} for the access token: a 5xx JSON error (no stack trace), "
        "nothing minted or written; the next run completes"
    )
    secret_manager.inject(status, times=100, target="token")
    response = invoke()
    assert response.status_code >= 500
    body = response.get_json()
    assert body is not None
    assert body["status"] == "failed"
    assert "Traceback" not in response.get_data(as_text=True)
    assert_nothing_happened(deployment, crusoe, kube_admin)
    secret_manager.clear_faults()
    after = invoke()
    assert after.status_code == 200, after.get_json()
    record.observed(f"HTTP {response.status_code}: {body['error'][:80]}; next: {summary(200, after.get_json())}")
