import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rotator import dockerconfig, logs
from rotator.dockerconfig import (
    DOCKERCONFIG_TYPE,
    EXPIRES_AT,
    MANAGED_BY_LABEL,
    ROTATED_AT,
    TOKEN_ALIAS,
    RegistryLogin,
    apply_manifest,
    describe,
    merged_dockerconfig,
)
from rotator.errors import RotatorError, SecretConflictError
from rotator.secret import SecretStr

REGISTRY = "registry.us-east1-a.ccr.crusoecloudcompute.com"
LOGIN = RegistryLogin(
    REGISTRY,
    "ops@example.com",
    SecretStr("tok-new"),
    "ccr-rotator-20261128T120000Z-abcdef",
    datetime(2026, 11, 29, tzinfo=UTC),
)


def secret(config, kind=DOCKERCONFIG_TYPE):
    data = {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()} if config is not None else {}
    return {"type": kind, "metadata": {"resourceVersion": "7"}, "data": data}


def decoded(raw):
    return json.loads(raw)


def test_new_dockerconfig_has_the_registry_entry():
    config = decoded(merged_dockerconfig(None, LOGIN))
    entry = config["auths"][REGISTRY]
    assert entry["username"] == "ops@example.com"
    assert entry["password"] == "tok-new"
    assert base64.b64decode(entry["auth"]).decode() == "ops@example.com:tok-new"


def test_merge_keeps_other_registries_and_top_level_keys():
    existing = secret({"auths": {"ghcr.io": {"auth": "Zm9vOmJhcg=="}, REGISTRY: {"auth": "old"}}, "credsStore": "x"})
    config = decoded(merged_dockerconfig(existing, LOGIN))
    assert config["auths"]["ghcr.io"] == {"auth": "Zm9vOmJhcg=="}
    assert config["credsStore"] == "x"
    assert config["auths"][REGISTRY]["password"] == "tok-new"


def test_merge_into_an_empty_dockerconfig_secret():
    assert REGISTRY in decoded(merged_dockerconfig(secret(None), LOGIN))["auths"]


@pytest.mark.parametrize(
    "existing",
    [
        secret({"auths": {}}, kind="Opaque"),
        {"type": DOCKERCONFIG_TYPE, "data": {".dockerconfigjson": "bm90IGpzb24="}},
        secret(["a", "list"]),
        secret({"auths": "not a map"}),
    ],
)
def test_merge_refuses_what_it_would_destroy(existing):
    with pytest.raises(SecretConflictError):
        merged_dockerconfig(existing, LOGIN)


def test_wrong_type_message_says_what_to_do():
    with pytest.raises(SecretConflictError, match="TARGET_SECRET_NAME"):
        merged_dockerconfig(secret({}, kind="Opaque"), LOGIN)


def test_apply_manifest_owns_only_the_rotators_fields_and_holds_no_token_in_metadata():
    manifest = apply_manifest(
        namespace="a",
        name="s",
        dockerconfig=b"{}",
        login=LOGIN,
        rotated_at=datetime(2026, 11, 28, tzinfo=UTC),
        resource_version="7",
    )
    assert manifest["type"] == DOCKERCONFIG_TYPE
    assert manifest["metadata"]["resourceVersion"] == "7"
    assert manifest["metadata"]["labels"] == {MANAGED_BY_LABEL: "ccr-pull-secret-rotator"}
    assert manifest["metadata"]["annotations"][TOKEN_ALIAS] == LOGIN.alias
    assert manifest["metadata"]["annotations"][EXPIRES_AT] == "2026-11-29T00:00:00Z"
    assert "tok-new" not in json.dumps(manifest["metadata"])
    assert set(manifest["data"]) == {".dockerconfigjson"}


def test_apply_manifest_without_resource_version_for_creation():
    manifest = apply_manifest(
        namespace="a",
        name="s",
        dockerconfig=b"{}",
        login=LOGIN,
        rotated_at=datetime(2026, 11, 28, tzinfo=UTC),
        resource_version=None,
    )
    assert "resourceVersion" not in manifest["metadata"]


