"""The kubeconfig's own credential: its expiry (JWT ``exp``, certificate ``notAfter``), the margin, the status
fields and log line, the settings, and self-renewal against in-memory fakes (never leaking a token)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from rotator import logs
from rotator.clients import Connection
from rotator.config import DEFAULT_CREDENTIAL_WARNING_HOURS, load_settings
from rotator.credential import Credential, ServiceAccountRef, credential_of, token_claims
from rotator.errors import ConfigError, KubeError
from rotator.fleet import Target
from rotator.kubeconfig import ClusterAccess, parse_kubeconfig, with_token
from rotator.renewal import disable_plan, renew_credentials
from rotator.secret import SecretStr
from rotator.secretstore import KubeconfigText, VersionInfo
from rotator.status import status

from tests.unit.fakes import FakeCluster, Journal, pull_secret

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
SECRET = "projects/p/secrets/kubeconfig"
BASE = {
    "CRUSOE_ACCESS_KEY": "key-id",
    "CRUSOE_SECRET_KEY": "c2VjcmV0LWtleS0xMjM0NTY3OA",
    "REGISTRY_URL": "registry.us-east1-a.ccr.crusoecloudcompute.com",
    "REGISTRY_USERNAME": "ops@example.com",
    "TARGET_NAMESPACES": "web",
}
RENEWING = {**BASE, "KUBECONFIG_SECRET": f"{SECRET}/versions/latest", "RENEW_KUBECONFIG": "true"}


def b64url(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def jwt(**claims: object) -> str:
    return f"{b64url({'alg': 'RS256'})}.{b64url(claims)}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk"


def service_account_token(expires: datetime | None, *, namespace: str = "crusoe-system", name: str = "rotator") -> str:
    claims: dict[str, object] = {
        "aud": ["https://kubernetes.default.svc"],
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": "u-1"}},
    }
    if expires is not None:
        claims["exp"] = int(expires.timestamp())
    return jwt(**claims)


def access(token: str | None = None, cert: str | None = None) -> ClusterAccess:
    return ClusterAccess(
        server="https://127.0.0.1:6443",
        ca_pem=None,
        insecure_skip_tls_verify=False,
        tls_server_name=None,
        client_cert_pem=SecretStr(cert) if cert else None,
        client_key_pem=SecretStr("key") if cert else None,
        token=SecretStr(token) if token else None,
    )


def certificate(not_after: datetime) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admin")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(not_after - timedelta(days=365))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# -- reading the expiry ----------------------------------------------------------------------------------------


def test_credential_of_a_service_account_token_reads_exp_account_and_audiences():
    expires = NOW + timedelta(days=90)
    credential = credential_of(access(service_account_token(expires)))
    assert credential == Credential(
        "token", expires, ServiceAccountRef("crusoe-system", "rotator"), ("https://kubernetes.default.svc",)
    )


def test_credential_of_a_token_names_its_account_by_sub_when_the_kubernetes_claim_is_missing():
    token = jwt(exp=int(NOW.timestamp()), sub="system:serviceaccount:ops:renewer", aud="api")
    credential = credential_of(access(token))
    assert (credential.account, credential.audiences) == (ServiceAccountRef("ops", "renewer"), ("api",))


@pytest.mark.parametrize(
    "token",
    [
        jwt(sub="system:serviceaccount:ops:legacy", iss="kubernetes/serviceaccount"),  # a legacy Secret token
        "opaque-static-token-0123456789",
        "a.!!!not-base64!!!.c",
        f"a.{base64.urlsafe_b64encode(b'[1, 2]').decode()}.c",
        jwt(exp="tomorrow"),
        jwt(exp=True),
        jwt(exp=10**30),
    ],
)
def test_credential_of_a_token_without_a_usable_exp_has_no_expiry_and_is_never_at_risk(token):
    credential = credential_of(access(token))
    assert credential.expires_at is None
    assert not credential.at_risk(NOW, timedelta(days=3650))
    assert credential.to_json(NOW)["credential_seconds_left"] is None


def test_credential_of_a_client_certificate_is_its_not_after_even_beside_a_token():
    not_after = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    credential = credential_of(access(service_account_token(NOW), cert=certificate(not_after)))
    assert (credential.kind, credential.expires_at, credential.account) == ("certificate", not_after, None)


def test_credential_of_an_unreadable_certificate_has_no_expiry():
    assert (
        credential_of(access(cert="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")).expires_at is None
    )


def test_token_claims_refuses_an_oversized_payload_without_decoding_it():
    assert token_claims(SecretStr(f"a.{'A' * 70_000}.c")) == {}


# -- margin and status fields ----------------------------------------------------------------------------------


def test_credential_at_risk_inside_the_margin_and_once_expired():
    margin = timedelta(hours=168)
    assert not Credential("token", NOW + margin + timedelta(seconds=1)).at_risk(NOW, margin)
    assert Credential("token", NOW + margin).at_risk(NOW, margin)
    assert Credential("token", NOW - timedelta(hours=1)).at_risk(NOW, margin)


def test_credential_to_json_gives_kind_expiry_and_seconds_left_never_the_token():
    token = service_account_token(NOW + timedelta(hours=2))
    body = credential_of(access(token)).to_json(NOW)
    assert body == {
        "credential_kind": "token",
        "credential_expires_at": "2026-11-28T08:00:00Z",
        "credential_seconds_left": 7200,
    }
    assert token not in json.dumps(body)


def fake_target(settings, cluster: FakeCluster, credential: Credential | None):
    (config,) = settings.clusters
    return Target(config, lambda: cluster, lambda: credential)


def test_status_is_503_naming_the_credential_inside_its_margin_and_logs_the_earliest(capsys):
    logs.configure("INFO")
    settings = load_settings({**BASE, "KUBECONFIG": "/nowhere", "CREDENTIAL_WARNING_HOURS": "24"})
    cluster = FakeCluster(Journal())
    cluster.put("web", pull_secret({BASE["REGISTRY_URL"]: {"auth": "eDp5"}}, expires_at="2026-11-28T16:00:00Z"))
    token = service_account_token(NOW + timedelta(hours=23))
    target = fake_target(settings, cluster, credential_of(access(token)))

    answer = status(settings, [target], clock=lambda: NOW)

    body = answer.to_json()
    assert answer.http_status() == 503
    assert body["at_risk"] == ["default/credential"]
    assert body["clusters"] == [
        {
            "name": "default",
            "server": "fake-apiserver.example:6443",
            "credential_kind": "token",
            "credential_expires_at": "2026-11-29T05:00:00Z",
            "credential_seconds_left": 23 * 3600,
            "credential_at_risk": True,
        }
    ]
    assert (body["credential_expiry_seconds"], body["credential_warning_seconds"]) == (23 * 3600, 24 * 3600)
    out = capsys.readouterr().out
    (line,) = [json.loads(x) for x in out.splitlines() if '"status_summary"' in x]
    assert (line["credential_expiry_seconds"], line["at_risk"]) == (23 * 3600, ["default/credential"])
    assert token not in out
    assert token not in json.dumps(body)


def test_status_is_200_with_a_credential_outside_its_margin_or_without_an_expiry():
    settings = load_settings({**BASE, "KUBECONFIG": "/nowhere"})
    cluster = FakeCluster(Journal())
    cluster.put("web", pull_secret({BASE["REGISTRY_URL"]: {"auth": "eDp5"}}, expires_at="2026-11-28T16:00:00Z"))
    for credential, seconds in ((Credential("token", NOW + timedelta(days=8)), 8 * 86400), (None, None)):
        answer = status(settings, [fake_target(settings, cluster, credential)], clock=lambda: NOW)
        assert answer.http_status() == 200, answer.to_json()
        assert answer.credential_expiry_seconds == seconds


# -- settings --------------------------------------------------------------------------------------------------


def test_credential_warning_defaults_to_a_week_and_renewal_to_off():
    settings = load_settings({**BASE, "KUBECONFIG": "/nowhere"})
    assert settings.credential_warning == timedelta(hours=DEFAULT_CREDENTIAL_WARNING_HOURS) == timedelta(days=7)
    assert settings.renewal is None


def test_renewal_settings_are_read_with_their_defaults():
    renewal = load_settings(RENEWING).renewal
    assert renewal is not None
    assert (renewal.token_lifetime, renewal.grace) == (timedelta(days=90), timedelta(hours=24))


@pytest.mark.parametrize(
    ("env", "name", "problem"),
    [
        ({**BASE, "KUBECONFIG": "/k", "RENEW_KUBECONFIG": "yes"}, "RENEW_KUBECONFIG", "must be one of false, true"),
        ({**BASE, "KUBECONFIG": "/k", "RENEW_KUBECONFIG": "true"}, "RENEW_KUBECONFIG", "not so: default"),
        (
            {**RENEWING, "KUBECONFIG_SECRET": f"{SECRET}/versions/3"},
            "RENEW_KUBECONFIG",
            "read as versions/latest",
        ),
        ({**RENEWING, "RENEW_TOKEN_HOURS": "168"}, "RENEW_TOKEN_HOURS", "must be more than CREDENTIAL_WARNING_HOURS"),
        ({**BASE, "KUBECONFIG": "/k", "RENEW_GRACE_HOURS": "1"}, "RENEW_GRACE_HOURS", "only with RENEW_KUBECONFIG"),
        ({**BASE, "KUBECONFIG": "/k", "CREDENTIAL_WARNING_HOURS": "0"}, "CREDENTIAL_WARNING_HOURS", "from 1 to 2159"),
        ({**RENEWING, "RENEW_GRACE_HOURS": "721"}, "RENEW_GRACE_HOURS", "from 0 to 720"),
    ],
)
def test_renewal_settings_problems_are_named(env, name, problem):
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert problem in caught.value.problems[name]


# -- renewal ---------------------------------------------------------------------------------------------------


def kubeconfig(token: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
            "users": [
                {"name": "other", "user": {"token": "untouched-token-value"}},
                {"name": "rotator", "user": {"token": token}},
            ],
            "contexts": [
                {"name": "ctx", "context": {"cluster": "c", "user": "rotator"}},
                {"name": "x", "context": {"cluster": "c", "user": "other"}},
            ],
            "current-context": "ctx",
            "preferences": {"since": "2026-02-30"},
        }
    )


def test_with_token_replaces_only_the_contexts_users_token_and_keeps_the_rest():
    text = with_token(SecretStr(kubeconfig("old-token-value")), context=None, token=SecretStr("new-token-value"))
    document = yaml.safe_load(text.reveal())
    assert [u["user"]["token"] for u in document["users"]] == ["untouched-token-value", "new-token-value"]
    assert document["preferences"] == {"since": "2026-02-30"}
    assert parse_kubeconfig(text, context=None, base_dir=None).token == SecretStr("new-token-value")


def test_disable_plan_waits_for_the_grace_then_disables_older_enabled_versions_only():
    versions = [
        VersionInfo(f"{SECRET}/versions/4", "ENABLED", NOW - timedelta(hours=1)),
        VersionInfo(f"{SECRET}/versions/3", "ENABLED", NOW - timedelta(hours=30)),
        VersionInfo(f"{SECRET}/versions/2", "DISABLED", NOW - timedelta(days=9)),
        VersionInfo(f"{SECRET}/versions/1", "ENABLED", NOW - timedelta(days=90)),
    ]
    grace = timedelta(hours=24)
    assert disable_plan(versions, f"{SECRET}/versions/4", NOW, grace) == []  # in use for an hour only
    assert disable_plan(versions, f"{SECRET}/versions/3", NOW, grace) == [f"{SECRET}/versions/1"]
    assert disable_plan(versions, f"{SECRET}/versions/9", NOW, grace) == []  # unknown: touch nothing


@dataclass
class FakeStore:
    """Secret Manager's version calls in memory."""

    versions: list[VersionInfo] = field(default_factory=list)
    payloads: dict[str, bytes] = field(default_factory=dict)
    disabled: list[str] = field(default_factory=list)

    def add_version(self, secret: str, data: bytes) -> str:
        name = f"{secret}/versions/{len(self.versions) + 1}"
        self.versions.insert(0, VersionInfo(name, "ENABLED", NOW))
        self.payloads[name] = data
        return name

    def list_versions(self, secret: str) -> list[VersionInfo]:
        return [v for v in self.versions if v.name.startswith(secret + "/")]

    def disable_version(self, version_name: str) -> None:
        self.disabled.append(version_name)


