import base64
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rotator.config import (
    DEFAULT_API_ENDPOINT,
    DEFAULT_SECRET_MANAGER_ENDPOINT,
    VARIABLES,
    LocalFile,
    SecretManagerRef,
    StaticCredentials,
    load_settings,
    log_level_from,
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
    assert settings.clusters[0].selection.names == ("team-a", "team-b")
    assert settings.token_lifetime == timedelta(hours=12)
    assert settings.alias_prefix == "ccr-rotator"
    assert settings.keep_previous_tokens == 1
    assert settings.clusters[0].kubeconfig == LocalFile(Path("/home/ops/.kube/config"))
    assert isinstance(settings.credentials, StaticCredentials)
    assert settings.credentials.access_key_id == "AKID"
    assert settings.credentials.secret_key.reveal() == SECRET_KEY
    assert settings.registry == "registry.us-east1-a.ccr.crusoecloudcompute.com"
    assert settings.registry_username == "ops@example.com"
    assert settings.clusters[0].context is None
    assert settings.secret_manager_endpoint == DEFAULT_SECRET_MANAGER_ENDPOINT
    assert settings.max_parallel_writes == 16
    assert settings.log_level == "INFO"


def test_config_reads_every_tunable():
    settings = settings_with(
        TARGET_SECRET_NAME="pull.secret",
        TOKEN_EXPIRATION_HOURS="24",
        TOKEN_ALIAS_PREFIX="ci-rotator",
        KEEP_PREVIOUS_TOKENS="3",
        KUBE_CONTEXT="prod",
        SECRET_MANAGER_ENDPOINT="https://sm.example.com/",
        MAX_PARALLEL_WRITES="4",
        LOG_LEVEL="debug",
    )
    assert settings.secret_name == "pull.secret"
    assert settings.token_lifetime == timedelta(hours=24)
    assert settings.alias_prefix == "ci-rotator"
    assert settings.keep_previous_tokens == 3
    assert settings.clusters[0].context == "prod"
    assert settings.secret_manager_endpoint == "https://sm.example.com"
    assert settings.max_parallel_writes == 4
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("TOKEN_EXPIRATION_HOURS", "1", "token_lifetime", timedelta(hours=1)),
        ("TOKEN_EXPIRATION_HOURS", "720", "token_lifetime", timedelta(hours=720)),
        ("KEEP_PREVIOUS_TOKENS", "0", "keep_previous_tokens", 0),
        ("KEEP_PREVIOUS_TOKENS", "20", "keep_previous_tokens", 20),
        ("MAX_PARALLEL_WRITES", "1", "max_parallel_writes", 1),
        ("MAX_PARALLEL_WRITES", "128", "max_parallel_writes", 128),
        ("TARGET_SECRET_NAME", "s" * 253, "secret_name", "s" * 253),
        ("MAX_PARALLEL_CLUSTERS", "1", "max_parallel_clusters", 1),
        ("MAX_PARALLEL_CLUSTERS", "32", "max_parallel_clusters", 32),
        ("EXPIRY_WARNING_HOURS", "1", "expiry_warning", timedelta(hours=1)),
        ("EXPIRY_WARNING_HOURS", "11", "expiry_warning", timedelta(hours=11)),
    ],
)
def test_config_accepts_the_limits_themselves(variable, value, field, expected):
    assert getattr(settings_with(**{variable: value}), field) == expected


def test_config_accepts_the_longest_namespace_name():
    assert settings_with(TARGET_NAMESPACES="n" * 63).clusters[0].selection.names == ("n" * 63,)


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("CRUSOE_API_ENDPOINT", "https://gateway.example.com/BOX/", "api_endpoint", "https://gateway.example.com/BOX"),
        (
            "CRUSOE_BASE_ENDPOINT",
            "https://gateway.example.com/BOX/",
            "api_endpoint",
            "https://gateway.example.com/BOX/v1alpha5",
        ),
        ("REGISTRY_URL", "https://CCR.EXAMPLE.BOX/", "registry", "CCR.EXAMPLE.BOX"),
    ],
)
def test_config_trims_only_trailing_slashes(variable, value, field, expected):
    assert getattr(settings_with(**{variable: value}), field) == expected