def test_describe_reports_annotations_not_data():
    existing = secret({"auths": {REGISTRY: {"password": "tok-old"}}})
    existing["metadata"]["annotations"] = {TOKEN_ALIAS: "a1"}
    report = describe(existing, REGISTRY)
    assert report["exists"] is True
    assert report["registry_entry"] is True
    assert report["token_alias"] == "a1"
    assert "tok-old" not in json.dumps(report)
    assert describe(None, REGISTRY) == {"exists": False}


def test_registry_login_never_shows_its_token(capsys):
    token = "ccr-token-0123456789abcdef"
    login = RegistryLogin(REGISTRY, "ops@example.com", SecretStr(token), LOGIN.alias, LOGIN.expires_at)
    logger = logs.configure("INFO")
    logger.info("login %r", login)
    logger.info("login %s", login, extra={"fields": {"login": login}})
    logger.info("quoted by mistake: %s", login.password.reveal())
    error = RotatorError(f"could not write {login}")
    lines = capsys.readouterr().out.splitlines()
    assert token not in repr(login)
    assert token not in str(error)
    assert len(lines) == 3
    assert all(token not in line for line in lines)
    assert "[REDACTED]" in lines[2]
    assert json.loads(merged_dockerconfig(None, login))["auths"][REGISTRY]["password"] == token


def test_merged_dockerconfig_is_compact_sorted_json_so_equal_inputs_give_equal_bytes():
    existing = secret({"credsStore": "x", "auths": {"ghcr.io": {"auth": "Zm9vOmJhcg=="}}})
    auth = base64.b64encode(b"ops@example.com:tok-new").decode()
    assert (
        merged_dockerconfig(existing, LOGIN)
        == (
            '{"auths":{"ghcr.io":{"auth":"Zm9vOmJhcg=="},'
            f'"{REGISTRY}":{{"auth":"{auth}","password":"tok-new","username":"ops@example.com"}}}},"credsStore":"x"}}'
        ).encode()
    )


def test_merge_refuses_data_that_is_not_strict_base64():
    with pytest.raises(SecretConflictError, match=r"^the existing \.dockerconfigjson is not valid JSON$"):
        merged_dockerconfig({"type": DOCKERCONFIG_TYPE, "data": {".dockerconfigjson": "e3*0="}}, LOGIN)


def test_merge_refusals_say_what_is_wrong():
    with pytest.raises(SecretConflictError) as wrong_type:
        merged_dockerconfig(secret({}, kind="Opaque"), LOGIN)
    assert str(wrong_type.value) == (
        f"a secret of type 'Opaque' already has this name; the rotator only writes {DOCKERCONFIG_TYPE} "
        "secrets and will not replace it: rename or delete it, or set TARGET_SECRET_NAME"
    )
    with pytest.raises(SecretConflictError, match=r"^the existing \.dockerconfigjson is not a docker config object$"):
        merged_dockerconfig(secret(["a", "list"]), LOGIN)


def test_apply_manifest_is_the_whole_secret_with_utc_stamps(local_time_zone_ahead_of_utc):
    manifest = apply_manifest(
        namespace="team-a",
        name="pull",
        dockerconfig=b"{}",
        login=LOGIN,
        rotated_at=datetime(2026, 11, 28, 21, 0, tzinfo=timezone(timedelta(hours=9))),
        resource_version=None,
    )
    assert manifest == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "pull",
            "namespace": "team-a",
            "labels": {MANAGED_BY_LABEL: "ccr-pull-secret-rotator"},
            "annotations": {
                ROTATED_AT: "2026-11-28T12:00:00Z",
                TOKEN_ALIAS: LOGIN.alias,
                EXPIRES_AT: "2026-11-29T00:00:00Z",
                dockerconfig.REGISTRY: REGISTRY,
            },
        },
        "type": DOCKERCONFIG_TYPE,
        "data": {".dockerconfigjson": "e30="},
    }


def managed_secret(config, kind=DOCKERCONFIG_TYPE):
    existing = secret(config, kind)
    existing["metadata"]["labels"] = {MANAGED_BY_LABEL: "ccr-pull-secret-rotator"}
    existing["metadata"]["annotations"] = {ROTATED_AT: "r", TOKEN_ALIAS: "a", EXPIRES_AT: "e"}
    return existing