@dataclass
class FakeKube:
    issued: list[tuple[str, str, tuple[str, ...], int]] = field(default_factory=list)
    failure: KubeError | None = None

    def request_token(self, namespace: str, name: str, *, audiences, seconds: int) -> SecretStr:
        if self.failure is not None:
            raise self.failure
        self.issued.append((namespace, name, tuple(audiences), seconds))
        return SecretStr(service_account_token(NOW + timedelta(seconds=seconds), namespace=namespace, name=name))


def connection(settings, token: str, kube: FakeKube, *, version: str = f"{SECRET}/versions/1") -> Connection:
    (config,) = settings.clusters
    text = SecretStr(kubeconfig(token))
    credential = credential_of(parse_kubeconfig(text, context=None, base_dir=None))
    return Connection(config, kube, KubeconfigText(text, version=version), credential)  # type: ignore[arg-type]


def test_renewal_inside_the_margin_adds_a_kubeconfig_with_a_fresh_token_for_the_same_account(capsys):
    logs.configure("INFO")
    settings = load_settings(RENEWING)
    store, kube = FakeStore(), FakeKube()
    store.add_version(SECRET, b"v1")
    old = service_account_token(NOW + timedelta(days=2))

    (result,) = renew_credentials(settings, [connection(settings, old, kube)], store, proven=(), clock=lambda: NOW)

    assert (result.result, result.version) == ("renewed", f"{SECRET}/versions/2")
    assert kube.issued == [("crusoe-system", "rotator", ("https://kubernetes.default.svc",), 90 * 86400)]
    renewed = parse_kubeconfig(SecretStr(store.payloads[result.version].decode()), context=None, base_dir=None)
    assert credential_of(renewed).expires_at == NOW + timedelta(days=90)
    out = capsys.readouterr().out
    (line,) = [json.loads(x) for x in out.splitlines() if '"credential_renewal"' in x]
    assert (line["result"], line["version"]) == ("renewed", f"{SECRET}/versions/2")
    assert old not in out
    assert renewed.token is not None
    assert renewed.token.reveal() not in out
    assert renewed.token.reveal() not in json.dumps(result.to_json())