@pytest.mark.parametrize("host", ["localhost:8080", "127.0.0.1", "[::1]:9"])
def test_config_allows_plain_http_for_every_loopback_host(host):
    assert settings_with(CRUSOE_API_ENDPOINT=f"http://{host}/v1alpha5").api_endpoint == f"http://{host}/v1alpha5"


def test_config_accepts_secret_keys_of_other_lengths():
    secret_key = base64.urlsafe_b64encode(bytes(range(22))).rstrip(b"=").decode()
    assert settings_with(CRUSOE_SECRET_KEY=secret_key).credentials.secret_key.reveal() == secret_key


@pytest.mark.parametrize(
    ("value", "level"),
    [
        (None, "INFO"),
        ("", "INFO"),
        (" debug ", "DEBUG"),
        ("Warning", "WARNING"),
        ("ERROR", "ERROR"),
        ("chatty", "INFO"),
    ],
)
def test_log_level_is_read_before_the_rest_and_never_fails(value, level):
    assert log_level_from({} if value is None else {"LOG_LEVEL": value}) == level


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
    assert settings.clusters[0].selection.names == ("one",)
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
    assert settings.clusters[0].kubeconfig == SecretManagerRef("projects/p/secrets/kube/versions/3")


def test_config_registry_url_scheme_is_stripped():
    assert settings_with(REGISTRY_URL="https://registry.example.com/").registry == "registry.example.com"


NOT_BASE64 = "copy the secret key exactly as Crusoe showed it"
SECRET_VERSION = "must be a Secret Manager version name like projects/PROJECT/secrets/SECRET/versions/latest"
HTTPS_ONLY = "must use https (plain http is accepted only for loopback test servers)"
NO_STATIC_CREDENTIALS = {"CRUSOE_ACCESS_KEY": None, "CRUSOE_SECRET_KEY": None}