def test_describe_reports_every_field_of_a_managed_secret():
    assert describe(managed_secret({"auths": {REGISTRY: {}}}), REGISTRY) == {
        "exists": True,
        "type": DOCKERCONFIG_TYPE,
        "managed": True,
        "registry_entry": True,
        "rotated_at": "r",
        "token_alias": "a",
        "expires_at": "e",
    }


@pytest.mark.parametrize(
    "existing",
    [
        managed_secret(None),
        managed_secret({"auths": {"ghcr.io": {}}}),
        managed_secret({"credsStore": "x"}),
        managed_secret({"auths": {REGISTRY: {}}}, kind="Opaque"),
        {"type": DOCKERCONFIG_TYPE, "metadata": {}, "data": {".dockerconfigjson": "bm90IGpzb24="}},
        {"type": DOCKERCONFIG_TYPE, "metadata": {}, "data": {".dockerconfigjson": "W10="}},
    ],
)
def test_describe_claims_no_registry_entry_that_is_not_there(existing):
    assert describe(existing, REGISTRY)["registry_entry"] is False


def test_describe_says_unmanaged_without_the_rotators_label():
    existing = secret({"auths": {REGISTRY: {}}})
    existing["metadata"]["labels"] = {MANAGED_BY_LABEL: "helm"}
    assert describe(existing, REGISTRY)["managed"] is False
    assert describe(secret({"auths": {}}), REGISTRY)["managed"] is False


# -- hostile existing content: bounded before it is parsed ------------------------------------------------------


def raw_secret(text):
    return {
        "type": DOCKERCONFIG_TYPE,
        "metadata": {},
        "data": {".dockerconfigjson": base64.b64encode(text.encode()).decode()},
    }


DEEP = (
    '{"auths":{},"x":' + "[" * 2000 + "]" * 2000 + "}"
)  # the apiserver accepts it; json.loads recursed past the limit


@pytest.mark.parametrize("text", [DEEP, "[" * 100_000, '{"a":' * 40 + "1" + "}" * 40])
def test_merge_refuses_a_deeply_nested_dockerconfig_with_a_named_error(text):
    with pytest.raises(SecretConflictError, match=r"^the existing \.dockerconfigjson is nested deeper than 32 levels"):
        merged_dockerconfig(raw_secret(text), LOGIN)


def test_merge_refuses_a_multi_megabyte_dockerconfig_before_decoding_it():
    huge = json.dumps({"auths": {f"r{i}.example": {"auth": "x" * 1000} for i in range(3000)}})
    with pytest.raises(SecretConflictError, match=r"^the existing \.dockerconfigjson is larger than 1 MiB"):
        merged_dockerconfig(raw_secret(huge), LOGIN)


def test_merge_accepts_a_dockerconfig_just_under_the_limits():
    nested = {"auths": {"quay.io": {"auth": "dTpw"}}, "deep": json.loads("[" * 29 + "]" * 29)}
    big = {"auths": {"quay.io": {"auth": "x" * (dockerconfig.MAX_DOCKERCONFIG_BYTES - 1000)}}}
    for config in (nested, big):
        assert decoded(merged_dockerconfig(secret(config), LOGIN))["auths"]["quay.io"] == config["auths"]["quay.io"]


def test_brackets_inside_strings_do_not_count_as_nesting():
    config = {"auths": {"quay.io": {"auth": "[" * 5000, "email": '\\"{' * 100}}}
    assert decoded(merged_dockerconfig(secret(config), LOGIN))["auths"]["quay.io"] == config["auths"]["quay.io"]


@pytest.mark.parametrize("value", [123, ["a"], {"a": 1}])
def test_merge_refuses_data_that_is_not_a_string(value):
    with pytest.raises(SecretConflictError):
        merged_dockerconfig({"type": DOCKERCONFIG_TYPE, "data": {".dockerconfigjson": value}}, LOGIN)


@pytest.mark.parametrize("text", [DEEP, "null", "\udcff"])
def test_describe_survives_hostile_content(text):
    hostile = (
        raw_secret(text) if text != "\udcff" else {"type": DOCKERCONFIG_TYPE, "data": {".dockerconfigjson": "/w=="}}
    )
    assert describe(hostile, REGISTRY)["registry_entry"] is False


