"""A pytest plugin with the fixtures for the real control plane (etcd + kube-apiserver).

Only the tiers that need a cluster load it (``tests/integration`` and ``tests/infra``, from their
``conftest.py``), so ``pytest tests/unit`` imports neither the Kubernetes client nor the platform.

``control_plane`` reuses the detached control plane of ``python -m devkit.cluster up`` when it is
running and ready (a fast edit-test loop), and otherwise starts its own for the session with the same
code. It never builds the binaries: a cold build takes far longer than a test's timeout, so
``python -m devkit.binaries build`` (which ``make test`` and CI run first) does that.

Without binaries the integration tests are skipped with the reason; with ``REQUIRE_CLUSTER=1`` (CI) they
fail instead, so a broken control plane can never pass as "skipped".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from devkit import kube
from devkit.binaries import BinaryBuildError, BinaryNotFoundError
from devkit.cluster import ClusterHandle, ControlPlane, ControlPlaneError, handle_from_state

LOG = logging.getLogger(__name__)


def unavailable(reason: str) -> None:
    """Skip for want of a control plane, or fail when REQUIRE_CLUSTER=1 (CI): a missing cluster never passes."""
    if os.environ.get("REQUIRE_CLUSTER") == "1":
        pytest.fail(f"REQUIRE_CLUSTER=1 but the control plane is unavailable: {reason}", pytrace=False)
    pytest.skip(f"no control plane: {reason}")


class Scenario:
    """What a fault scenario expects and what it observed, kept with the test's result.

    The values go to the test's ``user_properties`` (so ``--junitxml`` carries them): ``python -m
    devkit.reliability`` builds ``docs/reliability.md`` from them, so each scenario is written once, as a test.
    """

    def __init__(self, node: pytest.Item, expected: str) -> None:
        self._node = node
        node.user_properties.append(("expected", expected))

    def observed(self, text: str) -> None:
        """Record what actually happened (call once, with the facts the assertions checked)."""
        self._node.user_properties.append(("observed", text))


@pytest.fixture
def scenario(request: pytest.FixtureRequest) -> Callable[[str], Scenario]:
    """``scenario("what must happen")`` registers the test as a reliability scenario; see :class:`Scenario`."""
    node = request.node
    assert isinstance(node, pytest.Item)
    return lambda expected: Scenario(node, expected)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ClusterHandle]:
    """A running control plane for the whole session: reused from ``cluster up``, or started here."""
    existing = handle_from_state()
    if existing is not None:
        LOG.info("reusing the control plane at %s", existing.server)
        yield existing
        return
    try:
        plane = ControlPlane()
        plane.__enter__()
    except (BinaryNotFoundError, BinaryBuildError, ControlPlaneError) as exc:
        unavailable(str(exc))
        return
    try:
        yield plane.handle
    finally:
        plane.__exit__(None, None, None)


@pytest.fixture(scope="session")
def kube_admin(control_plane: ClusterHandle) -> Iterator[client.ApiClient]:
    """A ``system:masters`` API client."""
    api = kube.admin_client(control_plane)
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def namespace_factory(kube_admin: client.ApiClient) -> Iterator[Callable[..., str]]:
    """Create fresh namespaces (``factory(prefix="x")``); they are deleted after the test."""
    created: list[str] = []

    def factory(name: str | None = None, *, prefix: str = "test") -> str:
        namespace = kube.create_namespace(kube_admin, name, prefix=prefix)
        created.append(namespace)
        return namespace

    yield factory
    kube.delete_namespaces(kube_admin, created)


@pytest.fixture
def rotator_account_factory(
    control_plane: ClusterHandle, kube_admin: client.ApiClient
) -> Iterator[Callable[..., kube.ServiceAccountAccess]]:
    """Create the rotator's ServiceAccount bound only by ``infra/rbac/render.py`` for given namespaces.

    ``factory(["ns-a", "ns-b"], secret_name=...)`` returns a ``ServiceAccountAccess`` whose
    ``kubeconfig`` (embedded CA + TokenRequest token) is what the function under test is given.
    """
    created: list[str] = []

    def factory(target_namespaces: list[str], **kwargs: object) -> kube.ServiceAccountAccess:
        access = kube.rotator_service_account(control_plane, kube_admin, target_namespaces, **kwargs)  # type: ignore[arg-type]
        created.append(access.namespace)
        return access

    yield factory
    kube.delete_namespaces(kube_admin, created)
