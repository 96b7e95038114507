"""The rotator's own kubeconfig credential on the real control plane and the Secret Manager server.

The kubeconfig holds a TokenRequest token of 600 s (the API server's shortest), so with
CREDENTIAL_WARNING_HOURS=1 it is inside the margin from the start: status answers 503 naming
``default/credential``; with RENEW_KUBECONFIG a rotation requests a fresh token for the same ServiceAccount
(allowed only by the self-renewal Role of ``infra/rbac/render.py``), adds the kubeconfig holding it as a new
secret version, and the next run reads that version and disables the old one.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from rotator.credential import token_claims
from rotator.errors import KubeError
from rotator.kube import KubeClient
from rotator.kubeconfig import parse_kubeconfig
from rotator.secret import SecretStr

from tests.integration.conftest import ACCESS_KEY_ID, PROJECT, REGISTRY, SECRET_KEY, USERNAME, Deployment

SHORT_TOKEN_SECONDS = 600  # the API server's minimum expirationSeconds
KUBECONFIG_SECRET = "rotator-kubeconfig"


def _deploy(namespace_factory, rotator_account_factory, crusoe, secret_manager, monkeypatch, *, self_renewal):
    from rotator.config import VARIABLES  # noqa: PLC0415 - same clearing as the shared deployment fixture

    namespaces = [namespace_factory(prefix="cred")]
    account = rotator_account_factory(namespaces, token_seconds=SHORT_TOKEN_SECONDS, self_renewal=self_renewal)
    kubeconfig_version = secret_manager.add_version(PROJECT, KUBECONFIG_SECRET, account.kubeconfig.encode())
    credentials = json.dumps({"access_key_id": ACCESS_KEY_ID, "secret_key": SECRET_KEY}).encode()
    credentials_version = secret_manager.add_version(PROJECT, "rotator-crusoe", credentials)
    env = {
        "CRUSOE_CREDENTIALS_SECRET": f"projects/{PROJECT}/secrets/rotator-crusoe/versions/latest",
        "CRUSOE_API_ENDPOINT": crusoe.base_url,
        "REGISTRY_URL": REGISTRY,
        "REGISTRY_USERNAME": USERNAME,
        "TARGET_NAMESPACES": ",".join(namespaces),
        "KUBECONFIG_SECRET": f"projects/{PROJECT}/secrets/{KUBECONFIG_SECRET}/versions/latest",
        "CREDENTIAL_WARNING_HOURS": "1",
        "LOG_LEVEL": "DEBUG",
    }
    for name in VARIABLES:
        if name != "SECRET_MANAGER_ENDPOINT":
            monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Deployment(env, namespaces, account, kubeconfig_version, credentials_version)


@pytest.fixture
def deployment(request, namespace_factory, rotator_account_factory, crusoe, secret_manager, monkeypatch) -> Deployment:
    """A deployment whose kubeconfig token lives 600 s; ``self_renewal`` (indirect param) grants TokenRequest."""
    self_renewal = getattr(request, "param", False)
    return _deploy(
        namespace_factory, rotator_account_factory, crusoe, secret_manager, monkeypatch, self_renewal=self_renewal
    )


def renew(monkeypatch) -> None:
    monkeypatch.setenv("RENEW_KUBECONFIG", "true")
    monkeypatch.setenv("RENEW_TOKEN_HOURS", "2")
    monkeypatch.setenv("RENEW_GRACE_HOURS", "0")


def stored_token(secret_manager, number: int) -> str:
    (version,) = [v for v in secret_manager.versions(PROJECT, KUBECONFIG_SECRET) if v.name.endswith(f"/{number}")]
    access = parse_kubeconfig(SecretStr(version.data.decode()), context=None, base_dir=None)
    assert access.token is not None
    return access.token.reveal()


def assert_not_shown(token: str, invoke) -> None:
    invoke.logs()  # moves captured output into the bodies scanned below
    for text in invoke.bodies:
        assert token not in text
        assert base64.b64encode(token.encode()).decode() not in text


def test_status_is_503_naming_the_credential_when_the_kubeconfig_token_expires_inside_the_margin(deployment, invoke):
    assert invoke().status_code == 200  # the pull secrets are fresh: only the credential is at risk

    response = invoke("GET")

    body = response.get_json()
    assert response.status_code == 503, body
    assert body["at_risk"] == ["default/credential"]
    (cluster,) = body["clusters"]
    assert cluster["credential_kind"] == "token"
    assert cluster["credential_at_risk"] is True
    assert 0 < cluster["credential_seconds_left"] <= SHORT_TOKEN_SECONDS
    assert body["credential_expiry_seconds"] == cluster["credential_seconds_left"]
    (line,) = [x for x in invoke.logs() if x.get("event") == "status_summary"]
    assert line["credential_expiry_seconds"] == cluster["credential_seconds_left"]
    assert line["at_risk"] == ["default/credential"]
    assert "credentials" not in invoke().get_json()  # renewal is off by default


@pytest.mark.parametrize("deployment", [True], indirect=True)
def test_renewal_adds_a_fresh_kubeconfig_version_and_the_next_run_uses_it_and_disables_the_old(
    deployment, invoke, secret_manager, monkeypatch
):
    renew(monkeypatch)
    first = invoke()
    body = first.get_json()
    assert first.status_code == 200, body
    added = f"projects/{PROJECT}/secrets/{KUBECONFIG_SECRET}/versions/2"
    assert body["credentials"] == [{"cluster": "default", "result": "renewed", "version": added}]
    assert [v.state for v in secret_manager.versions(PROJECT, KUBECONFIG_SECRET)] == ["ENABLED", "ENABLED"]
    new_token = stored_token(secret_manager, 2)
    assert new_token != deployment.account.token
    claims, old_claims = token_claims(SecretStr(new_token)), token_claims(SecretStr(deployment.account.token))
    assert (
        claims["sub"]
        == old_claims["sub"]
        == f"system:serviceaccount:{deployment.account.namespace}:{deployment.account.name}"
    )
    lifetime = claims["exp"] - datetime.now(UTC).timestamp()
    assert 7200 - 120 < lifetime <= 7200

    second = invoke().get_json()
    assert second["status"] == "ok", second
    assert second["credentials"] == [
        {
            "cluster": "default",
            "result": "not-due",
            "disabled": [f"projects/{PROJECT}/secrets/{KUBECONFIG_SECRET}/versions/1"],
        }
    ]
    assert [v.state for v in secret_manager.versions(PROJECT, KUBECONFIG_SECRET)] == ["DISABLED", "ENABLED"]

    status = invoke("GET")
    assert status.status_code == 200, status.get_json()
    assert status.get_json()["clusters"][0]["credential_seconds_left"] > 3600  # the renewed token is in use
    assert_not_shown(new_token, invoke)


def test_renewal_without_the_self_renewal_role_fails_clearly_and_changes_nothing(
    deployment, invoke, secret_manager, monkeypatch
):
    renew(monkeypatch)
    response = invoke()
    body = response.get_json()
    assert response.status_code == 200, body  # the rotation itself went well
    (result,) = body["credentials"]
    assert result["result"] == "failed"
    assert "serviceaccounts/token" in result["detail"]
    assert "HTTP 403" in result["detail"]
    assert len(secret_manager.versions(PROJECT, KUBECONFIG_SECRET)) == 1
    assert invoke("GET").status_code == 503


def test_renewal_that_secret_manager_refuses_is_named_and_adds_nothing(deployment, invoke, secret_manager, monkeypatch):
    renew(monkeypatch)
    secret_manager.deny_writes(PROJECT, KUBECONFIG_SECRET)
    body = invoke().get_json()
    (result,) = body["credentials"]
    assert result["result"] == "failed"
    assert "HTTP 403" in result["detail"]


@pytest.mark.parametrize("deployment", [True], indirect=True)
def test_the_self_renewal_role_mints_tokens_for_the_account_itself_only(deployment):
    access = parse_kubeconfig(SecretStr(deployment.account.kubeconfig), context=None, base_dir=None)
    kube = KubeClient(access, pool_size=1)
    try:
        namespace, name = deployment.account.namespace, deployment.account.name
        token = kube.request_token(namespace, name, audiences=[], seconds=SHORT_TOKEN_SECONDS)
        assert token_claims(token)["sub"] == f"system:serviceaccount:{namespace}:{name}"
        with pytest.raises(KubeError) as caught:
            kube.request_token(namespace, "default", audiences=[], seconds=SHORT_TOKEN_SECONDS)
        assert caught.value.status == 403
    finally:
        kube.close()
