import base64

import pytest
import yaml
from rotator.errors import KubeconfigError
from rotator.kubeconfig import parse_kubeconfig
from rotator.secret import SecretStr

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
