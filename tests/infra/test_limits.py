"""The function and the Terraform module agree on every shared limit, because both read ``limits.json``.

A value that ``terraform apply`` accepts but the function refuses would deploy a function that answers 500 on
every run: the module's validations must take their bounds and patterns from the function's own file, and the
function must really enforce that file's values.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import hcl2
import pytest
from rotator.config import LIMITS, load_settings
from rotator.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
ROTATOR = ROOT / "infra" / "modules" / "rotator"
LIMITS_FILE = ROOT / "function" / "rotator" / "limits.json"

#: limits.json key -> the environment variable the function reads it for.
NUMERIC = {
    "credential_warning_hours": "CREDENTIAL_WARNING_HOURS",
    "keep_previous_tokens": "KEEP_PREVIOUS_TOKENS",
    "max_parallel_writes": "MAX_PARALLEL_WRITES",
    "token_expiration_hours": "TOKEN_EXPIRATION_HOURS",
}
#: limits.json keys the Terraform module validates (max_parallel_writes is not one of its inputs).
SHARED = (
    "credential_warning_hours",
    "keep_previous_tokens",
    "token_expiration_hours",
    "token_alias_prefix",
    "namespace",
    "secret_name",
    "log_levels",
)

BASE_ENV = {
    "CRUSOE_ACCESS_KEY": "key",
    "CRUSOE_SECRET_KEY": "HrbZ3VTUb2YNAq53Md1EsA",
    "REGISTRY_URL": "registry.example.com",
    "REGISTRY_USERNAME": "ops@example.com",
    "TARGET_NAMESPACES": "default",
    "KUBECONFIG": "/dev/null",
}


def _config_validations() -> list[dict[str, str]]:
    with (ROTATOR / "variables.tf").open(encoding="utf-8") as handle:
        variables = hcl2.load(handle)["variable"]
    config = next(block['"config"'] for block in variables if '"config"' in block)
    return list(config["validation"])


def test_limits_file_is_what_the_function_loaded():
    assert json.loads(LIMITS_FILE.read_text(encoding="utf-8")) == LIMITS


def test_terraform_module_reads_the_function_limits_file():
    main = (ROTATOR / "main.tf").read_text(encoding="utf-8")
    assert re.search(
        r'limits\s*=\s*jsondecode\(file\("\$\{path\.module\}/\.\./\.\./\.\./function/rotator/limits\.json"\)\)', main
    )


@pytest.mark.parametrize("key", SHARED)
def test_terraform_validation_takes_each_shared_limit_from_the_file(key):
    conditions = [str(v["condition"]) for v in _config_validations() if f"local.limits.{key}" in str(v["condition"])]
    assert conditions, f"no validation of var.config uses local.limits.{key}"
    if key in NUMERIC:
        assert f"local.limits.{key}.min" in conditions[0]
        assert f"local.limits.{key}.max" in conditions[0]


def test_terraform_validations_hold_no_literal_bounds_or_patterns():
    for validation in _config_validations():
        condition = str(validation["condition"])
        assert not re.search(r"[<>]=?\s*[1-9]", condition), condition  # "> 0" (not empty) is no limit
        assert 'regex("' not in condition, condition


@pytest.mark.parametrize(("key", "variable"), NUMERIC.items())
def test_function_enforces_the_files_numeric_bounds(key, variable):
    low, high = LIMITS[key]["min"], LIMITS[key]["max"]
    for accepted in (low, high):
        load_settings({**BASE_ENV, variable: str(accepted)})
    for refused in (low - 1, high + 1):
        with pytest.raises(ConfigError) as caught:
            load_settings({**BASE_ENV, variable: str(refused)})
        assert variable in caught.value.problems


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("TOKEN_ALIAS_PREFIX", "a" * 40, True),
        ("TOKEN_ALIAS_PREFIX", "a" * 41, False),
        ("TOKEN_ALIAS_PREFIX", "rotator-", False),
        ("TOKEN_ALIAS_PREFIX", "Rotator", False),
        ("TARGET_NAMESPACES", "a" * 63, True),
        ("TARGET_NAMESPACES", "a" * 64, False),
        ("TARGET_SECRET_NAME", ("a" * 63 + ".") * 3 + "a" * 61, True),
        ("TARGET_SECRET_NAME", ("a" * 63 + ".") * 3 + "a" * 62, False),
    ],
)
def test_function_enforces_the_files_patterns(variable, value, accepted):
    env = {**BASE_ENV, variable: value}
    if accepted:
        load_settings(env)
        return
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert variable in caught.value.problems
