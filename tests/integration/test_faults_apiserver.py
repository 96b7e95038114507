"""Faults between the function and kube-apiserver, made exact by the project's fault proxy (issue 9).

The function reaches the real apiserver through ``devkit.faultproxy.FaultProxy`` (its kubeconfig, stored in the
Secret Manager server, points there); the checks read the cluster directly as admin. Every scenario checks:
the answer is 5xx and names what was and was not written, nothing is revoked, the next run completes and
cleans up, and (the ``invoke`` fixture) no credential appears in any response or log line.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client

from devkit.faultproxy import FaultProxy
from devkit.pullsecrets import read_held, summary
from tests.integration.conftest import PROJECT, REGISTRY

pytestmark = pytest.mark.integration
OLDER = "ccr-rotator-20261101T000000Z-0a0a0a"


@pytest.fixture
def proxy(control_plane, deployment, secret_manager):
    with FaultProxy(control_plane.server, control_plane.credentials.ca_cert) as fault_proxy:
        kubeconfig = fault_proxy.kubeconfig(deployment.account.kubeconfig)
        secret_manager.add_version(PROJECT, "rotator-kubeconfig", kubeconfig.encode())
        yield fault_proxy


def aliases(kube_admin, namespaces):
    return {namespace: getattr(read_held(kube_admin, namespace, REGISTRY), "alias", None) for namespace in namespaces}


def written(body):
    return {n["namespace"] for n in body["namespaces"] if n["result"] in ("created", "updated")}


def not_written(body):
    return {n["namespace"] for n in body["namespaces"] if n["result"] == "failed"}


def assert_next_run_cleans_up(invoke, crusoe, kube_admin, namespaces):
    """The run after a fault: ok, every namespace holds its live token, no more tokens than the grace window."""
    response = invoke()
    body = response.get_json()
    assert response.status_code == 200, body
    alias = body["token"]["alias"]
    assert set(aliases(kube_admin, namespaces).values()) == {alias}
    for namespace in namespaces:
        held = read_held(kube_admin, namespace, REGISTRY)
        assert held is not None
        assert held.password is not None
        assert crusoe.is_live(held.password)
    owned = [key for key in crusoe.tokens() if key.alias.startswith("ccr-rotator-2")]
    # The current token, one previous (the grace window), and at most the crashed run's own token, which is
    # kept while a run may still be writing it (RUN_DEADLINE_SECONDS plus a margin) and removed by a later run
    # (tests/integration/test_rotation.py proves that part).
    assert len(owned) <= 3, [key.alias for key in owned]
    return body


@pytest.mark.parametrize("passed", [0, 1, 2])
def test_apiserver_cut_after_k_of_n_writes_names_what_was_written_and_revokes_nothing(
    deployment, invoke, crusoe, kube_admin, proxy, scenario, passed
):
    record = scenario(
        f"apiserver cut after {passed} of 3 writes: 5xx naming exactly {passed} written, nothing revoked; "
        "the next run completes and cleans up"
    )
    first = invoke().get_json()["token"]["alias"]
    crusoe.seed_token(OLDER, created_at=datetime.now(UTC) - timedelta(days=20))
    proxy.cut_after(passed)
    response = invoke()
    body = response.get_json()
    assert response.status_code >= 500, body
    assert len(written(body)) == passed
    assert not_written(body) == set(deployment.namespaces) - written(body)
    assert body["revoked"] == []
    assert crusoe.deleted() == []
    held = aliases(kube_admin, deployment.namespaces)
    assert {n for n, alias in held.items() if alias == body["token"]["alias"]} == written(body)
    assert {n for n, alias in held.items() if alias == first} == not_written(body)
    cuts = [r for r in proxy.requests if r.status == 0]
    proxy.clear()
    after = assert_next_run_cleans_up(invoke, crusoe, kube_admin, deployment.namespaces)
    assert OLDER in after["revoked"]
    record.observed(f"{summary(response.status_code, body)}, {len(cuts)} writes cut; next: {summary(200, after)}")


@pytest.mark.parametrize(
    "case",
    [
        (429, 2, "1", True),
        (503, 2, "1", True),
        (500, None, "0", False),
        (503, None, "0", False),
        (429, None, "0", False),
    ],
)
def test_apiserver_throttling_and_server_errors_honour_retry_after_or_fail_cleanly(
    deployment, invoke, crusoe, kube_admin, proxy, scenario, case
):
    status, times, retry_after, ok = case
    lasting = "every write" if times is None else f"the first {times} writes"
    record = scenario(
        f"apiserver answers {status} (Retry-After: {retry_after}) to {lasting}: "
        + ("retried after the server's wait, the run succeeds" if ok else "5xx, nothing revoked, next run cleans up")
    )
    first = invoke().get_json()["token"]["alias"]
    proxy.answer(status, times=times, retry_after=retry_after)
    response = invoke()
    body = response.get_json()
    faulted = len([r for r in proxy.requests if r.status == status])
    proxy.clear()
    if ok:
        assert response.status_code == 200, body
        assert body["duration_ms"] >= 1000  # at least one write waited the server's Retry-After of 1 s
        assert set(aliases(kube_admin, deployment.namespaces).values()) == {body["token"]["alias"]}
        record.observed(f"{summary(200, body)} after {faulted} answers of {status}, in {body['duration_ms']} ms")
        return
    assert response.status_code >= 500, body
    assert written(body) == set()
    assert body["revoked"] == []
    assert crusoe.deleted() == []
    assert set(aliases(kube_admin, deployment.namespaces).values()) == {first}
    after = assert_next_run_cleans_up(invoke, crusoe, kube_admin, deployment.namespaces)
    # The failed run's undelivered token is kept while a run may still write it; a later run removes it.
    record.observed(
        f"{summary(response.status_code, body)} after {faulted} answers of {status}; next: {summary(200, after)}"
    )


def test_apiserver_slower_than_the_client_timeout_fails_the_run_and_revokes_nothing(
    deployment, invoke, crusoe, kube_admin, proxy, scenario, monkeypatch
):
    record = scenario(
        "apiserver applies each write but answers after the client's timeout: 5xx (the writes are unconfirmed), "
        "nothing revoked, the next run completes and cleans up"
    )
    monkeypatch.setattr("rotator.kube.TIMEOUT", (5.0, 0.5))
    invoke()
    gate = proxy.hold(forward_first=True)
    response = invoke()
    body = response.get_json()
    gate.release()
    proxy.clear()
    assert response.status_code >= 500, body
    assert not_written(body) == set(deployment.namespaces)
    assert body["revoked"] == []
    assert crusoe.deleted() == []
    assert gate.count >= len(deployment.namespaces)
    after = assert_next_run_cleans_up(invoke, crusoe, kube_admin, deployment.namespaces)
    record.observed(f"{summary(response.status_code, body)}, {gate.count} answers held; next: {summary(200, after)}")


def test_a_namespace_deleted_mid_run_is_skipped_and_the_others_are_written(
    deployment, invoke, crusoe, kube_admin, proxy, scenario, monkeypatch
):
    record = scenario(
        "a target namespace is deleted just before its write: that namespace is reported skipped (it is being "
        "deleted, nothing can pull there), the others are written, the run succeeds; the next run cleans up"
    )
    crusoe.seed_token(OLDER, created_at=datetime.now(UTC) - timedelta(days=20))
    deleted: list[str] = []
    lock = threading.Lock()

    def delete_this_namespace(_method: str, path: str) -> None:
        namespace = path.split("/")[4]  # /api/v1/namespaces/<namespace>/secrets/<name>
        with lock:
            deleted.append(namespace)
        client.CoreV1Api(kube_admin).delete_namespace(namespace)

    proxy.before(delete_this_namespace, times=1)
    response = invoke()
    body = response.get_json()
    assert response.status_code == 200, body
    [gone] = deleted
    assert not_written(body) == set()
    assert {n["namespace"] for n in body["namespaces"] if n["result"] == "skipped"} == {gone}
    assert written(body) == set(deployment.namespaces) - {gone}
    proxy.clear()
    remaining = [n for n in deployment.namespaces if n != gone]
    monkeypatch.setenv("TARGET_NAMESPACES", ",".join(remaining))
    after = assert_next_run_cleans_up(invoke, crusoe, kube_admin, remaining)
    assert OLDER in body["revoked"] + after["revoked"]
    record.observed(f"{summary(response.status_code, body)}; next (without it): {summary(200, after)}")
