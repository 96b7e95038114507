"""The three contenders, set up on one size's fresh namespaces.

Each has its own least-privilege ServiceAccount and its own secret name, so they never touch each other's
secrets:

- **rotation**: the real function in a ``functions-framework`` process, called over HTTP;
- **baseline**: the Helm chart's sequential read-then-replace algorithm (``bench/baseline.py``), with the
  chart's permissions;
- **raw**: the same GET + apply-PATCH per namespace with no logic (``bench/raw.py``).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, cast

import requests
from kubernetes import client

from bench import baseline
from bench.raw import RawClient, RawTarget
from bench.scenarios import Environment
from devkit import kube
from devkit.crusoe_emulator import format_time
from devkit.function import FunctionProcess, FunctionStartError, start_function
from devkit.loopback import LOOPBACK

REGISTRY = "registry.us-east1-a.ccr.crusoecloudcompute.com"
USERNAME = "bench@example.com"
ROTATOR_SECRET = kube.PULL_SECRET_NAME
BASELINE_SECRET = "bench-helm-chart-pull-secret"
RAW_SECRET = "bench-raw-capacity-pull-secret"
SETUP_THREADS = 8
#: What the function inherits from the bench's environment: enough to run, nothing that configures it
#: (a developer's shell may carry the function's own variables, proxies or a CA bundle).
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "EVENTS")  # EVENTS: the function's setting


@dataclass(frozen=True)
class ColdStart:
    """Process start to the first answer (``ready_seconds``), then the first GET, which reads every namespace."""

    ready_seconds: float
    first_get_seconds: float

    @property
    def seconds(self) -> float:
        """Process start to the first status answer: the cold start a first caller sees."""
        return self.ready_seconds + self.first_get_seconds


@dataclass(frozen=True)
class Accounts:
    """The three contenders' ServiceAccounts."""

    rotator: kube.ServiceAccountAccess
    chart: kube.ServiceAccountAccess
    raw: kube.ServiceAccountAccess


@dataclass(frozen=True)
class Contenders:
    """The three contenders, ready: each call is one whole rotation of every namespace, in seconds."""

    namespaces: list[str]
    function: FunctionProcess
    cold_start: ColdStart
    chart_api: client.ApiClient
    crusoe: baseline.CrusoeAccess
    raw_client: RawClient

    def run_rotation(self) -> float:
        """One rotation by the function over HTTP; fails loudly on anything but every namespace written."""
        return rotate(self.function.url, len(self.namespaces))

    def run_baseline(self) -> float:
        """One rotation with the Helm chart's algorithm."""
        return baseline.rotate(
            self.chart_api,
            self.crusoe,
            self.namespaces,
            secret_name=BASELINE_SECRET,
            registry=REGISTRY,
            username=USERNAME,
        ).seconds

    def run_raw(self) -> float:
        """The raw requests of one rotation, with a new token, so that every secret really changes."""
        return self.raw_client.run(self.namespaces, raw_body())


