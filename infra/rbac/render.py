# ruff: noqa: INP001  # a command-line script beside data files, not part of a package
"""Render the rotator's least-privilege Kubernetes RBAC as plain objects or multi-document YAML.

The permissions come from ``infra/modules/cluster-rbac/rules.json``, the same file that the Terraform
module ``infra/modules/cluster-rbac`` reads, so kubectl users and Terraform users get identical RBAC.

Usage::

    python infra/rbac/render.py --namespaces team-a,team-b > rbac.yaml
    kubectl apply -f rbac.yaml

Objects: one ServiceAccount (in its own namespace, which must exist), and per target namespace a Role
allowing only the verbs of ``rules.json`` on secrets (get/patch/create narrowed to the one pull secret by
``resourceNames``) and a RoleBinding of that Role to the ServiceAccount. Nothing cluster-wide.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

RULES_FILE = Path(__file__).resolve().parent.parent / "modules" / "cluster-rbac" / "rules.json"

DEFAULT_SECRET_NAME = "crusoe-image-pull-secrets"
DEFAULT_SERVICE_ACCOUNT_NAMESPACE = "crusoe-system"
DEFAULT_SERVICE_ACCOUNT_NAME = "ccr-pull-secret-rotator"

# Kubernetes name rules: namespaces and object names used here are DNS-1123 labels (<= 63 chars);
# secret names may be DNS-1123 subdomains (<= 253 chars).
_MAX_LABEL = 63
_MAX_SUBDOMAIN = 253
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def load_rules(path: Path = RULES_FILE) -> dict[str, Any]:
    """Return the parsed rules file (labels and rules)."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _check_label(value: str, what: str) -> None:
    if len(value) > _MAX_LABEL or not _DNS1123_LABEL.match(value):
        raise ValueError(f"{what} {value!r} is not a valid Kubernetes name (DNS-1123 label)")


def _check_subdomain(value: str, what: str) -> None:
    if len(value) > _MAX_SUBDOMAIN or not _DNS1123_SUBDOMAIN.match(value):
        raise ValueError(f"{what} {value!r} is not a valid Kubernetes name (DNS-1123 subdomain)")


def policy_rules(secret_name: str, rules: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Return the Role's ``rules`` for ``secret_name`` as Kubernetes PolicyRule dicts."""
    source = load_rules()["rules"] if rules is None else rules
    out: list[dict[str, Any]] = []
    for rule in source:
        policy: dict[str, Any] = {
            "apiGroups": list(rule["api_groups"]),
            "resources": list(rule["resources"]),
            "verbs": list(rule["verbs"]),
        }
        if rule["narrow_to_secret_name"]:
            policy["resourceNames"] = [secret_name]
        out.append(policy)
    return out


def render(
    namespaces: list[str],
    secret_name: str,
    service_account_namespace: str,
    service_account_name: str,
) -> list[dict[str, Any]]:
    """Return the Kubernetes objects: the ServiceAccount, then a Role and a RoleBinding per namespace.

    Namespaces are de-duplicated keeping their order. Raises ``ValueError`` on an empty namespace list
    or a name Kubernetes would reject.
    """
    targets = list(dict.fromkeys(ns.strip() for ns in namespaces if ns.strip()))
    if not targets:
        raise ValueError("at least one target namespace is required")
    for ns in targets:
        _check_label(ns, "namespace")
    _check_subdomain(secret_name, "secret name")
    _check_label(service_account_namespace, "service account namespace")
    _check_label(service_account_name, "service account name")

    data = load_rules()
    labels: dict[str, str] = dict(data["labels"])
    rules = policy_rules(secret_name, data["rules"])
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": service_account_name, "namespace": service_account_namespace, "labels": dict(labels)},
        # The rotator runs outside the cluster with a bound token made by `kubectl create token`;
        # no pod uses this account, so never mount its token anywhere.
        "automountServiceAccountToken": False,
    }
    objects: list[dict[str, Any]] = [account]
    for ns in targets:
        objects += _role_and_binding(ns, rules, labels, service_account_namespace, service_account_name)
    return objects


def _role_and_binding(
    namespace: str,
    rules: list[dict[str, Any]],
    labels: dict[str, str],
    account_namespace: str,
    account_name: str,
) -> list[dict[str, Any]]:
    """The Role granting ``rules`` in ``namespace`` and the RoleBinding that gives it to the account."""

    def metadata() -> dict[str, Any]:
        return {"name": account_name, "namespace": namespace, "labels": dict(labels)}

    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(),
        "rules": [dict(rule) for rule in rules],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account_name},
        "subjects": [{"kind": "ServiceAccount", "name": account_name, "namespace": account_namespace}],
    }
    return [role, binding]


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """Return the objects as one multi-document YAML stream for ``kubectl apply -f -``."""
    return yaml.safe_dump_all(objects, sort_keys=False, explicit_start=True)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: print the RBAC as multi-document YAML."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", required=True, help="comma-separated target namespaces")
    parser.add_argument("--secret-name", default=DEFAULT_SECRET_NAME, help="the pull secret's name")
    parser.add_argument(
        "--service-account-namespace",
        default=DEFAULT_SERVICE_ACCOUNT_NAMESPACE,
        help="namespace of the rotator's ServiceAccount (must exist)",
    )
    parser.add_argument(
        "--service-account-name",
        default=DEFAULT_SERVICE_ACCOUNT_NAME,
        help="name of the ServiceAccount, the Roles and the RoleBindings",
    )
    args = parser.parse_args(argv)
    try:
        objects = render(
            args.namespaces.split(","),
            args.secret_name,
            args.service_account_namespace,
            args.service_account_name,
        )
    except ValueError as exc:
        parser.error(str(exc))
    sys.stdout.write(to_yaml(objects))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