@pytest.mark.parametrize(
    ("changes", "variable", "message"),
    [
        ({"REGISTRY_URL": None}, "REGISTRY_URL", "is required"),
        (
            {"REGISTRY_URL": "a host/path"},
            "REGISTRY_URL",
            "must be a registry host such as registry.us-east1-a.ccr.crusoecloudcompute.com, got 'a host/path'",
        ),
        ({"REGISTRY_USERNAME": ""}, "REGISTRY_USERNAME", "is required"),
        (
            {"TARGET_NAMESPACES": None},
            "TARGET_NAMESPACES",
            "is required: comma-separated namespaces or globs ('*' for all), or set TARGET_NAMESPACE_SELECTOR",
        ),
        ({"TARGET_NAMESPACES": ",,"}, "TARGET_NAMESPACES", "lists no namespace"),
        ({"TARGET_NAMESPACE": ",,", "TARGET_NAMESPACES": None}, "TARGET_NAMESPACE", "lists no namespace"),
        (
            {"TARGET_NAMESPACES": "ok,Bad_Name,x_y"},
            "TARGET_NAMESPACES",
            "not valid namespace names or globs: 'Bad_Name', 'x_y'",
        ),
        ({"TARGET_NAMESPACES": "a" * 64}, "TARGET_NAMESPACES", f"not valid namespace names or globs: '{'a' * 64}'"),
        ({"TARGET_SECRET_NAME": "UPPER"}, "TARGET_SECRET_NAME", "must be a valid Kubernetes object name, got 'UPPER'"),
        (
            {"TARGET_SECRET_NAME": "s" * 254},
            "TARGET_SECRET_NAME",
            f"must be a valid Kubernetes object name, got '{'s' * 254}'",
        ),
        (
            {"TOKEN_EXPIRATION_HOURS": "twelve"},
            "TOKEN_EXPIRATION_HOURS",
            "must be a whole number from 1 to 720, got 'twelve'",
        ),
        ({"TOKEN_EXPIRATION_HOURS": "0"}, "TOKEN_EXPIRATION_HOURS", "must be from 1 to 720, got 0"),
        ({"TOKEN_EXPIRATION_HOURS": "721"}, "TOKEN_EXPIRATION_HOURS", "must be from 1 to 720, got 721"),
        ({"KEEP_PREVIOUS_TOKENS": "-1"}, "KEEP_PREVIOUS_TOKENS", "must be a whole number from 0 to 20, got '-1'"),
        ({"KEEP_PREVIOUS_TOKENS": "21"}, "KEEP_PREVIOUS_TOKENS", "must be from 0 to 20, got 21"),
        ({"MAX_PARALLEL_WRITES": "0"}, "MAX_PARALLEL_WRITES", "must be from 1 to 128, got 0"),
        ({"MAX_PARALLEL_WRITES": "129"}, "MAX_PARALLEL_WRITES", "must be from 1 to 128, got 129"),
        (
            {"TOKEN_ALIAS_PREFIX": "Has Spaces"},
            "TOKEN_ALIAS_PREFIX",
            "must be 1 to 40 lower-case letters, digits or '-', starting and ending alphanumeric; got 'Has Spaces'",
        ),
        (
            {"CRUSOE_SECRET_KEY": None},
            "CRUSOE_SECRET_KEY",
            "is required (or set CRUSOE_CREDENTIALS_SECRET to read both from Secret Manager)",
        ),
        (
            {"CRUSOE_ACCESS_KEY": None},
            "CRUSOE_ACCESS_KEY",
            "is required (or set CRUSOE_CREDENTIALS_SECRET to read both from Secret Manager)",
        ),
        ({"CRUSOE_SECRET_KEY": "not*base64!"}, "CRUSOE_SECRET_KEY", f"is not URL-safe base64; {NOT_BASE64}"),
        ({"CRUSOE_SECRET_KEY": "abcde"}, "CRUSOE_SECRET_KEY", f"is not valid base64 (wrong length?); {NOT_BASE64}"),
        (
            {"CRUSOE_CREDENTIALS_SECRET": "projects/p/secrets/s/versions/1"},
            "CRUSOE_CREDENTIALS_SECRET",
            "set either CRUSOE_CREDENTIALS_SECRET or CRUSOE_ACCESS_KEY and CRUSOE_SECRET_KEY, not both",
        ),
        (
            {"CRUSOE_CREDENTIALS_SECRET": "projects/p/secrets/s/versions/1", "CRUSOE_SECRET_KEY": None},
            "CRUSOE_CREDENTIALS_SECRET",
            "set either CRUSOE_CREDENTIALS_SECRET or CRUSOE_ACCESS_KEY and CRUSOE_SECRET_KEY, not both",
        ),
        (
            {**NO_STATIC_CREDENTIALS, "CRUSOE_CREDENTIALS_SECRET": "crusoe"},
            "CRUSOE_CREDENTIALS_SECRET",
            SECRET_VERSION,
        ),
        ({"CRUSOE_API_ENDPOINT": "http://api.example.com/v1alpha5"}, "CRUSOE_API_ENDPOINT", HTTPS_ONLY),
        ({"CRUSOE_API_ENDPOINT": "http://10.0.0.1/v1alpha5"}, "CRUSOE_API_ENDPOINT", HTTPS_ONLY),
        ({"CRUSOE_API_ENDPOINT": "ftp://x"}, "CRUSOE_API_ENDPOINT", "must be an http(s) URL, got 'ftp://x'"),
        (
            {"CRUSOE_API_ENDPOINT": "https://api.example.com/v1alpha5?x=1"},
            "CRUSOE_API_ENDPOINT",
            "must not have a query or fragment",
        ),
        (
            {"CRUSOE_API_ENDPOINT": "https://api.example.com/v1alpha5#top"},
            "CRUSOE_API_ENDPOINT",
            "must not have a query or fragment",
        ),
        (
            {"CRUSOE_BASE_ENDPOINT": "ftp://x"},
            "CRUSOE_BASE_ENDPOINT",
            "must be an http(s) URL, got 'ftp://x/v1alpha5'",
        ),
        ({"SECRET_MANAGER_ENDPOINT": "http://secretmanager.example.com"}, "SECRET_MANAGER_ENDPOINT", HTTPS_ONLY),
        (
            {"KUBECONFIG": None},
            "KUBECONFIG_SECRET",
            "is required (a Secret Manager version name), or set KUBECONFIG to a local file for local runs",
        ),
        (
            {"KUBECONFIG_SECRET": "projects/p/secrets/k/versions/latest"},
            "KUBECONFIG_SECRET",
            "set either KUBECONFIG_SECRET or KUBECONFIG, not both",
        ),
        ({"KUBECONFIG": None, "KUBECONFIG_SECRET": "kube"}, "KUBECONFIG_SECRET", SECRET_VERSION),
        ({"KUBECONFIG": "/a:/b"}, "KUBECONFIG", "must name one file (a list of files is not supported)"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL", "must be one of DEBUG, INFO, WARNING, ERROR, got 'CHATTY'"),
    ],
)
def test_config_errors_name_the_variable_and_what_to_do(changes, variable, message):
    assert problems_of(**changes) == {variable: message}


def test_config_error_lists_every_problem_and_never_the_secret_key():
    bad_key = "not*base64!secretvalue"
    with pytest.raises(ConfigError) as caught:
        settings_with(REGISTRY_URL=None, TARGET_NAMESPACES=None, CRUSOE_SECRET_KEY=bad_key)
    message = str(caught.value)
    assert {"REGISTRY_URL", "TARGET_NAMESPACES", "CRUSOE_SECRET_KEY"} <= set(caught.value.problems)
    assert bad_key not in message
    assert caught.value.retryable is False


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


# -- properties: any environment gives settings or a ConfigError naming the variables at fault -------------------

TEXT = st.text(st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    ["", " ", "0", "-1", "99999999999999999999", "\u0661\u0662", "1e3", "http://[::1", "https://", "a,,b", "\x00"]
)


@given(changes=st.dictionaries(st.sampled_from(VARIABLES), TEXT | st.none(), max_size=6))
def test_configuration_parsing_raises_only_config_errors_that_name_the_variables(changes):
    env = {name: value for name, value in {**BASE, **changes}.items() if value is not None}
    try:
        load_settings(env)
    except ConfigError as error:  # anything else fails the test
        problems, message = error.problems, error.message
    else:
        return
    assert problems
    assert set(problems) <= set(VARIABLES)
    assert all(f"{name}: " in message for name in problems)


@pytest.mark.parametrize("name", ["SECRET_MANAGER_ENDPOINT", "CRUSOE_API_ENDPOINT", "CRUSOE_BASE_ENDPOINT"])
def test_a_malformed_url_is_a_config_error_not_a_value_error(name):
    (problem,) = problems_of(**{name: "https://[::1"}).items()
    assert problem[0] == name
    assert problem[1].startswith("must be an http(s) URL, got 'https://[::1")


def test_a_kubeconfig_in_an_unknown_users_home_is_a_config_error():
    assert problems_of(KUBECONFIG="~no-such-user-here/config") == {
        "KUBECONFIG": "names the home directory of an unknown user: '~no-such-user-here/config'"
    }


def test_invoker_audience_that_is_not_a_url_names_the_variable():
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "ALLOWED_INVOKERS": "scheduler@p.iam.gserviceaccount.com", "INVOKER_AUDIENCE": "A://["})
    assert "INVOKER_AUDIENCE" in caught.value.problems
