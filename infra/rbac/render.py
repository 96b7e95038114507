# ruff: noqa: INP001  # a command-line script beside data files, not part of a package
"""Render the rotator's least-privilege Kubernetes RBAC as plain objects or multi-document YAML.

The permissions come from ``infra/modules/cluster-rbac/rules.json``, the same file that the Terraform
module ``infra/modules/cluster-rbac`` reads, so kubectl users and Terraform users get identical RBAC.

Usage::

    python infra/rbac/render.py --namespaces team-a,team-b > rbac.yaml
    kubectl apply -f rbac.yaml

    python infra/rbac/render.py --all-namespaces --service-accounts default > rbac.yaml

Objects: one ServiceAccount (in its own namespace, which must exist), then either

- per target namespace a Role with the namespace rules of ``rules.json`` (get/patch/create on secrets narrowed to
  the one pull secret by ``resourceNames``, Events, and the service account rules when ``--service-accounts`` is
  given) and a RoleBinding of that Role to the ServiceAccount: nothing cluster-wide; or
- with ``--all-namespaces`` (namespaces chosen by glob, ``*`` or label selector, including ones that do not
  exist yet): one ClusterRole with the same rules plus ``list`` on namespaces, and one ClusterRoleBinding.
  The secret verbs stay narrowed to the one secret name, but in every namespace of the cluster.

With ``--self-renewal`` (the function's RENEW_KUBECONFIG), also a Role and RoleBinding named
``<account>-self-renewal`` in the ServiceAccount's own namespace: ``create`` on ``serviceaccounts/token``
narrowed to the account's own name, so the function can renew its own token and no other.
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


def _active(service_accounts: list[str], *, all_namespaces: bool, self_renewal: bool = False) -> set[str]:
    """The ``when`` values of rules.json granted in this mode."""
    active = {"always", "self_renewal"} if self_renewal else {"always"}
    if service_accounts:
        active.add("all_service_accounts" if "*" in service_accounts else "named_service_accounts")
    if all_namespaces:
        active.add("namespace_selection")
    return active


def policy_rules(
    secret_name: str,
    rules: list[dict[str, Any]] | None = None,
    *,
    service_accounts: list[str] | None = None,
    active: set[str] | None = None,
    own_name: str = DEFAULT_SERVICE_ACCOUNT_NAME,
) -> list[dict[str, Any]]:
    """Return the rules granted in mode ``active`` for ``secret_name`` as Kubernetes PolicyRule dicts."""
    source = load_rules()["rules"] if rules is None else rules
    modes = active if active is not None else {"always"}
    names = {"secret_name": [secret_name], "service_accounts": list(service_accounts or []), "own_name": [own_name]}
    out: list[dict[str, Any]] = []
    for rule in source:
        if rule["when"] not in modes:
            continue
        policy: dict[str, Any] = {
            "apiGroups": list(rule["api_groups"]),
            "resources": list(rule["resources"]),
            "verbs": list(rule["verbs"]),
        }
        if rule["narrow_to"] is not None:
            policy["resourceNames"] = list(names[rule["narrow_to"]])
        out.append(policy)
    return out


def render(
    namespaces: list[str],
    secret_name: str,
    service_account_namespace: str,
    service_account_name: str,
    *,
    service_accounts: list[str] | None = None,
    all_namespaces: bool = False,
    self_renewal: bool = False,
) -> list[dict[str, Any]]:
    """Return the ServiceAccount, then a Role and RoleBinding per namespace (or one ClusterRole and binding).

    ``self_renewal`` adds a Role and RoleBinding in the account's own namespace that let it request tokens for
    itself (TokenRequest), for RENEW_KUBECONFIG.

    ``all_namespaces`` is the mode for namespaces chosen by glob, ``*`` or label selector. Namespaces are
    de-duplicated keeping their order. Raises ``ValueError`` on an empty namespace list (without
    ``all_namespaces``) or a name Kubernetes would reject.
    """
    targets = list(dict.fromkeys(ns.strip() for ns in namespaces if ns.strip()))
    if not targets and not all_namespaces:
        raise ValueError("at least one target namespace is required (or all_namespaces)")
    for ns in targets:
        _check_label(ns, "namespace")
    _check_subdomain(secret_name, "secret name")
    _check_label(service_account_namespace, "service account namespace")
    _check_label(service_account_name, "service account name")
    accounts = list(dict.fromkeys(service_accounts or []))
    for named in accounts:
        if named != "*":
            _check_subdomain(named, "service account")
    if "*" in accounts and len(accounts) > 1:
        raise ValueError("service accounts: '*' stands alone (every service account)")

    data = load_rules()
    labels: dict[str, str] = dict(data["labels"])
    active = _active(accounts, all_namespaces=all_namespaces, self_renewal=self_renewal)
    rules = policy_rules(secret_name, data["rules"], service_accounts=accounts, active=active)
    own = policy_rules(secret_name, data["own_namespace_rules"], active=active, own_name=service_account_name)
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": service_account_name, "namespace": service_account_namespace, "labels": dict(labels)},
        # The rotator runs outside the cluster with a bound token made by `kubectl create token`;
        # no pod uses this account, so never mount its token anywhere.
        "automountServiceAccountToken": False,
    }
    subject = {"kind": "ServiceAccount", "name": service_account_name, "namespace": service_account_namespace}
    renewal = _bound("", service_account_namespace, own, labels, subject, suffix="-self-renewal") if own else []
    if all_namespaces:
        cluster_rules = policy_rules(secret_name, data["cluster_rules"], active=active)
        return [account, *_bound("Cluster", None, rules + cluster_rules, labels, subject), *renewal]
    objects: list[dict[str, Any]] = [account]
    for ns in targets:
        objects += _bound("", ns, rules, labels, subject)
    return objects + renewal


def _bound(
    scope: str,
    namespace: str | None,
    rules: list[dict[str, Any]],
    labels: dict[str, str],
    subject: dict[str, str],
    *,
    suffix: str = "",
) -> list[dict[str, Any]]:
    """A (Cluster)Role granting ``rules`` and the (Cluster)RoleBinding that gives it to the account."""

    def metadata() -> dict[str, Any]:
        meta: dict[str, Any] = {"name": subject["name"] + suffix, "labels": dict(labels)}
        if namespace is not None:
            meta["namespace"] = namespace
        return meta

    if scope:
        # Two rotators in one cluster (service accounts in different namespaces) must not share a ClusterRole.
        name = f"{subject['name']}-{subject['namespace']}"
        role_meta, binding_meta = {**metadata(), "name": name}, {**metadata(), "name": name}
    else:
        name, role_meta, binding_meta = subject["name"] + suffix, metadata(), metadata()
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": f"{scope}Role",
        "metadata": role_meta,
        "rules": [dict(rule) for rule in rules],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": f"{scope}RoleBinding",
        "metadata": binding_meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": f"{scope}Role", "name": name},
        "subjects": [dict(subject)],
    }
    return [role, binding]


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """Return the objects as one multi-document YAML stream for ``kubectl apply -f -``."""
    return yaml.safe_dump_all(objects, sort_keys=False, explicit_start=True)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: print the RBAC as multi-document YAML."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", default="", help="comma-separated target namespaces (Roles)")
    parser.add_argument(
        "--all-namespaces",
        action="store_true",
        help="one ClusterRole (+ list namespaces) for namespaces chosen by glob, '*' or label selector",
    )
    parser.add_argument(
        "--service-accounts",
        default="",
        help="PATCH_SERVICE_ACCOUNTS: comma-separated names, or '*' for every service account",
    )
    parser.add_argument(
        "--self-renewal",
        action="store_true",
        help="RENEW_KUBECONFIG: let the account request tokens for itself (a Role in its own namespace)",
    )
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
            service_accounts=[a.strip() for a in args.service_accounts.split(",") if a.strip()],
            all_namespaces=args.all_namespaces,
            self_renewal=args.self_renewal,
        )
    except ValueError as exc:
        parser.error(str(exc))
    sys.stdout.write(to_yaml(objects))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