# -- properties: the merge keeps what is not ours and is idempotent -----------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)
FOREIGN_AUTHS = st.dictionaries(
    st.text(min_size=1, max_size=30).filter(lambda host: host != REGISTRY),
    st.dictionaries(
        st.sampled_from(["auth", "username", "password", "email", "identitytoken"]), JSON_VALUES, max_size=3
    ),
    max_size=4,
)
OTHER_KEYS = st.dictionaries(st.text(max_size=12).filter(lambda key: key != "auths"), JSON_VALUES, max_size=3)


@given(foreign=FOREIGN_AUTHS, others=OTHER_KEYS, ours=st.none() | st.dictionaries(st.text(max_size=5), JSON_VALUES))
def test_merge_keeps_every_foreign_entry_and_is_idempotent(foreign, others, ours):
    auths = dict(foreign) | ({REGISTRY: ours} if ours is not None else {})
    first = merged_dockerconfig(secret({**others, "auths": auths}), LOGIN)
    config = decoded(first)
    assert {host: entry for host, entry in config["auths"].items() if host != REGISTRY} == foreign
    assert {key: value for key, value in config.items() if key != "auths"} == others
    assert config["auths"][REGISTRY]["password"] == "tok-new"
    assert merged_dockerconfig(secret(config), LOGIN) == first


def json_of_size(size):
    """A docker config whose JSON text is exactly ``size`` bytes."""
    shell = '{"auths":{},"pad":""}'
    return shell[:-2] + "x" * (size - len(shell)) + '"}'


def test_the_size_limit_is_exactly_one_mebibyte_of_json():
    limit = dockerconfig.MAX_DOCKERCONFIG_BYTES
    assert "pad" in decoded(merged_dockerconfig(raw_secret(json_of_size(limit)), LOGIN))
    with pytest.raises(SecretConflictError) as caught:
        merged_dockerconfig(raw_secret(json_of_size(limit + 1)), LOGIN)
    assert caught.value.message == (
        "the existing .dockerconfigjson is larger than 1 MiB; the rotator will not parse it: delete the secret or "
        "set TARGET_SECRET_NAME"
    )


def nested(levels):
    return '{"auths":{},"deep":' + "[" * (levels - 1) + "]" * (levels - 1) + "}"


def test_the_depth_limit_is_exactly_32_levels():
    assert decoded(merged_dockerconfig(raw_secret(nested(32)), LOGIN))["auths"][REGISTRY]
    with pytest.raises(SecretConflictError) as caught:
        merged_dockerconfig(raw_secret(nested(33)), LOGIN)
    assert caught.value.message == (
        "the existing .dockerconfigjson is nested deeper than 32 levels; the rotator will not parse it: delete the "
        "secret or set TARGET_SECRET_NAME"
    )


def test_depth_is_measured_after_many_siblings_too():
    siblings = '{"auths":{},"flat":[' + ",".join(["[]"] * 40) + '],"deep":' + "[" * 33 + "]" * 33 + "}"
    with pytest.raises(SecretConflictError, match="nested deeper than 32 levels"):
        merged_dockerconfig(raw_secret(siblings), LOGIN)


@pytest.mark.parametrize(
    ("existing", "message"),
    [
        (raw_secret("not json"), "the existing .dockerconfigjson is not valid JSON"),
        (secret({"auths": "not a map"}), "the existing .dockerconfigjson is not a docker config object"),
        (secret(["a", "list"]), "the existing .dockerconfigjson is not a docker config object"),
    ],
)
def test_each_refusal_says_exactly_what_is_wrong(existing, message):
    with pytest.raises(SecretConflictError) as caught:
        merged_dockerconfig(existing, LOGIN)
    assert caught.value.message == message


@pytest.mark.parametrize("data", [None, "absent", [], {}])
def test_a_dockerconfig_secret_without_data_takes_the_entry(data):
    existing = {"type": DOCKERCONFIG_TYPE} | ({} if data == "absent" else {"data": data})
    assert set(decoded(merged_dockerconfig(existing, LOGIN))["auths"]) == {REGISTRY}
