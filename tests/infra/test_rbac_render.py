"""The plain RBAC manifests: least privilege, nothing cluster-wide, one source of truth with Terraform."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

if TYPE_CHECKING:
    from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
RENDER_PY = ROOT / "infra" / "rbac" / "render.py"
RULES_JSON = ROOT / "infra" / "modules" / "cluster-rbac" / "rules.json"


def _load_render() -> ModuleType:
    spec = importlib.util.spec_from_file_location("infra_rbac_render", RENDER_PY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_mod = _load_render()


def _objects(namespaces: list[str] | None = None) -> list[dict]:
    return render_mod.render(
        namespaces or ["team-a", "team-b"],
        "crusoe-image-pull-secrets",
        "crusoe-system",
        "ccr-pull-secret-rotator",
    )


def test_render_objects_are_service_account_then_role_and_binding_per_namespace():
    objects = _objects()
    kinds = [(o["kind"], o["metadata"]["namespace"]) for o in objects]
    assert kinds == [
        ("ServiceAccount", "crusoe-system"),
        ("Role", "team-a"),
        ("RoleBinding", "team-a"),
        ("Role", "team-b"),
        ("RoleBinding", "team-b"),
    ]


def test_render_with_names_is_nothing_cluster_wide():
    for obj in _objects():
        assert obj["kind"] in {"ServiceAccount", "Role", "RoleBinding"}
        assert obj["metadata"].get("namespace")
        if obj["kind"] == "RoleBinding":
            assert obj["roleRef"]["kind"] == "Role"


def test_render_read_and_write_verbs_are_narrowed_to_the_secret_name():
    for role in (o for o in _objects() if o["kind"] == "Role"):
        secret_rules = [rule for rule in role["rules"] if rule["resources"] == ["secrets"]]
        for rule in secret_rules:
            assert rule["apiGroups"] == [""]
            assert "*" not in rule["verbs"]
            forbidden = {"list", "watch", "update", "delete", "deletecollection", "escalate", "bind"}
            assert not forbidden & set(rule["verbs"])
            assert rule["resourceNames"] == ["crusoe-image-pull-secrets"]
        granted = {verb for rule in secret_rules for verb in rule["verbs"]}
        assert granted == {"get", "patch", "create"}  # no update: the function never PUTs


def test_render_grants_only_event_creation_besides_the_secret():
    role = next(o for o in _objects() if o["kind"] == "Role")
    others = [rule for rule in role["rules"] if rule["resources"] != ["secrets"]]
    assert others == [{"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]}]


def test_render_narrowing_follows_rules_json():
    rules = json.loads(RULES_JSON.read_text())["rules"]
    (create_rule,) = [r for r in rules if r["resources"] == ["secrets"] and "create" in r["verbs"]]
    role = next(o for o in _objects() if o["kind"] == "Role")
    (rendered,) = [r for r in role["rules"] if r["resources"] == ["secrets"] and "create" in r["verbs"]]
    assert ("resourceNames" in rendered) is (create_rule["narrow_to"] == "secret_name")
    assert all(rule["why"] for rule in rules)


def test_render_named_service_accounts_are_narrowed_to_their_names():
    objects = render_mod.render(["a"], "pull", "crusoe-system", "rotator", service_accounts=["default", "builder"])
    (rule,) = [r for r in objects[1]["rules"] if r["resources"] == ["serviceaccounts"]]
    assert rule == {
        "apiGroups": [""],
        "resources": ["serviceaccounts"],
        "verbs": ["get", "patch"],
        "resourceNames": ["default", "builder"],
    }


def test_render_every_service_account_needs_list_and_no_names():
    objects = render_mod.render(["a"], "pull", "crusoe-system", "rotator", service_accounts=["*"])
    (rule,) = [r for r in objects[1]["rules"] if r["resources"] == ["serviceaccounts"]]
    assert rule == {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "list", "patch"]}


def test_render_all_namespaces_is_one_cluster_role_narrowed_to_the_secret_plus_namespace_listing():
    objects = render_mod.render([], "pull", "crusoe-system", "rotator", all_namespaces=True)
    assert [o["kind"] for o in objects] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    role = objects[1]
    assert role["metadata"]["name"] == "rotator-crusoe-system"
    assert "namespace" not in role["metadata"]
    assert {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]} in role["rules"]
    assert all(r["resourceNames"] == ["pull"] for r in role["rules"] if r["resources"] == ["secrets"])
    assert objects[2]["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "rotator-crusoe-system",
    }


def test_render_binding_points_at_the_service_account_in_its_own_namespace():
    for binding in (o for o in _objects() if o["kind"] == "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "ccr-pull-secret-rotator", "namespace": "crusoe-system"},
        ]
        assert binding["roleRef"]["name"] == binding["metadata"]["name"]


def test_render_deduplicates_namespaces_keeping_order():
    objects = _objects(["b", "a", "b", " a "])
    assert [o["metadata"]["namespace"] for o in objects if o["kind"] == "Role"] == ["b", "a"]


@pytest.mark.parametrize(
    ("namespaces", "secret"),
    [([], "ok"), ([""], "ok"), (["Bad_NS"], "ok"), (["a"], "Bad/Name"), (["a" * 64], "ok")],
)
def test_render_rejects_invalid_names(namespaces, secret):
    with pytest.raises(ValueError, match=r"namespace|secret name"):
        render_mod.render(namespaces, secret, "crusoe-system", "ccr-pull-secret-rotator")


def test_render_cli_prints_multi_document_yaml():
    out = subprocess.run(
        [sys.executable, str(RENDER_PY), "--namespaces", "a,b", "--secret-name", "pull"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs] == ["ServiceAccount", "Role", "RoleBinding", "Role", "RoleBinding"]
    assert docs[1]["rules"][0]["resourceNames"] == ["pull"]


def test_render_cli_rejects_empty_namespaces():
    proc = subprocess.run(
        [sys.executable, str(RENDER_PY), "--namespaces", ","],
        check=False,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "namespace" in proc.stderr


def test_render_self_renewal_is_off_by_default():
    assert not [o for o in _objects() if o["metadata"]["name"].endswith("-self-renewal")]


@pytest.mark.parametrize("all_namespaces", [False, True])
def test_render_self_renewal_lets_the_account_request_tokens_for_itself_only_in_its_own_namespace(all_namespaces):
    objects = render_mod.render(
        ["team-a"],
        "crusoe-image-pull-secrets",
        "crusoe-system",
        "ccr-pull-secret-rotator",
        all_namespaces=all_namespaces,
        self_renewal=True,
    )
    role, binding = [o for o in objects if o["metadata"]["name"] == "ccr-pull-secret-rotator-self-renewal"]
    assert (role["kind"], role["metadata"]["namespace"]) == ("Role", "crusoe-system")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["serviceaccounts/token"],
            "verbs": ["create"],
            "resourceNames": ["ccr-pull-secret-rotator"],
        }
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "ccr-pull-secret-rotator", "namespace": "crusoe-system"}
    ]
    others = [o for o in objects if o not in (role, binding) and o["kind"] != "ServiceAccount"]
    assert all("serviceaccounts/token" not in r["resources"] for o in others for r in o.get("rules", []))


def test_render_cli_self_renewal_flag():
    done = subprocess.run(
        [sys.executable, str(RENDER_PY), "--namespaces", "team-a", "--self-renewal"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = [doc["metadata"]["name"] for doc in yaml.safe_load_all(done.stdout)]
    assert names.count("ccr-pull-secret-rotator-self-renewal") == 2