def test_renewal_outside_the_margin_only_disables_older_versions_of_a_proven_cluster_after_the_grace():
    settings = load_settings({**RENEWING, "RENEW_GRACE_HOURS": "0"})
    store, kube = FakeStore(), FakeKube()
    for payload in (b"v1", b"v2"):
        store.add_version(SECRET, payload)
    fresh = service_account_token(NOW + timedelta(days=60))
    one = connection(settings, fresh, kube, version=f"{SECRET}/versions/2")

    (unproven,) = renew_credentials(settings, [one], store, proven=(), clock=lambda: NOW)
    (proven,) = renew_credentials(settings, [one], store, proven={"default"}, clock=lambda: NOW)

    assert (unproven.result, unproven.disabled) == ("not-due", ())
    assert (proven.result, proven.disabled) == ("not-due", (f"{SECRET}/versions/1",))
    assert store.disabled == [f"{SECRET}/versions/1"]
    assert kube.issued == []


def test_renewal_failures_are_the_clusters_result_and_never_raise():
    settings = load_settings(RENEWING)
    store = FakeStore()
    forbidden = KubeError("cannot write serviceaccounts/token: HTTP 403: forbidden", status=403, retryable=False)
    expiring = service_account_token(NOW + timedelta(hours=1))
    (result,) = renew_credentials(
        settings, [connection(settings, expiring, FakeKube(failure=forbidden))], store, proven=(), clock=lambda: NOW
    )
    assert (result.result, result.detail) == ("failed", forbidden.message)
    assert store.versions == []


def test_renewal_refuses_a_token_of_no_service_account_inside_the_margin():
    settings = load_settings(RENEWING)
    token = jwt(exp=int((NOW + timedelta(hours=1)).timestamp()), sub="oidc-user")
    (result,) = renew_credentials(settings, [connection(settings, token, FakeKube())], FakeStore(), proven=())
    assert result.result == "not-renewable"
    assert "names no service account" in str(result.detail)


def test_renewal_is_off_without_the_setting():
    settings = load_settings({**BASE, "KUBECONFIG_SECRET": f"{SECRET}/versions/latest"})
    token = service_account_token(NOW)
    assert renew_credentials(settings, [connection(settings, token, FakeKube())], FakeStore(), proven=()) == []
