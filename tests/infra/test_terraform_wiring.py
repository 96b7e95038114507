"""What `terraform test` cannot express, read from the HCL itself (python-hcl2).

The planned wiring (OIDC audience, invoker scope, secret-level access, one job per group, alerts, deadlines) is
asserted by the `tests/*.tftest.hcl` files of each module, run by `infra/scripts/check.sh test`. Left here: rules
over every resource of every type (nothing public, no broad role), variable attributes (ephemeral, sensitive),
the source layout, provider pins and the generated README tables.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
ROTATOR = INFRA / "modules" / "rotator"
CLUSTER_RBAC = INFRA / "modules" / "cluster-rbac"
TERRAFORM_DIRS = [ROTATOR, CLUSTER_RBAC, INFRA / "examples" / "basic"]

BROAD_ROLES = {"roles/owner", "roles/editor", "roles/viewer", "roles/iam.serviceAccountUser"}
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _load(directory: Path) -> dict[str, list[dict[str, Any]]]:
    merged: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            for key, blocks in hcl2.load(handle).items():
                merged.setdefault(key, []).extend(blocks)
    return merged


def _resources(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for block in _load(directory).get("resource", []):
        for rtype, named in block.items():
            for name, body in named.items():
                out[(_unquote(rtype), _unquote(name))] = body
    return out


def _of_type(directory: Path, rtype: str) -> dict[str, dict[str, Any]]:
    return {name: body for (kind, name), body in _resources(directory).items() if kind == rtype}


def _one(body: dict[str, Any], block: str) -> dict[str, Any]:
    (inner,) = body[block]
    return inner


@pytest.fixture(scope="module")
def rotator() -> dict[tuple[str, str], dict[str, Any]]:
    return _resources(ROTATOR)


def test_function_never_overlaps_and_scales_to_zero(rotator):
    service = _one(rotator[("google_cloudfunctions2_function", "this")], "service_config")
    assert service["max_instance_count"] == 1
    assert service["min_instance_count"] == 0
    assert service["max_instance_request_concurrency"] == 1


def test_function_runtime_entry_point_and_identities(rotator):
    function = rotator[("google_cloudfunctions2_function", "this")]
    build = _one(function, "build_config")
    assert _unquote(build["runtime"]) == "python312"
    assert _unquote(build["entry_point"]) == "rotate"
    # Dedicated build and runtime identities: no default compute service account anywhere.
    assert build["service_account"] == "${google_service_account.build.id}"
    service = _one(function, "service_config")
    assert service["service_account_email"] == "${google_service_account.runtime.email}"


def test_invoker_and_runtime_service_accounts_differ(rotator):
    accounts = _of_type(ROTATOR, "google_service_account")
    assert {"runtime", "invoker", "build"} <= accounts.keys()
    ids = [_unquote(accounts[name]["account_id"]) for name in ("runtime", "invoker", "build")]
    assert len(set(ids)) == 3
    invoker = rotator[("google_cloud_run_v2_service_iam_member", "invoker")]
    assert invoker["member"] == "${google_service_account.invoker.member}"
    assert _unquote(invoker["role"]) == "roles/run.invoker"
    # On the function's own Cloud Run service only.
    assert invoker["name"] == "${google_cloudfunctions2_function.this.service_config[0].service}"


def test_no_secret_value_in_state_by_default(rotator):
    version = rotator[("google_secret_manager_secret_version", "this")]
    assert version["for_each"].startswith("${var.secret_values_version == null ? {}")
    assert "secret_data" not in version  # write-only arguments only
    assert {"secret_data_wo", "secret_data_wo_version"} <= version.keys()
    variables = {_unquote(k): v for block in _load(ROTATOR)["variable"] for k, v in block.items()}
    assert variables["secret_values"]["ephemeral"] is True
    assert variables["secret_values"]["sensitive"] is True
    assert variables["secret_values_version"]["default"] is None


@pytest.mark.parametrize("directory", TERRAFORM_DIRS, ids=lambda d: str(d.relative_to(INFRA)))
def test_no_broad_roles_and_nothing_public(directory):
    for (rtype, name), body in _resources(directory).items():
        members = json.dumps([body.get("member"), body.get("members")])
        assert not any(public in members for public in PUBLIC_MEMBERS), (rtype, name)
        role = _unquote(body.get("role", ""))
        assert role not in BROAD_ROLES, (rtype, name)
        if rtype == "google_project_iam_custom_role":
            # A role definition, not a grant: kubeconfig renewal's list and disable, bound on one secret only.
            permissions = sorted(_unquote(p) for p in body["permissions"])
            assert permissions == ["secretmanager.versions.disable", "secretmanager.versions.list"]
        elif rtype.startswith("google_project_iam"):
            # Project-level grants: Cloud Build's log writer, and object read conditioned on Google's one
            # gcf-v2-sources bucket. Never secret access, never an unconditioned storage role.
            assert (rtype, name, role) in {
                ("google_project_iam_member", "build_log_writer", "roles/logging.logWriter"),
                ("google_project_iam_member", "build_gcf_sources_reader", "roles/storage.objectViewer"),
            }
            if role.startswith("roles/storage."):
                assert "local.gcf_sources_bucket" in json.dumps(body["condition"]), (rtype, name)
        assert not rtype.endswith(("_iam_policy", "_iam_binding")), "authoritative IAM would drop others' grants"


def test_ingress_defaults_to_all_with_iam_only_invocation():
    variables = {_unquote(k): v for block in _load(ROTATOR)["variable"] for k, v in block.items()}
    function_type = variables["function"]["type"]
    assert re.search(
        r"ingress_settings\s*=\s*optional\(string,\s*\"ALLOW_ALL\"\)", json.dumps(function_type).replace('\\"', '"')
    )
    assert not _of_type(ROTATOR, "google_cloudfunctions2_function_iam_member")


def test_every_variable_is_described_typed_and_every_output_described():
    for directory in TERRAFORM_DIRS:
        loaded = _load(directory)
        for block in loaded.get("variable", []):
            for name, body in block.items():
                assert body.get("description"), (directory, name)
                assert "type" in body, (directory, name)
        for block in loaded.get("output", []):
            for name, body in block.items():
                assert body.get("description"), (directory, name)


def test_module_outputs_named_noun_attribute():
    outputs = {_unquote(k) for block in _load(ROTATOR)["output"] for k in block}
    assert {
        "function_url",
        "runtime_service_account_email",
        "invoker_service_account_email",
        "scheduler_job_name",
        "crusoe_credentials_secret_id",
        "kubeconfig_secret_id",
    } <= outputs


def test_source_object_name_carries_the_source_hash():
    loaded = _load(ROTATOR)
    local_values = {k: v for block in loaded["locals"] for k, v in block.items()}
    assert "${substr(local.source_hash, 0, 16)}" in local_values["source_object"]
    assert "requirements.txt" in json.dumps(local_values["source_hash"])
    obj = _resources(ROTATOR)[("google_storage_bucket_object", "source")]
    assert obj["name"] == "${local.source_object}"


def test_provider_versions_pinned():
    for directory in TERRAFORM_DIRS:
        terraform = _load(directory)["terraform"][0]
        (providers,) = terraform["required_providers"]
        for name, spec in providers.items():
            if not isinstance(spec, dict):
                continue  # the parser's own markers
            version = _unquote(spec["version"])
            assert re.fullmatch(r"(>= \d+\.\d+\.\d+, < \d+\.0\.0|\d+\.\d+\.\d+)", version), (directory, name)


def test_cluster_rbac_reads_the_shared_rules_file():
    text = (CLUSTER_RBAC / "main.tf").read_text(encoding="utf-8")
    assert 'jsondecode(file("${path.module}/rules.json"))' in text
    # Cluster-wide objects exist only in the all_namespaces mode (globs, '*', label selectors).
    for rtype in ("kubernetes_cluster_role_v1", "kubernetes_cluster_role_binding_v1"):
        assert _of_type(CLUSTER_RBAC, rtype)["this"]["count"] == "${var.all_namespaces ? 1 : 0}"


def test_readme_tables_are_generated_from_the_hcl():
    spec = importlib.util.spec_from_file_location("infra_docs", INFRA / "tools" / "docs.py")
    assert spec is not None
    assert spec.loader is not None
    docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(docs)
    readme = (INFRA / "README.md").read_text(encoding="utf-8")
    assert docs.render(readme) == readme, "run: python infra/tools/docs.py"
