import base64
import copy

import pytest
import yaml
from rotator.clients import connect
from rotator.config import load_settings
from rotator.errors import KubeconfigError
from rotator.kubeconfig import parse_kubeconfig
from rotator.secret import SecretStr

from devkit.pki import write_pki

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def b64(text):
    return base64.b64encode(text.encode()).decode()


def kubeconfig(user, *, cluster=None, current="main"):
    return SecretStr(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": current,
                "clusters": [
                    {
                        "name": "c",
                        "cluster": cluster
                        or {"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(CA)},
                    }
                ],
                "users": [{"name": "u", "user": user}],
                "contexts": [
                    {"name": "main", "context": {"cluster": "c", "user": "u"}},
                    {"name": "other", "context": {"cluster": "c", "user": "missing"}},
                ],
            }
        )
    )


def test_token_kubeconfig():
    access = parse_kubeconfig(kubeconfig({"token": "sa-token-value"}), context=None, base_dir=None)
    assert access.server == "https://127.0.0.1:6443"
    assert access.ca_pem == CA.encode()
    assert access.token == SecretStr("sa-token-value")
    assert access.client_cert_pem is None


def test_client_certificate_kubeconfig():
    access = parse_kubeconfig(
        kubeconfig({"client-certificate-data": b64("CERT"), "client-key-data": b64("KEY")}),
        context=None,
        base_dir=None,
    )
    assert access.client_cert_pem == SecretStr("CERT")
    assert access.client_key_pem == SecretStr("KEY")


def test_file_references_resolve_relative_to_a_local_kubeconfig(tmp_path):
    (tmp_path / "token").write_text("from-file\n")
    access = parse_kubeconfig(kubeconfig({"tokenFile": "token"}), context=None, base_dir=tmp_path)
    assert access.token == SecretStr("from-file")


@pytest.mark.parametrize(
    ("user", "match"),
    [
        ({"exec": {"command": "crusoe"}}, "exec"),
        ({"auth-provider": {"name": "oidc"}}, "auth-provider"),
        ({"username": "u", "password": "p"}, "basic"),
        ({}, "neither a token nor a client certificate"),
        ({"client-certificate-data": b64("CERT")}, "without its key"),
        ({"client-certificate-data": "%%%", "client-key-data": b64("K")}, "base64"),
        ({"tokenFile": "/var/run/token"}, "embed it as tokenFile-data|must embed"),
    ],
)
def test_unusable_users_are_refused_with_a_reason(user, match):
    with pytest.raises(KubeconfigError, match=match):
        parse_kubeconfig(kubeconfig(user), context=None, base_dir=None)


def test_context_selection_and_missing_entries():
    with pytest.raises(KubeconfigError, match="no user named 'missing'"):
        parse_kubeconfig(kubeconfig({"token": "t"}), context="other", base_dir=None)
    with pytest.raises(KubeconfigError, match="no context named 'nope'"):
        parse_kubeconfig(kubeconfig({"token": "t"}), context="nope", base_dir=None)
    with pytest.raises(KubeconfigError, match="KUBE_CONTEXT"):
        parse_kubeconfig(kubeconfig({"token": "t"}, current=""), context=None, base_dir=None)


def test_http_servers_are_refused():
    with pytest.raises(KubeconfigError, match="https"):
        parse_kubeconfig(kubeconfig({"token": "t"}, cluster={"server": "http://10.0.0.1"}), context=None, base_dir=None)


def test_yaml_errors_do_not_quote_the_document():
    secret_line = "token: supersecretvalue: [unclosed"
    with pytest.raises(KubeconfigError) as caught:
        parse_kubeconfig(SecretStr(f"users:\n- {secret_line}\n"), context=None, base_dir=None)
    assert "supersecretvalue" not in str(caught.value)
    assert "line" in str(caught.value)


def two_cluster_kubeconfig(ca=CA):
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "first",
        "clusters": [
            {"name": "a", "cluster": {"server": "https://10.0.0.1:6443", "certificate-authority-data": b64(ca)}},
            {"name": "b", "cluster": {"server": "https://10.0.0.2:6443", "certificate-authority-data": b64(ca)}},
        ],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [
            {"name": "first", "context": {"cluster": "a", "user": "u"}},
            {"name": "second", "context": {"cluster": "b", "user": "u"}},
        ],
    }


def test_kubeconfig_context_chooses_the_cluster():
    text = SecretStr(yaml.safe_dump(two_cluster_kubeconfig()))
    assert parse_kubeconfig(text, context=None, base_dir=None).server == "https://10.0.0.1:6443"
    assert parse_kubeconfig(text, context="second", base_dir=None).server == "https://10.0.0.2:6443"


def test_kube_context_setting_reaches_the_client(tmp_path):
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(two_cluster_kubeconfig(write_pki(tmp_path / "pki").ca_cert.decode())))
    env = {
        "CRUSOE_ACCESS_KEY": "AKID",
        "CRUSOE_SECRET_KEY": "HrbZ3VTUb2YNAq53Md1EsA",
        "REGISTRY_URL": "registry.us-east1-a.ccr.crusoecloudcompute.com",
        "REGISTRY_USERNAME": "ops@example.com",
        "TARGET_NAMESPACES": "team-a",
        "KUBECONFIG": str(path),
    }
    for context, server in ((None, "https://10.0.0.1:6443"), ("second", "https://10.0.0.2:6443")):
        settings = load_settings(env if context is None else {**env, "KUBE_CONTEXT": context})
        clients = connect(settings, with_registry=False)
        try:
            assert clients.targets[0].connect().server == server
        finally:
            clients.close()


