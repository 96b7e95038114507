"""Caller verification in the real process: identity tokens signed by a local key, certificates on loopback."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
import requests

from devkit.function import FunctionProcess, start_function
from devkit.oidc import CertsServer, TokenIssuer
from tests.integration.conftest import assert_no_leak, secret_values

pytestmark = pytest.mark.integration

AUDIENCE = "https://ccr-rotator-abc123-ew.a.run.app"
SCHEDULER = "ccr-rotator-invoker@demo-project.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer()


@pytest.fixture
def certs(issuer) -> Iterator[CertsServer]:
    with CertsServer(issuer) as server:
        yield server


@pytest.fixture
def served(deployment, secret_manager, certs) -> Iterator[FunctionProcess]:
    invokers = {"ALLOWED_INVOKERS": SCHEDULER, "INVOKER_AUDIENCE": AUDIENCE, "INVOKER_CERTS_URL": certs.certs_url}
    env = {**os.environ, **deployment.env, **secret_manager.env(), **invokers}
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    with start_function(env, output=subprocess.PIPE) as function:
        yield function


def test_invokers_refused_callers_get_401_or_403_and_nothing_is_done(
    served, deployment, crusoe, secret_manager, certs, issuer
):
    intruder = issuer.identity_token("intruder@demo-project.iam.gserviceaccount.com", AUDIENCE)
    forged = TokenIssuer(issuer.key_id).identity_token(SCHEDULER, AUDIENCE)
    wrong_audience = issuer.identity_token(SCHEDULER, "https://another-function.a.run.app")
    cases = [(None, 401), (f"Bearer {forged}", 401), (f"Bearer {wrong_audience}", 401), (f"Bearer {intruder}", 403)]
    answers = []
    for authorization, expected in cases:
        headers = {"Authorization": authorization} if authorization else {}
        for method in ("POST", "GET"):
            response = requests.request(method, served.url, headers=headers, timeout=30)
            answers.append(response.text)
            assert response.status_code == expected, response.text
            assert response.json()["status"] == "failed"
    assert secret_manager.requests == []
    assert crusoe.requests == []
    allowed = requests.post(
        served.url, headers={"Authorization": f"Bearer {issuer.identity_token(SCHEDULER, AUDIENCE)}"}, timeout=60
    )
    assert allowed.status_code == 200, allowed.text
    assert [n["result"] for n in allowed.json()["namespaces"]] == ["created"] * 3
    assert len(certs.requests) == 1  # fetched once, then cached
    served.process.terminate()
    output = served.process.communicate(timeout=10)[0].decode()
    assert_no_leak(
        [*answers, allowed.text, output], [intruder, forged, wrong_audience, *secret_values(deployment, crusoe)]
    )
