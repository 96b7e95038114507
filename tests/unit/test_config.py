from datetime import timedelta
from pathlib import Path

import pytest
from rotator.config import (
    DEFAULT_API_ENDPOINT,
    VARIABLES,
    LocalFile,
    SecretManagerRef,
    StaticCredentials,
    load_settings,
)
from rotator.errors import ConfigError

SECRET_KEY = "HrbZ3VTUb2YNAq53Md1EsA"
BASE = {
    "CRUSOE_ACCESS_KEY": "AKID",
    "CRUSOE_SECRET_KEY": SECRET_KEY,
    "REGISTRY_URL": "registry.us-east1-a.ccr.crusoecloudcompute.com",
    "REGISTRY_USERNAME": "ops@example.com",
    "TARGET_NAMESPACES": "team-a, team-b,team-a",
    "KUBECONFIG": "/home/ops/.kube/config",
}


def settings_with(**changes):
    env = {**BASE, **changes}
    return load_settings({k: v for k, v in env.items() if v is not None})


def problems_of(**changes):
    with pytest.raises(ConfigError) as caught:
        settings_with(**changes)
    return caught.value.problems


def test_config_defaults():
    settings = settings_with()
    assert settings.api_endpoint == DEFAULT_API_ENDPOINT
    assert settings.secret_name == "crusoe-image-pull-secrets"
    assert settings.namespaces == ("team-a", "team-b")
    assert settings.token_lifetime == timedelta(hours=12)
    assert settings.alias_prefix == "ccr-rotator"
    assert settings.keep_previous_tokens == 1
    assert settings.kubeconfig == LocalFile(Path("/home/ops/.kube/config"))
    assert isinstance(settings.credentials, StaticCredentials)
    assert settings.credentials.access_key_id == "AKID"


def test_config_accepts_helm_chart_and_cli_names():
    settings = settings_with(
        CRUSOE_ACCESS_KEY=None,
        CRUSOE_ACCESS_KEY_ID="AK2",
        TARGET_NAMESPACES=None,
        TARGET_NAMESPACE="one",
        CRUSOE_BASE_ENDPOINT="https://api.crusoecloud.com",
        TOKEN_ALIAS="legacy",
    )
    assert settings.credentials.access_key_id == "AK2"
    assert settings.namespaces == ("one",)
    assert settings.api_endpoint == "https://api.crusoecloud.com/v1alpha5"
    assert settings.alias_prefix == "legacy"


def test_config_secret_manager_sources():
    settings = settings_with(
        CRUSOE_ACCESS_KEY=None,
        CRUSOE_SECRET_KEY=None,
        KUBECONFIG=None,
        CRUSOE_CREDENTIALS_SECRET="projects/p/secrets/crusoe/versions/latest",
        KUBECONFIG_SECRET="projects/p/secrets/kube/versions/3",
    )
    assert settings.credentials == SecretManagerRef("projects/p/secrets/crusoe/versions/latest")
    assert settings.kubeconfig == SecretManagerRef("projects/p/secrets/kube/versions/3")


def test_config_registry_url_scheme_is_stripped():
    assert settings_with(REGISTRY_URL="https://registry.example.com/").registry == "registry.example.com"


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"REGISTRY_URL": None}, "REGISTRY_URL"),
        ({"REGISTRY_URL": "not a host/with path"}, "REGISTRY_URL"),
        ({"REGISTRY_USERNAME": ""}, "REGISTRY_USERNAME"),
        ({"TARGET_NAMESPACES": None}, "TARGET_NAMESPACES"),
        ({"TARGET_NAMESPACES": ",,"}, "TARGET_NAMESPACES"),
        ({"TARGET_NAMESPACES": "ok,Bad_Name"}, "TARGET_NAMESPACES"),
        ({"TARGET_SECRET_NAME": "UPPER"}, "TARGET_SECRET_NAME"),
        ({"TOKEN_EXPIRATION_HOURS": "twelve"}, "TOKEN_EXPIRATION_HOURS"),
        ({"TOKEN_EXPIRATION_HOURS": "0"}, "TOKEN_EXPIRATION_HOURS"),
        ({"KEEP_PREVIOUS_TOKENS": "-1"}, "KEEP_PREVIOUS_TOKENS"),
        ({"TOKEN_ALIAS_PREFIX": "Has Spaces"}, "TOKEN_ALIAS_PREFIX"),
        ({"CRUSOE_SECRET_KEY": None}, "CRUSOE_SECRET_KEY"),
        ({"CRUSOE_ACCESS_KEY": None}, "CRUSOE_ACCESS_KEY"),
        ({"CRUSOE_SECRET_KEY": "not*base64!"}, "CRUSOE_SECRET_KEY"),
        ({"CRUSOE_CREDENTIALS_SECRET": "projects/p/secrets/s/versions/1"}, "CRUSOE_CREDENTIALS_SECRET"),
        ({"CRUSOE_API_ENDPOINT": "http://api.example.com/v1alpha5"}, "CRUSOE_API_ENDPOINT"),
        ({"CRUSOE_API_ENDPOINT": "ftp://x"}, "CRUSOE_API_ENDPOINT"),
        ({"KUBECONFIG": None}, "KUBECONFIG_SECRET"),
        ({"KUBECONFIG_SECRET": "projects/p/secrets/k/versions/latest"}, "KUBECONFIG_SECRET"),
        ({"KUBECONFIG": None, "KUBECONFIG_SECRET": "kube"}, "KUBECONFIG_SECRET"),
        ({"KUBECONFIG": "/a:/b"}, "KUBECONFIG"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
        ({"MAX_PARALLEL_WRITES": "0"}, "MAX_PARALLEL_WRITES"),
    ],
)
def test_config_errors_name_the_variable(changes, variable):
    problems = problems_of(**changes)
    assert variable in problems


def test_config_error_lists_every_problem_and_never_the_secret_key():
    bad_key = "not*base64!secretvalue"
    with pytest.raises(ConfigError) as caught:
        settings_with(REGISTRY_URL=None, TARGET_NAMESPACES=None, CRUSOE_SECRET_KEY=bad_key)
    message = str(caught.value)
    assert {"REGISTRY_URL", "TARGET_NAMESPACES", "CRUSOE_SECRET_KEY"} <= set(caught.value.problems)
    assert bad_key not in message
    assert caught.value.retryable is False


def test_config_allows_plain_http_only_on_loopback():
    assert settings_with(CRUSOE_API_ENDPOINT="http://127.0.0.1:8080/v1alpha5").api_endpoint.startswith("http://127")


def test_config_secret_key_is_not_in_repr():
    assert SECRET_KEY not in repr(settings_with())


class RecordingEnv(dict):
    def __init__(self, data):
        super().__init__(data)
        self.read = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)


def test_variables_lists_everything_the_configuration_reads():
    env = RecordingEnv(BASE)
    load_settings(env)
    assert env.read <= set(VARIABLES)
    assert set(BASE) <= env.read
