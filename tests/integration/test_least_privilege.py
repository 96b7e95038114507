"""Least privilege, asked of the real apiserver: what may the rotator's ServiceAccount do, and what not?

The account is bound exactly as ``infra/rbac/render.py`` binds it (``devkit.kube.rotator_service_account``),
and each row is a SelfSubjectAccessReview sent *as that account*, so the answer is the apiserver's RBAC
authorizer's, groups included. The table is per RBAC mode: today the per-namespace Roles
(``namespaced``); another mode (a ClusterRole for fleets) adds its own rows and a ``grant`` fixture branch.

Also after a real rotation: no Kubernetes Event and no ServiceAccount object holds a credential.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from kubernetes import client

from devkit.kube import ServiceAccountAccess
from tests.integration.conftest import assert_no_leak, secret_values

pytestmark = pytest.mark.integration

TARGET = "target"  # a namespace the rotator serves
SECOND = "second"  # another one
OTHER = "other"  # a namespace it does not serve
OWN = "own"  # the ServiceAccount's own namespace
CLUSTER = ""  # cluster-scoped (no namespace)
SECRET = "crusoe-image-pull-secrets"


@dataclass(frozen=True)
class Ask:
    """One question: may the account ``verb`` ``resource`` (``name``) in ``where``?"""

    verb: str
    resource: str
    where: str = TARGET
    name: str | None = None
    group: str = ""
    subresource: str | None = None

    def __str__(self) -> str:
        target = "/".join(filter(None, (self.resource, self.name, self.subresource)))
        return f"{self.verb} {self.group or 'core'}:{target} in {self.where or 'cluster'}"


ALLOWED = {
    "namespaced": [
        Ask("get", "secrets", name=SECRET),
        Ask("get", "secrets", SECOND, name=SECRET),
        Ask("patch", "secrets", name=SECRET),
        Ask("patch", "secrets", SECOND, name=SECRET),
        Ask("create", "secrets", name=SECRET),  # server-side apply of a new secret is authorised with its name
        Ask("create", "events", group="events.k8s.io"),  # an Event per namespace outcome (names are generated)
    ],
}

DENIED = {
    "namespaced": [
        # other secrets, and listing them
        Ask("get", "secrets", name="other-secret"),
        Ask("patch", "secrets", name="other-secret"),
        Ask("list", "secrets"),
        Ask("watch", "secrets"),
        Ask("create", "secrets"),  # a plain POST carries no name: not granted
        Ask("update", "secrets", name=SECRET),  # the function only reads and applies: no whole-object PUT
        Ask("delete", "secrets", name=SECRET),
        Ask("deletecollection", "secrets"),
        # the same secret where the rotator does not serve
        Ask("get", "secrets", OTHER, name=SECRET),
        Ask("patch", "secrets", OTHER, name=SECRET),
        Ask("create", "secrets", OTHER, name=SECRET),
        Ask("get", "secrets", OWN, name=SECRET),
        Ask("list", "secrets", CLUSTER),
        Ask("get", "secrets", CLUSTER, name=SECRET),
        # privilege escalation
        Ask("escalate", "roles", group="rbac.authorization.k8s.io"),
        Ask("bind", "roles", group="rbac.authorization.k8s.io"),
        Ask("patch", "roles", name="ccr-pull-secret-rotator", group="rbac.authorization.k8s.io"),
        Ask("create", "rolebindings", group="rbac.authorization.k8s.io"),
        Ask("escalate", "clusterroles", CLUSTER, group="rbac.authorization.k8s.io"),
        Ask("bind", "clusterroles", CLUSTER, group="rbac.authorization.k8s.io"),
        Ask("list", "clusterroles", CLUSTER, group="rbac.authorization.k8s.io"),
        Ask("create", "clusterrolebindings", CLUSTER, group="rbac.authorization.k8s.io"),
        Ask("impersonate", "users", CLUSTER),
        Ask("impersonate", "groups", CLUSTER),
        Ask("impersonate", "serviceaccounts"),
        Ask("create", "serviceaccounts", OWN, name="ccr-pull-secret-rotator", subresource="token"),
        Ask("create", "certificatesigningrequests", CLUSTER, group="certificates.k8s.io"),
        # workloads and the cluster around them
        Ask("create", "pods", subresource="exec", name="any"),
        Ask("get", "pods", subresource="exec", name="any"),
        Ask("list", "pods"),
        Ask("create", "pods"),
        Ask("get", "configmaps", name="any"),
        Ask("list", "serviceaccounts"),
        Ask("list", "events"),
        Ask("list", "nodes", CLUSTER),
        Ask("get", "nodes", CLUSTER, name="any"),
        Ask("list", "namespaces", CLUSTER),
        Ask("get", "namespaces", CLUSTER, name="placeholder"),
        Ask("list", "customresourcedefinitions", CLUSTER, group="apiextensions.k8s.io"),
        Ask("create", "validatingwebhookconfigurations", CLUSTER, group="admissionregistration.k8s.io"),
        Ask("*", "*", CLUSTER, group="*"),
        Ask("*", "*", group="*"),
    ],
}

# Namespaces chosen by glob, '*' or a label selector: one ClusterRole, the same secret verbs narrowed to the
# one name but in every namespace (the documented trade-off), plus list on namespaces.
ALLOWED["selection"] = [
    *ALLOWED["namespaced"],
    Ask("get", "secrets", OTHER, name=SECRET),  # namespaces created later are targets too
    Ask("patch", "secrets", OTHER, name=SECRET),
    Ask("list", "namespaces", CLUSTER),
]
DENIED["selection"] = [
    ask
    for ask in DENIED["namespaced"]
    if not (ask.where == OTHER and ask.name == SECRET)
    and ask != Ask("list", "namespaces", CLUSTER)
    and not (ask.resource == "secrets" and ask.name == SECRET and ask.verb in {"get", "patch", "create"})
]
# PATCH_SERVICE_ACCOUNTS=default: get and patch on that one service account, nothing else of service accounts.
ALLOWED["service-accounts"] = [
    *ALLOWED["namespaced"],
    Ask("get", "serviceaccounts", name="default"),
    Ask("patch", "serviceaccounts", name="default"),
]
DENIED["service-accounts"] = [
    *DENIED["namespaced"],
    Ask("get", "serviceaccounts", name="builder"),
    Ask("patch", "serviceaccounts", name="builder"),
    Ask("list", "serviceaccounts"),
    Ask("create", "serviceaccounts"),
    Ask("delete", "serviceaccounts", name="default"),
    Ask("patch", "serviceaccounts", OTHER, name="default"),
]

MODES = sorted(ALLOWED)


@dataclass
class Subject:
    """The rotator's account in one RBAC mode, and the namespaces the table's placeholders stand for."""

    account: ServiceAccountAccess
    namespaces: dict[str, str]

    def may(self, ask: Ask) -> bool:
        attributes = client.V1ResourceAttributes(
            verb=ask.verb,
            group=ask.group,
            resource=ask.resource,
            subresource=ask.subresource,
            name=ask.name,
            namespace=self.namespaces[ask.where] or None,
        )
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes)
        )
        with self.account.api_client() as api:
            answer = client.AuthorizationV1Api(api).create_self_subject_access_review(review)
        return bool(answer.status.allowed)


def _namespaced(rotator_account_factory, targets: list[str]) -> ServiceAccountAccess:
    """Per target namespace a Role and a RoleBinding, from ``infra/rbac/render.py``."""
    return rotator_account_factory(targets, secret_name=SECRET)


def _selection(rotator_account_factory, targets: list[str]) -> ServiceAccountAccess:
    """One ClusterRole and ClusterRoleBinding (``render.py --all-namespaces``)."""
    return rotator_account_factory(targets, secret_name=SECRET, all_namespaces=True)


def _service_accounts(rotator_account_factory, targets: list[str]) -> ServiceAccountAccess:
    """Per-namespace Roles that may also patch the named service account (``--service-accounts default``)."""
    return rotator_account_factory(targets, secret_name=SECRET, service_accounts=["default"])


#: How each RBAC mode binds the account.
GRANTS = {"namespaced": _namespaced, "selection": _selection, "service-accounts": _service_accounts}


@pytest.fixture(params=MODES)
def subject(request, namespace_factory, rotator_account_factory) -> Subject:
    target, second, other = (namespace_factory(prefix=p) for p in ("lp-target", "lp-second", "lp-other"))
    account = GRANTS[request.param](rotator_account_factory, [target, second])
    namespaces = {TARGET: target, SECOND: second, OTHER: other, OWN: account.namespace, CLUSTER: ""}
    return Subject(account, namespaces)


def test_least_privilege_table(subject, request):
    mode = request.node.callspec.params["subject"]
    wrong = [f"allowed but should not be: {ask}" for ask in DENIED[mode] if subject.may(ask)]
    wrong += [f"denied but needed: {ask}" for ask in ALLOWED[mode] if not subject.may(ask)]
    assert wrong == []


def _rules(account: ServiceAccountAccess, namespace: str) -> set[tuple[str, str, str, str]]:
    """Everything ``account`` may do in ``namespace`` as the apiserver lists it: (group, resource, name, verb)."""
    review = client.V1SelfSubjectRulesReview(spec=client.V1SelfSubjectRulesReviewSpec(namespace=namespace))
    with account.api_client() as api:
        rules = client.AuthorizationV1Api(api).create_self_subject_rules_review(review).status.resource_rules
    return {
        (group, resource, name, verb)
        for rule in rules
        for group in rule.api_groups or [""]
        for resource in rule.resources or [""]
        for name in rule.resource_names or ["*"]
        for verb in rule.verbs
    }


def _unbound_account(rotator_account_factory, namespace: str) -> ServiceAccountAccess:
    """A ServiceAccount without any binding: what every authenticated identity may do anyway."""

    def account_only(namespaces, secret_name, account_namespace, account_name, **_options):
        return [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account_name, "namespace": account_namespace},
            }
        ]

    return rotator_account_factory([namespace], service_account_name="nobody", render=account_only)


@pytest.mark.parametrize("subject", ["namespaced"], indirect=True)
def test_least_privilege_rules_in_a_target_namespace_are_exactly_the_secret_rules(subject, rotator_account_factory):
    target = subject.namespaces[TARGET]
    baseline = _rules(_unbound_account(rotator_account_factory, target), target)
    extra = _rules(subject.account, target) - baseline
    secret_rules = {("", "secrets", SECRET, verb) for verb in ("get", "patch", "create")}
    assert extra == secret_rules | {("events.k8s.io", "events", "*", "create")}  # one Event per outcome
    assert _rules(subject.account, subject.namespaces[OTHER]) == baseline


def _namespaced_objects(api: client.ApiClient, namespaces: list[str]) -> list[str]:
    core = client.CoreV1Api(api)
    events = client.EventsV1Api(api)
    listings = []
    for namespace in namespaces:
        listings += [
            core.list_namespaced_event(namespace),
            events.list_namespaced_event(namespace),
            core.list_namespaced_service_account(namespace),
        ]
    return [json.dumps(api.sanitize_for_serialization(listing)) for listing in listings]


def test_leak_scan_covers_events_and_service_accounts_after_a_rotation(deployment, invoke, crusoe, kube_admin):
    assert invoke().status_code == 200
    assert invoke().status_code == 200  # a second run revokes, updates, and might leave events behind
    namespaces = [*deployment.namespaces, deployment.account.namespace, "default", "kube-system"]
    texts = _namespaced_objects(kube_admin, namespaces)
    secrets = client.CoreV1Api(kube_admin)
    for namespace in deployment.namespaces:
        metadata = secrets.read_namespaced_secret(SECRET, namespace).metadata
        texts.append(json.dumps(kube_admin.sanitize_for_serialization(metadata)))
    assert len(texts) == 3 * len(namespaces) + len(deployment.namespaces)
    assert_no_leak(texts, secret_values(deployment, crusoe))