def create_namespaces(api: client.ApiClient, names: list[str], threads: int = SETUP_THREADS) -> None:
    """Create namespaces concurrently (one at a time takes a minute at 1,000)."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(lambda name: kube.create_namespace(api, name), names):
            pass


def _create_rbac_object(api: client.ApiClient, obj: dict[str, Any]) -> None:
    rbac = client.RbacAuthorizationV1Api(api)
    namespace = obj["metadata"]["namespace"]
    # The client validates a plain dict into its model, so the renderer's output is sent as it is.
    if obj["kind"] == "Role":
        rbac.create_namespaced_role(namespace, cast("client.V1Role", obj))
    elif obj["kind"] == "RoleBinding":
        rbac.create_namespaced_role_binding(namespace, cast("client.V1RoleBinding", obj))
    else:
        raise ValueError(f"unexpected RBAC object kind {obj['kind']}")


def chart_rules(secret_name: str) -> list[dict[str, Any]]:
    """What the Helm chart's Role had to allow: read and replace the named secret, create any secret.

    A plain POST create carries no name when it is authorized, so ``create`` cannot be narrowed for the
    chart's algorithm (the project's own rules narrow it, since the rotator creates by apply PATCH).
    """
    return [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "update"], "resourceNames": [secret_name]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]


def service_account(
    env: Environment,
    namespaces: list[str],
    *,
    secret_name: str,
    account: str,
    rules: list[dict[str, Any]] | None = None,
    all_namespaces: bool = False,
) -> kube.ServiceAccountAccess:
    """A ServiceAccount with the project's RBAC (``infra/rbac/render.py``) for ``secret_name`` in ``namespaces``.

    The platform applies objects one by one (2,000 requests at 1,000 namespaces); here the per-namespace
    Roles and RoleBindings the project's renderer returns are created concurrently, and the platform applies
    the ServiceAccount and mints its token as usual. ``rules`` replaces the Roles' rules (the baseline
    runs with the chart's permissions, not the rotator's). Its kubeconfig points where the contenders
    reach kube-apiserver. ``all_namespaces`` is the ClusterRole mode (``TARGET_NAMESPACES=*``).
    """
    render = kube.load_rbac_renderer()

    def concurrent_render(
        namespaces: list[str],
        secret_name: str,
        service_account_namespace: str,
        service_account_name: str,
        *,
        service_accounts: list[str] | None = None,
        all_namespaces: bool = False,
        self_renewal: bool = False,
    ) -> list[dict[str, Any]]:
        objects = render(
            namespaces,
            secret_name,
            service_account_namespace,
            service_account_name,
            service_accounts=service_accounts,
            all_namespaces=all_namespaces,
            self_renewal=self_renewal,
        )
        roles = [obj if rules is None else {**obj, "rules": rules} for obj in objects if obj["kind"] == "Role"]
        bindings = [obj for obj in objects if obj["kind"] == "RoleBinding"]
        with ThreadPoolExecutor(max_workers=SETUP_THREADS) as pool:
            for batch in (roles, bindings):
                for _ in pool.map(lambda obj: _create_rbac_object(env.admin, obj), batch):
                    pass
        return [obj for obj in objects if obj["kind"] not in {"Role", "RoleBinding"}]

    handle = dataclasses.replace(env.handle, server=env.client_server)
    return kube.rotator_service_account(
        handle,
        env.admin,
        namespaces,
        secret_name=secret_name,
        service_account_name=account,
        render=concurrent_render,
        all_namespaces=all_namespaces,
    )


def _accounts(env: Environment, namespaces: list[str]) -> Accounts:
    """Create the namespaces and the three ServiceAccounts."""
    create_namespaces(env.admin, namespaces)
    return Accounts(
        rotator=service_account(env, namespaces, secret_name=ROTATOR_SECRET, account="ccr-pull-secret-rotator"),
        chart=service_account(
            env,
            namespaces,
            secret_name=BASELINE_SECRET,
            account="helm-chart-rotator",
            rules=chart_rules(BASELINE_SECRET),
        ),
        raw=service_account(env, namespaces, secret_name=RAW_SECRET, account="bench-raw-client"),
    )


def function_env(env: Environment, namespaces: list[str], kubeconfig: Path) -> dict[str, str]:
    """The environment a deployed function would have, pointing at the local servers."""
    variables = {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}
    variables |= {
        "NO_GCE_CHECK": "True",
        "GCE_METADATA_HOST": f"{LOOPBACK}:9",
        "GCE_METADATA_IP": f"{LOOPBACK}:9",
        "CRUSOE_API_ENDPOINT": env.crusoe.base_url,
        "CRUSOE_ACCESS_KEY": env.crusoe.access_key_id,
        "CRUSOE_SECRET_KEY": env.crusoe.secret_key,
        "REGISTRY_URL": REGISTRY,
        "REGISTRY_USERNAME": USERNAME,
        "TARGET_NAMESPACES": ",".join(namespaces),
        "KUBECONFIG": str(kubeconfig),
    }
    if env.options.max_parallel_writes is not None:
        variables["MAX_PARALLEL_WRITES"] = str(env.options.max_parallel_writes)
    return variables


def _start_function(env: Environment, namespaces: list[str], kubeconfig: str) -> FunctionProcess:
    """Serve the rotator for these namespaces, its output to a log file quoted if it fails to start."""
    size = len(namespaces)
    kubeconfig_path = env.workdir / f"rotator-{size}.kubeconfig"
    kubeconfig_path.touch(mode=0o600)
    kubeconfig_path.write_text(kubeconfig, encoding="utf-8")
    log_path = env.workdir / f"function-{size}.log"
    with log_path.open("wb") as log:
        try:
            return start_function(function_env(env, namespaces, kubeconfig_path), output=log)
        except FunctionStartError as exc:
            raise RuntimeError(f"{exc}: {log_path.read_text(errors='replace')[-2000:]}") from exc


def status_seconds(url: str) -> float:
    """One status call (GET, which reads every namespace's secret); returns request-to-response seconds."""
    started = time.perf_counter()
    response = requests.get(url, timeout=600)
    seconds = time.perf_counter() - started
    # 503 is a complete status answer too: it names the targets at risk (before the first rotation, all of them).
    if response.status_code not in {HTTPStatus.OK, HTTPStatus.SERVICE_UNAVAILABLE} or "at_risk" not in response.json():
        raise RuntimeError(f"the function's status answered {response.status_code}")
    return seconds


def rotate(url: str, size: int) -> float:
    """One rotation over HTTP; returns request-to-response seconds. Fails loudly on anything but success."""
    started = time.perf_counter()
    response = requests.post(url, json={}, timeout=600)
    seconds = time.perf_counter() - started
    if response.status_code != HTTPStatus.OK:
        body = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
        raise RuntimeError(f"rotation answered {response.status_code}: {body.get('error', 'see the function log')}")
    results = [n["result"] for n in response.json()["namespaces"]]
    if len(results) != size or any(r not in {"created", "updated"} for r in results):
        raise RuntimeError(f"rotation did not write all {size} namespaces")
    return seconds


def raw_body() -> dict[str, Any]:
    """An apply body of the rotator's shape and size (labels, four annotations, a one-entry docker config).

    The token in it is new on every call, so every raw run really changes every secret, as a rotation does.
    """
    stamp = format_time(datetime.now(UTC))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": RAW_SECRET,
            "labels": {"app.kubernetes.io/managed-by": "bench-raw-capacity"},
            "annotations": {
                "bench/rotated-at": stamp,
                "bench/token-alias": "bench-raw-00000000t000000z-0000",
                "bench/expires-at": stamp,
                "bench/registry": REGISTRY,
            },
        },
        "type": baseline.DOCKERCONFIG_TYPE,
        "data": {".dockerconfigjson": baseline.dockerconfig(REGISTRY, USERNAME, secrets.token_urlsafe(48))},
    }


@contextmanager
def set_up(env: Environment, size: int) -> Iterator[Contenders]:
    """Fresh namespaces, the three accounts, the function started and its first status read; all closed after."""
    namespaces = [f"bench-n{size}-{i:04d}" for i in range(size)]
    started = time.perf_counter()
    accounts = _accounts(env, namespaces)
    seconds = time.perf_counter() - started
    print(f"{env.label}[N={size}] set up {size} namespaces and 3 service accounts in {seconds:.1f} s", flush=True)
    ca_file = env.workdir / "ca.crt"
    ca_file.write_bytes(env.handle.credentials.ca_cert)
    with ExitStack() as stack:
        chart_api = accounts.chart.api_client()
        stack.callback(chart_api.close)
        raw_target = RawTarget(env.client_server, ca_file, accounts.raw.token, RAW_SECRET)
        raw_client = stack.enter_context(RawClient(raw_target, env.options.raw_concurrency))
        function = stack.enter_context(_start_function(env, namespaces, accounts.rotator.kubeconfig))
        cold_start = ColdStart(function.ready_seconds, status_seconds(function.url))
        yield Contenders(namespaces, function, cold_start, chart_api, env.crusoe, raw_client)