@pytest.mark.parametrize("value", [True, False])
def test_kubeconfig_insecure_skip_tls_verify_takes_a_yaml_boolean(value):
    cluster = {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": value}
    text = kubeconfig({"token": "t"}, cluster=cluster)
    access = parse_kubeconfig(text, context=None, base_dir=None, allow_insecure=True)
    assert access.insecure_skip_tls_verify is value


def test_kubeconfig_insecure_skip_tls_verify_is_refused_unless_the_deployment_allows_it():
    cluster = {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True}
    with pytest.raises(KubeconfigError, match="ALLOW_INSECURE_SKIP_TLS_VERIFY=true"):
        parse_kubeconfig(kubeconfig({"token": "t"}, cluster=cluster), context=None, base_dir=None)


def test_kubeconfig_proxy_url_is_refused_with_the_way_to_use_a_proxy():
    cluster = {"server": "https://127.0.0.1:6443", "proxy-url": "http://proxy.example:3128"}
    with pytest.raises(KubeconfigError, match="HTTPS_PROXY"):
        parse_kubeconfig(kubeconfig({"token": "t"}, cluster=cluster), context=None, base_dir=None)


@pytest.mark.parametrize("field", ["as", "as-groups", "as-uid", "as-user-extra"])
def test_kubeconfig_impersonation_is_refused(field):
    with pytest.raises(KubeconfigError, match="impersonates"):
        parse_kubeconfig(kubeconfig({"token": "t", field: "someone"}), context=None, base_dir=None)


@pytest.mark.parametrize("value", ["false", "no", "0", "true", 0, 1, None, []])
def test_kubeconfig_insecure_skip_tls_verify_refuses_anything_but_a_boolean(value):
    cluster = {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": value}
    with pytest.raises(KubeconfigError, match=r"insecure-skip-tls-verify .* must be true or false"):
        parse_kubeconfig(kubeconfig({"token": "t"}, cluster=cluster), context=None, base_dir=None)


def test_kubeconfig_alias_expansion_is_refused_quickly():
    # The classic expansion bomb: nine levels of nine aliases, ~387 million strings if expanded.
    lines = ['a0: &a0 ["lol"]'] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    with pytest.raises(KubeconfigError, match="anchor or alias"):
        parse_kubeconfig(SecretStr("\n".join(lines) + "\n"), context=None, base_dir=None)


def test_kubeconfig_anchor_alone_is_refused():
    text = yaml.safe_dump(yaml.safe_load(kubeconfig({"token": "t"}).reveal())).replace("user:\n", "user: &me\n", 1)
    with pytest.raises(KubeconfigError, match=r"anchor or alias .* at line \d+"):
        parse_kubeconfig(SecretStr(text), context=None, base_dir=None)


def test_kubeconfig_dates_stay_text_even_impossible_ones():
    text = (
        kubeconfig({"token": "t"}).reveal().replace("token: t", "token: 2026-02-30\n    expiry: 2026-02-30T00:00:00Z")
    )
    access = parse_kubeconfig(SecretStr(text), context=None, base_dir=None)
    assert access.token == SecretStr("2026-02-30")


def test_kubeconfig_deep_nesting_is_a_kubeconfig_error():
    with pytest.raises(KubeconfigError, match="not valid YAML"):
        parse_kubeconfig(SecretStr("a: " + "[" * 5000 + "]" * 5000 + "\n"), context=None, base_dir=None)


def test_kubeconfig_larger_than_the_cap_is_refused():
    with pytest.raises(KubeconfigError, match="larger than 1 MiB"):
        parse_kubeconfig(SecretStr("#" * (1024 * 1024 + 1)), context=None, base_dir=None)


@pytest.mark.parametrize("section", ["clusters", "users", "contexts"])
def test_kubeconfig_duplicate_names_are_refused(section):
    document = yaml.safe_load(kubeconfig({"token": "t"}).reveal())
    document[section].append(copy.deepcopy(document[section][0]))
    with pytest.raises(KubeconfigError, match=f"two {section} named"):
        parse_kubeconfig(SecretStr(yaml.safe_dump(document)), context=None, base_dir=None)


@pytest.mark.parametrize(
    "server", ["https://admin:hunter2@10.0.0.1:6443", "https://hunter2@10.0.0.1", "https://:hunter2@10.0.0.1"]
)
def test_kubeconfig_userinfo_in_server_is_refused_and_not_echoed(server):
    with pytest.raises(KubeconfigError, match="user name or password") as caught:
        parse_kubeconfig(kubeconfig({"token": "t"}, cluster={"server": server}), context=None, base_dir=None)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("server", ["https://[::1", "https://10.0.0.1:99999", "https://", "10.0.0.1:6443"])
def test_kubeconfig_malformed_server_urls_are_refused(server):
    with pytest.raises(KubeconfigError, match="https server URL"):
        parse_kubeconfig(kubeconfig({"token": "t"}, cluster={"server": server}), context=None, base_dir=None)


@pytest.mark.parametrize(
    "key",
    [
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
        (
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nMIIB\n"
            "-----END RSA PRIVATE KEY-----\n"
        ),
    ],
)
def test_kubeconfig_encrypted_client_key_is_refused(key):
    user = {"client-certificate-data": b64("CERT"), "client-key-data": b64(key)}
    with pytest.raises(KubeconfigError, match="encrypted with a pass phrase"):
        parse_kubeconfig(kubeconfig(user), context=None, base_dir=None)
