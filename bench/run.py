"""Benchmark: rotation cost at 10 to 1,000 namespaces, side by side with the baseline and raw capacity.

``make bench`` (or ``python bench/run.py``) starts one local control plane (etcd + kube-apiserver) and the
Crusoe API emulator, and for each N creates N fresh namespaces and three least-privilege ServiceAccounts
(rotator, baseline, raw client: each with its own secret name, so they never touch each other's
secrets), then measures in the same run, interleaved repeat by repeat so that drift hits all three alike:

- **rotation**: the real function in a ``functions-framework`` process, called over HTTP; the first call
  creates the secrets, the reported figure is the median of the later (steady-state) calls;
- **baseline**: the Helm chart's sequential read-then-replace algorithm (``bench/baseline.py``);
- **raw**: the same GET + apply-PATCH per namespace with no logic (``bench/raw.py``).

Write requests are counted from the apiserver's own ``apiserver_request_total`` metric, Crusoe calls
from the emulator's request log, peak RSS from ``VmHWM`` of the function's process tree, CPU seconds of
each process from ``/proc``. It is a program that measures and reports, not a test: it asserts nothing
about the goals, it prints them met or not. Results go to ``bench/results/latest.json`` and a chart.

``--rtt-ms 0,2,10`` runs the optional **latency scenario** instead: for each round-trip time, a fresh control
plane, and the three contenders reach kube-apiserver through ``bench/delay_proxy.py``, a loopback proxy that
delays each direction by half the RTT. In production the function talks to a remote apiserver, where
round trips, not this machine's two cores, dominate; loopback alone cannot show that. Setup, request
counting, kube-apiserver to etcd and the Crusoe emulator stay undelayed. Results go to
``bench/results/latency.json`` (the same per-run fields plus ``rtt_ms`` and the measured delay) and
``docs/benchmarks-latency.png``. Why a proxy and not ``tc netem``: see ``bench/delay_proxy.py``.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import platform
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (REPO_ROOT, REPO_ROOT / "function"):  # run as a script: make the harness and product importable
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import requests  # noqa: E402 - after the sys.path fix above
from kubernetes import client  # noqa: E402
from rotator.config import VARIABLES  # noqa: E402

from bench import baseline  # noqa: E402
from bench.raw import RawClient, RawTarget  # noqa: E402
from devkit import kube  # noqa: E402
from devkit.binaries import ETCD, Binary, resolve_all  # noqa: E402
from devkit.cluster import ClusterHandle, ControlPlane  # noqa: E402
from devkit.crusoe_emulator import CrusoeEmulator  # noqa: E402

MAIN = REPO_ROOT / "function" / "main.py"
FRAMEWORK = Path(sys.executable).with_name("functions-framework")
DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "latest.json"
DEFAULT_CHART = REPO_ROOT / "docs" / "benchmarks.png"
DEFAULT_LATENCY_OUTPUT = REPO_ROOT / "bench" / "results" / "latency.json"
DEFAULT_LATENCY_CHART = REPO_ROOT / "docs" / "benchmarks-latency.png"
DELAY_PROXY = REPO_ROOT / "bench" / "delay_proxy.py"
REGISTRY = "registry.us-east1-a.ccr.crusoecloudcompute.com"
USERNAME = "bench@example.com"
ROTATOR_SECRET = kube.PULL_SECRET_NAME
BASELINE_SECRET = "bench-helm-chart-pull-secret"
RAW_SECRET = "bench-raw-capacity-pull-secret"
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})
SETUP_THREADS = 8
MIB = 1024 * 1024
# Variables a developer's shell may carry that would change what the function does; the bench sets its own.
FUNCTION_VARIABLES = (*VARIABLES, "GOOGLE_APPLICATION_CREDENTIALS")
# Goals of issue 5, at the largest N: (field, comparison, limit).
GOALS: tuple[tuple[str, str, float], ...] = (
    ("rotation_seconds", "<=", 5.0),
    ("speedup_vs_seed", ">=", 5.0),
    ("efficiency_vs_raw", ">=", 0.8),
    ("writes_per_namespace", "<=", 1.0),
    ("peak_rss_mib", "<=", 150.0),
    ("cold_start_seconds", "<=", 1.5),
)


# --- the machine and its processes ---------------------------------------------------------------------


def machine_description() -> dict[str, Any]:
    """Cores, CPU model, memory and OS: what the numbers are only true for."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    cores = os.cpu_count() or 0
    memory_gib = round(mem_kib / 1024 / 1024, 1)
    return {
        "summary": f"{cores} cores, {model}, {memory_gib} GiB RAM, {platform.system()} {platform.release()}",
        "cores": cores,
        "cpu_model": model,
        "memory_gib": memory_gib,
        "kernel": platform.release(),
    }


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn's worker under functions-framework's master)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text(encoding="utf-8").split()]
        except OSError:
            continue
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending += _children(current)
    return tree


def vm_hwm_mib(pid: int) -> float:
    """Peak resident set size of one process (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes (all threads)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / ticks


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (not idle, not waiting for I/O), over all cores."""
    fields = [int(value) for value in Path("/proc/stat").read_text(encoding="utf-8").splitlines()[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def find_process(pattern: str) -> int | None:
    """The pid whose command line contains ``pattern`` (to find this run's etcd and kube-apiserver)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern in cmdline:
            return int(entry.name)
    return None


# --- the cluster ----------------------------------------------------------------------------------------


def secret_write_counts(api: client.ApiClient, server: str) -> dict[str, float]:
    """``apiserver_request_total`` for secrets, summed by verb (the apiserver's own count of requests)."""
    response = api.rest_client.request("GET", f"{server}/metrics", _request_timeout=30)  # type: ignore[no-untyped-call]  # the kubernetes client is untyped
    counts: dict[str, float] = {}
    for line in response.read().decode().splitlines():
        if not line.startswith("apiserver_request_total{") or 'resource="secrets"' not in line:
            continue
        verb = re.search(r'verb="([A-Z]+)"', line)
        if verb:
            counts[verb.group(1)] = counts.get(verb.group(1), 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


@contextmanager
def counted(api: client.ApiClient, server: str, into: dict[str, float]) -> Iterator[None]:
    """Add the secret requests made inside the block, by verb, to ``into``."""
    before = secret_write_counts(api, server)
    yield
    after = secret_write_counts(api, server)
    for verb, value in after.items():
        delta = value - before.get(verb, 0.0)
        if delta:
            into[verb] = into.get(verb, 0.0) + delta


def create_namespaces(api: client.ApiClient, names: list[str]) -> None:
    """Create namespaces concurrently (one at a time takes a minute at 1,000)."""
    with ThreadPoolExecutor(max_workers=SETUP_THREADS) as pool:
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
    handle: ClusterHandle,
    api: client.ApiClient,
    namespaces: list[str],
    *,
    secret_name: str,
    account: str,
    rules: list[dict[str, Any]] | None = None,
) -> kube.ServiceAccountAccess:
    """A ServiceAccount with the project's RBAC (``infra/rbac/render.py``) for ``secret_name`` in ``namespaces``.

    The harness applies objects one by one (2,000 requests at 1,000 namespaces); here the per-namespace
    Roles and RoleBindings the project's renderer returns are created concurrently, and the harness applies
    the ServiceAccount and mints its token as usual. ``rules`` replaces the Roles' rules (the baseline
    runs with the chart's permissions, not the rotator's).
    """
    render = kube.load_rbac_renderer()

    def concurrent_render(
        namespaces: list[str], secret_name: str, service_account_namespace: str, service_account_name: str
    ) -> list[dict[str, Any]]:
        objects = render(namespaces, secret_name, service_account_namespace, service_account_name)
        per_namespace = [obj for obj in objects if obj["kind"] in {"Role", "RoleBinding"}]
        roles = [obj for obj in per_namespace if obj["kind"] == "Role"]
        if rules is not None:
            roles = [{**role, "rules": rules} for role in roles]
        bindings = [obj for obj in per_namespace if obj["kind"] == "RoleBinding"]
        with ThreadPoolExecutor(max_workers=SETUP_THREADS) as pool:
            for batch in (roles, bindings):
                for _ in pool.map(lambda obj: _create_rbac_object(api, obj), batch):
                    pass
        return [obj for obj in objects if obj["kind"] not in {"Role", "RoleBinding"}]

    return kube.rotator_service_account(
        handle, api, namespaces, secret_name=secret_name, service_account_name=account, render=concurrent_render
    )


# --- the function process -------------------------------------------------------------------------------


def free_port() -> int:
    """A free loopback port for the function."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class FunctionProcess:
    """A running ``functions-framework`` process serving the rotator, and when it first answered."""

    process: subprocess.Popen[bytes]
    url: str
    cold_start_seconds: float
    first_answer_seconds: float
    log_path: Path

    def peak_rss_mib(self) -> dict[str, float]:
        """``VmHWM`` of every process of the tree (gunicorn master and worker), and their sum."""
        peaks = {str(pid): round(vm_hwm_mib(pid), 1) for pid in process_tree(self.process.pid)}
        return {"total": round(sum(peaks.values()), 1), **peaks}

    def cpu_seconds(self) -> float:
        """CPU time used by the whole tree so far."""
        return cpu_seconds(process_tree(self.process.pid))

    def stop(self) -> None:
        """SIGTERM, then wait (gunicorn stops its worker first)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def start_function(env: dict[str, str], log_path: Path, *, timeout: float = 60.0) -> FunctionProcess:
    """Start the function and poll with GET until the first successful answer (the cold start).

    GET (status) reads every namespace's secret, so ``first_answer_seconds`` (that one request, start to
    answer) is reported too: cold start minus it is the time to be ready to serve.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with log_path.open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603 - our own venv's functions-framework, fixed arguments
            [str(FRAMEWORK), "--source", str(MAIN), "--target", "rotate", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the function exited with {process.returncode}; see {log_path}")
        sent = time.perf_counter()
        try:
            response = requests.get(url, timeout=60)
        except requests.ConnectionError:
            time.sleep(0.01)
            continue
        if response.status_code == requests.codes.ok:
            now = time.perf_counter()
            return FunctionProcess(process, url, now - started, now - sent, log_path)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the function did not answer GET with 200 within {timeout:.0f} s; see {log_path}")


PY_SPY = Path(sys.executable).with_name("py-spy")


def profiled_rotation(function: FunctionProcess, size: int, out_dir: Path) -> Path:
    """One extra rotation (not counted) with py-spy sampling whichever thread of the worker holds the GIL.

    ``--gil`` makes the samples the function's on-CPU Python time: threads waiting for a connection, a
    lock or the API server are not counted (CPU in C with the GIL released, e.g. TLS, is not either:
    the per-process CPU seconds in the results cover that).

    The raw (collapsed-stack) output goes to ``out_dir``; :func:`summarise_profile` turns it into tables.
    """
    tree = process_tree(function.process.pid)
    worker = tree[-1]  # gunicorn's worker (the master's child) runs the app; the master only supervises
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / f"profile-{size}.txt"
    spy = subprocess.Popen(  # noqa: S603 - our own venv's py-spy, fixed arguments
        [str(PY_SPY), "record", "--gil", "--pid", str(worker), "--rate", "250", "--format", "raw", "-o", str(raw)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.0)  # py-spy attaches and starts sampling
    rotate(function, size)
    spy.send_signal(signal.SIGINT)
    _, err = spy.communicate(timeout=60)
    if not raw.exists():
        raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")
    return raw


def summarise_profile(raw: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function, from py-spy's collapsed stacks."""
    self_samples: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [re.sub(r":\d+\)$", ")", frame.strip()) for frame in stack.split(";")]
        self_samples[frames[-1]] = self_samples.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    lines = [f"{total} samples at 250 Hz of the thread holding the GIL ({total / 250:.2f} s of Python on CPU)", ""]
    for title, table in (("self", self_samples), ("inclusive", inclusive)):
        lines.append(f"top {top} by {title} samples:")
        for frame, count in sorted(table.items(), key=lambda item: -item[1])[:top]:
            lines.append(f"  {100 * count / max(total, 1):5.1f}%  {frame}")
        lines.append("")
    return "\n".join(lines)


def rotate(function: FunctionProcess, size: int) -> float:
    """One rotation over HTTP; returns request-to-response seconds. Fails loudly on anything but success."""
    started = time.perf_counter()
    response = requests.post(function.url, json={}, timeout=600)
    seconds = time.perf_counter() - started
    if response.status_code != requests.codes.ok:
        body = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
        raise RuntimeError(f"rotation answered {response.status_code}: {body.get('error', 'see the function log')}")
    results = [n["result"] for n in response.json()["namespaces"]]
    if len(results) != size or any(r not in {"created", "updated"} for r in results):
        raise RuntimeError(f"rotation did not write all {size} namespaces")
    return seconds


# --- one size -------------------------------------------------------------------------------------------


@dataclass
class Bench:
    """What stays the same across sizes: control plane, emulator, credentials, options."""

    handle: ClusterHandle
    admin: client.ApiClient
    crusoe: CrusoeEmulator
    access_key_id: str
    secret_key: str
    workdir: Path
    repeats: int
    raw_concurrency: int
    max_parallel_writes: int | None
    apiserver_pid: int | None
    etcd_pid: int | None
    profile_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    # Latency runs: the clients (function, baseline, raw) reach kube-apiserver through this URL, a delaying
    # proxy (bench/delay_proxy.py); setup and request counting still use ``handle.server`` directly.
    client_server: str | None = None
    proxy_pid: int | None = None

    def function_env(self, namespaces: list[str], kubeconfig: Path) -> dict[str, str]:
        """The environment a deployed function would have, pointing at the local servers."""
        env = {k: v for k, v in os.environ.items() if k not in FUNCTION_VARIABLES}
        env |= {
            "NO_GCE_CHECK": "True",
            "GCE_METADATA_HOST": "127.0.0.1:9",
            "GCE_METADATA_IP": "127.0.0.1:9",
            "CRUSOE_API_ENDPOINT": self.crusoe.base_url,
            "CRUSOE_ACCESS_KEY": self.access_key_id,
            "CRUSOE_SECRET_KEY": self.secret_key,
            "REGISTRY_URL": REGISTRY,
            "REGISTRY_USERNAME": USERNAME,
            "TARGET_NAMESPACES": ",".join(namespaces),
            "KUBECONFIG": str(kubeconfig),
        }
        if self.max_parallel_writes is not None:
            env["MAX_PARALLEL_WRITES"] = str(self.max_parallel_writes)
        return env

    def server_cpu(self) -> dict[str, float]:
        """CPU seconds used so far by kube-apiserver and etcd (and the delay proxy, when there is one)."""
        used = {
            "kube-apiserver": cpu_seconds([self.apiserver_pid]) if self.apiserver_pid else 0.0,
            "etcd": cpu_seconds([self.etcd_pid]) if self.etcd_pid else 0.0,
        }
        if self.proxy_pid is not None:  # its own line, so it is not counted as "other processes"
            used["delay proxy"] = cpu_seconds([self.proxy_pid])
        return used


def raw_body() -> dict[str, Any]:
    """An apply body of the rotator's shape and size (labels, four annotations, a one-entry docker config).

    The token in it is new on every call, so every raw run really changes every secret, as a rotation does.
    """
    token = secrets.token_urlsafe(48)
    auth = base64.b64encode(f"{USERNAME}:{token}".encode()).decode()
    config = {"auths": {REGISTRY: {"username": USERNAME, "password": token, "auth": auth}}}
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
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
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }


def measure(bench: Bench, size: int) -> dict[str, Any]:  # noqa: PLR0915 - one linear script of phases
    """Set up N namespaces and measure rotation, baseline and raw capacity on them, interleaved."""

    def log(text: str) -> None:
        print(f"[N={size}] {text}", flush=True)

    handle, admin = bench.handle, bench.admin
    # What the three contenders are given to reach kube-apiserver (the delaying proxy in latency runs).
    client_handle = dataclasses.replace(handle, server=bench.client_server) if bench.client_server else handle
    load_before = os.getloadavg()[0]
    setup_started = time.perf_counter()
    namespaces = [f"bench-n{size}-{i:04d}" for i in range(size)]
    create_namespaces(admin, namespaces)
    rotator = service_account(
        client_handle, admin, namespaces, secret_name=ROTATOR_SECRET, account="ccr-pull-secret-rotator"
    )
    chart = service_account(
        client_handle,
        admin,
        namespaces,
        secret_name=BASELINE_SECRET,
        account="helm-chart-rotator",
        rules=chart_rules(BASELINE_SECRET),
    )
    raw_account = service_account(client_handle, admin, namespaces, secret_name=RAW_SECRET, account="bench-raw-client")
    log(f"set up {size} namespaces and 3 service accounts in {time.perf_counter() - setup_started:.1f} s")

    kubeconfig = bench.workdir / f"rotator-{size}.kubeconfig"
    kubeconfig.write_text(rotator.kubeconfig, encoding="utf-8")
    kubeconfig.chmod(0o600)
    ca_file = bench.workdir / "ca.crt"
    ca_file.write_bytes(handle.credentials.ca_cert)
    chart_api = chart.api_client()
    crusoe_access = baseline.CrusoeAccess(bench.crusoe.base_url, bench.access_key_id, bench.secret_key)
    raw_client = RawClient(
        RawTarget(client_handle.server, ca_file, raw_account.token, RAW_SECRET),
        bench.raw_concurrency,
    )

    function = start_function(bench.function_env(namespaces, kubeconfig), bench.workdir / f"function-{size}.log")
    log(f"cold start {function.cold_start_seconds:.2f} s (first GET itself {function.first_answer_seconds:.2f} s)")
    try:
        first_writes: dict[str, float] = {}
        crusoe_before = len(bench.crusoe.requests)
        with counted(admin, handle.server, first_writes):
            rotation_first = rotate(function, size)
        crusoe_first = len(bench.crusoe.requests) - crusoe_before
        baseline_first = baseline.rotate(
            chart_api, crusoe_access, namespaces, secret_name=BASELINE_SECRET, registry=REGISTRY, username=USERNAME
        ).seconds
        raw_first = raw_client.run(namespaces, raw_body())
        log(
            f"first (creating) runs: rotation {rotation_first:.2f} s, "
            f"baseline {baseline_first:.2f} s, raw {raw_first:.2f} s"
        )

        rotation_times: list[float] = []
        baseline_times: list[float] = []
        raw_times: list[float] = []
        crusoe_calls: list[int] = []
        rotation_writes: dict[str, float] = {}
        baseline_writes: dict[str, float] = {}
        raw_writes: dict[str, float] = {}
        cpu: dict[str, float] = {}
        raw_cpu: dict[str, float] = {"client": 0.0, "kube-apiserver": 0.0, "etcd": 0.0}
        for repeat in range(bench.repeats):
            function_cpu, servers_cpu = function.cpu_seconds(), bench.server_cpu()
            busy, own = machine_busy_seconds(), cpu_seconds([os.getpid()])
            crusoe_before = len(bench.crusoe.requests)
            with counted(admin, handle.server, rotation_writes):
                rotation_times.append(rotate(function, size))
            crusoe_calls.append(len(bench.crusoe.requests) - crusoe_before)
            used_here = {"function": function.cpu_seconds() - function_cpu}
            used_here |= {name: used - servers_cpu[name] for name, used in bench.server_cpu().items()}
            used_here["bench driver + emulator"] = cpu_seconds([os.getpid()]) - own
            # Whatever else ran on the machine meanwhile (other users' tests): the noise in this sample.
            used_here["other processes"] = max(machine_busy_seconds() - busy - sum(used_here.values()), 0.0)
            for name, used in used_here.items():
                cpu[name] = cpu.get(name, 0.0) + used
            with counted(admin, handle.server, baseline_writes):
                baseline_times.append(
                    baseline.rotate(
                        chart_api,
                        crusoe_access,
                        namespaces,
                        secret_name=BASELINE_SECRET,
                        registry=REGISTRY,
                        username=USERNAME,
                    ).seconds
                )
            raw_cpu_before, servers_cpu = cpu_seconds([os.getpid()]), bench.server_cpu()
            with counted(admin, handle.server, raw_writes):
                raw_times.append(raw_client.run(namespaces, raw_body()))
            raw_cpu["client"] += cpu_seconds([os.getpid()]) - raw_cpu_before
            for name, used in bench.server_cpu().items():
                raw_cpu[name] = raw_cpu.get(name, 0.0) + used - servers_cpu[name]
            log(
                f"repeat {repeat + 1}/{bench.repeats}: rotation {rotation_times[-1]:.2f} s, "
                f"baseline {baseline_times[-1]:.2f} s, raw {raw_times[-1]:.2f} s"
            )
        rss = function.peak_rss_mib()
        if bench.profile_dir is not None:
            raw = profiled_rotation(function, size, bench.profile_dir)
            summary = raw.with_suffix(".summary.txt")
            summary.write_text(summarise_profile(raw) + "\n", encoding="utf-8")
            log(f"profile: {summary}")
    finally:
        function.stop()
        raw_client.close()
        chart_api.close()  # type: ignore[no-untyped-call]  # the kubernetes client is untyped

    def per_namespace(counts: dict[str, float], runs: int) -> dict[str, float]:
        return {verb: round(value / (size * runs), 3) for verb, value in sorted(counts.items())}

    def writes(counts: dict[str, float], runs: int) -> float:
        return round(sum(v for k, v in counts.items() if k in WRITE_VERBS) / (size * runs), 3)

    rotation_s = statistics.median(rotation_times)
    baseline_s = statistics.median(baseline_times)
    raw_s = statistics.median(raw_times)
    rotation_cpu = {name: round(value / bench.repeats, 2) for name, value in cpu.items()}
    return {
        "namespaces": size,
        "rotation_seconds": round(rotation_s, 3),
        "baseline_seconds": round(baseline_s, 3),
        "raw_seconds": round(raw_s, 3),
        "speedup_vs_seed": round(baseline_s / rotation_s, 2),
        "efficiency_vs_raw": round(raw_s / rotation_s, 2),
        "writes_per_namespace": writes(rotation_writes, bench.repeats),
        "crusoe_calls": max(crusoe_calls),
        "peak_rss_mib": rss["total"],
        "cold_start_seconds": round(function.cold_start_seconds, 3),
        # Extra detail: what the headline numbers are made of.
        "cold_start_first_get_seconds": round(function.first_answer_seconds, 3),
        "peak_rss_mib_by_process": {k: v for k, v in rss.items() if k != "total"},
        "rotation_samples_seconds": [round(t, 3) for t in rotation_times],
        "baseline_samples_seconds": [round(t, 3) for t in baseline_times],
        "raw_samples_seconds": [round(t, 3) for t in raw_times],
        "first_run_seconds": {
            "rotation": round(rotation_first, 3),
            "baseline": round(baseline_first, 3),
            "raw": round(raw_first, 3),
        },
        "first_rotation_writes_per_namespace": writes(first_writes, 1),
        "crusoe_calls_first_rotation": crusoe_first,
        "secret_requests_per_namespace": {
            "rotation": per_namespace(rotation_writes, bench.repeats),
            "baseline": per_namespace(baseline_writes, bench.repeats),
            "raw": per_namespace(raw_writes, bench.repeats),
        },
        "baseline_writes_per_namespace": writes(baseline_writes, bench.repeats),
        "rotation_cpu_seconds": rotation_cpu,
        # CPU used during a rotation over the CPU the machine had: near 1.0 means every core was busy.
        "rotation_machine_busy_share": round(
            sum(rotation_cpu.values()) / ((os.cpu_count() or 1) * statistics.mean(rotation_times)), 2
        ),
        "raw_cpu_seconds": {name: round(value / bench.repeats, 2) for name, value in raw_cpu.items()},
        # The machine may be shared: a 1-minute load far above what this run makes means noisy numbers.
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }


# --- report ---------------------------------------------------------------------------------------------


def goals(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each goal of the issue at the largest N measured: the value, the limit, met or not."""
    largest = max(runs, key=lambda run: run["namespaces"])
    verdicts = []
    for name, comparison, limit in GOALS:
        value = largest[name]
        met = value <= limit if comparison == "<=" else value >= limit
        verdicts.append(
            {
                "namespaces": largest["namespaces"],
                "field": name,
                "goal": f"{comparison} {limit:g}",
                "value": value,
                "met": met,
            }
        )
    return verdicts


def draw_chart(runs: list[dict[str, Any]], path: Path, machine: str) -> None:
    """Seconds against namespaces for rotation, baseline and raw capacity (log-log)."""
    import matplotlib as mpl  # noqa: PLC0415 - a dev-only dependency, needed here only

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    sizes = [run["namespaces"] for run in runs]
    figure, axes = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for key, label, style in (
        ("baseline_seconds", "baseline (Helm chart algorithm, sequential)", "s--"),
        ("rotation_seconds", "rotation (function over HTTP)", "o-"),
        ("raw_seconds", "raw capacity (GET + apply PATCH, no logic)", "^:"),
    ):
        axes.plot(sizes, [run[key] for run in runs], style, label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("namespaces")
    axes.set_ylabel("seconds per rotation (median, steady state)")
    axes.set_title("Pull-secret rotation cost", fontsize=11)
    axes.grid(visible=True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.text(0.01, 0.01, machine, fontsize=6, alpha=0.7)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def print_table(runs: list[dict[str, Any]]) -> None:
    """The headline numbers, one row per N."""
    columns = (
        "namespaces",
        "rotation_seconds",
        "baseline_seconds",
        "raw_seconds",
        "speedup_vs_seed",
        "efficiency_vs_raw",
        "writes_per_namespace",
        "crusoe_calls",
        "peak_rss_mib",
        "cold_start_seconds",
    )
    print(" | ".join(columns))
    for run in runs:
        print(" | ".join(str(run[column]) for column in columns))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; the defaults are what ``make bench`` runs."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--sizes",
        default=None,
        type=lambda text: [int(part) for part in text.split(",") if part.strip()],
        help="comma-separated namespace counts (default: 10,100,1000; with --rtt-ms: 100,1000)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="steady-state runs per size; the median is reported (default: 5; with --rtt-ms: 3)",
    )
    parser.add_argument(
        "--rtt-ms",
        default=None,
        type=lambda text: [float(part) for part in text.split(",") if part.strip()],
        help="latency scenario: comma-separated round-trip times in ms added between the clients and "
        "kube-apiserver by a loopback delay proxy, e.g. 0,2,10 (0: through the proxy, no delay); "
        f"writes {DEFAULT_LATENCY_OUTPUT.relative_to(REPO_ROOT)} instead",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="where to write the JSON results (default: see --rtt-ms)"
    )
    parser.add_argument("--chart", type=Path, default=None, help="where to write the PNG chart")
    parser.add_argument("--no-chart", action="store_true", help="skip the chart (no matplotlib needed)")
    parser.add_argument("--raw-concurrency", type=int, default=32, help="threads of the raw-capacity client")
    parser.add_argument(
        "--max-parallel-writes", type=int, default=None, help="MAX_PARALLEL_WRITES for the function (default: its own)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="after measuring each size, profile one extra rotation with py-spy into DIR",
    )
    args = parser.parse_args(argv)
    latency = args.rtt_ms is not None
    if args.sizes is None:
        args.sizes = [100, 1000] if latency else [10, 100, 1000]
    if args.repeats is None:
        args.repeats = 3 if latency else 5
    if args.output is None:
        args.output = DEFAULT_LATENCY_OUTPUT if latency else DEFAULT_OUTPUT
    if args.chart is None:
        args.chart = DEFAULT_LATENCY_CHART if latency else DEFAULT_CHART
    if args.repeats < 1 or not args.sizes or min(args.sizes) < 1:
        parser.error("--repeats and every size must be at least 1")
    if latency and (not args.rtt_ms or min(args.rtt_ms) < 0):
        parser.error("--rtt-ms takes one or more round-trip times of at least 0 ms")
    if latency and args.profile is not None:
        parser.error("--profile is for loopback runs only")
    return args


# --- the latency scenario (--rtt-ms) -------------------------------------------------------------------


@contextmanager
def delay_proxy(upstream: str, rtt_ms: float, log_path: Path) -> Iterator[tuple[str, int]]:
    """Run ``bench/delay_proxy.py`` in front of kube-apiserver; yield its URL and pid, stop it on the way out.

    The proxy is a separate process, so its CPU is neither the bench driver's GIL nor "other processes".
    """
    upstream_port = upstream.rsplit(":", 1)[1]
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own script, fixed arguments
            [sys.executable, str(DELAY_PROXY), "--upstream-port", upstream_port, "--rtt-ms", f"{rtt_ms:g}"],
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        assert process.stdout is not None  # noqa: S101 - stdout=PIPE above
        line = process.stdout.readline()  # b"" if it exits before listening
        if not line:
            raise RuntimeError(f"the delay proxy exited with {process.wait()}; see {log_path}")
        port = int(json.loads(line)["port"])
        yield f"https://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def delay_check(
    handle: ClusterHandle, proxy_url: str, workdir: Path, rtt_ms: float, samples: int = 21
) -> dict[str, Any]:
    """Time the same admin requests direct and through the proxy: the delay is real, and only on that path.

    ``GET /version`` is answered by kube-apiserver alone; ``GET /api/v1/namespaces/default`` is a quorum
    read that kube-apiserver forwards to etcd. If the etcd leg were delayed, the direct read would be slow
    too. Medians of ``samples`` requests on a kept-alive connection, plus the first request of a new
    connection (TCP and TLS handshakes included), in milliseconds.

    Through the proxy, kube-apiserver sits idle for an RTT between two requests, and on this VM a request
    after a pause of 5 ms or more costs about 1 ms more than one sent back to back. So the direct path is
    also timed with a pause of ``rtt_ms`` before each request: the proxy's own share is the difference.
    """
    pki = workdir / "delay-check"
    pki.mkdir(mode=0o700, exist_ok=True)
    files = {"ca.crt": handle.credentials.ca_cert, "admin.crt": handle.credentials.admin_cert}
    files["admin.key"] = handle.credentials.admin_key
    for name, data in files.items():
        (pki / name).write_bytes(data)
        (pki / name).chmod(0o600)
    timings: dict[str, dict[str, float]] = {}
    for path_name, base in (("direct", handle.server), ("through proxy", proxy_url)):
        with requests.Session() as session:
            session.trust_env = False
            session.verify = str(pki / "ca.crt")
            session.cert = (str(pki / "admin.crt"), str(pki / "admin.key"))

            def ms(path: str, session: requests.Session = session, base: str = base) -> float:
                started = time.perf_counter()
                session.get(f"{base}{path}", timeout=30).raise_for_status()
                return (time.perf_counter() - started) * 1000

            def after_pause(path: str, ms: Callable[[str], float] = ms) -> float:
                time.sleep(rtt_ms / 1000)
                return ms(path)

            first = ms("/version")
            timings[path_name] = {
                "new_connection_version_ms": round(first, 2),
                "version_ms": round(statistics.median(ms("/version") for _ in range(samples)), 2),
                "etcd_read_ms": round(statistics.median(ms("/api/v1/namespaces/default") for _ in range(samples)), 2),
            }
            if path_name == "direct":
                timings[path_name]["version_after_rtt_pause_ms"] = round(
                    statistics.median(after_pause("/version") for _ in range(samples)), 2
                )
    proxied = timings["through proxy"]["version_ms"]
    return {
        **timings,
        "added_rtt_measured_ms": round(proxied - timings["direct"]["version_ms"], 2),
        "added_rtt_net_of_idle_wakeup_ms": round(proxied - timings["direct"]["version_after_rtt_pause_ms"], 2),
    }


def latency_runs(
    args: argparse.Namespace, binaries: dict[str, Binary], access_key_id: str, secret_key: str
) -> tuple[list[dict[str, Any]], str]:
    """For each RTT, a fresh control plane and emulator, the delay proxy, then every size as ``measure`` does.

    A fresh control plane per RTT keeps the runs comparable (same etcd size) and the namespace names free.
    Setup and request counting go to kube-apiserver directly; only the three contenders are delayed.
    """
    runs: list[dict[str, Any]] = []
    version = "unknown"
    for rtt in args.rtt_ms:
        print(f"[RTT {rtt:g} ms] starting a control plane and the delay proxy", flush=True)
        with (
            tempfile.TemporaryDirectory(prefix="ccr-bench-") as workdir,
            ControlPlane(binaries) as plane,
            CrusoeEmulator() as emulator,
        ):
            Path(workdir).chmod(0o700)
            emulator.add_api_key(access_key_id, secret_key)
            handle = plane.handle
            version = handle.version
            with delay_proxy(handle.server, rtt, Path(workdir) / "delay-proxy.log") as (proxy_url, proxy_pid):
                check = delay_check(handle, proxy_url, Path(workdir), rtt)
                print(f"[RTT {rtt:g} ms] delay check: {json.dumps(check)}", flush=True)
                apiserver_pid, etcd_pid = server_pids(handle)
                admin = kube.admin_client(handle)
                bench = Bench(
                    handle=handle,
                    admin=admin,
                    crusoe=emulator,
                    access_key_id=access_key_id,
                    secret_key=secret_key,
                    workdir=Path(workdir),
                    repeats=args.repeats,
                    raw_concurrency=args.raw_concurrency,
                    max_parallel_writes=args.max_parallel_writes,
                    apiserver_pid=apiserver_pid,
                    etcd_pid=etcd_pid,
                    client_server=proxy_url,
                    proxy_pid=proxy_pid,
                )
                try:
                    for size in sorted(args.sizes):
                        run = measure(bench, size)
                        runs.append({"rtt_ms": rtt, **run, "delay_check": check})
                        print(
                            f"[RTT {rtt:g} ms] N={size}: rotation {run['rotation_seconds']} s, baseline "
                            f"{run['baseline_seconds']} s, raw {run['raw_seconds']} s",
                            flush=True,
                        )
                finally:
                    admin.close()  # type: ignore[no-untyped-call]  # the kubernetes client is untyped
    return runs, version


def draw_latency_chart(runs: list[dict[str, Any]], path: Path, machine: str) -> None:
    """Seconds against the added RTT, one panel per N, for rotation, baseline and raw capacity."""
    import matplotlib as mpl  # noqa: PLC0415 - a dev-only dependency, needed here only

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    sizes = sorted({run["namespaces"] for run in runs})
    figure, panels = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 4.2), dpi=120, squeeze=False)
    for axes, size in zip(panels[0], sizes, strict=True):
        of_size = sorted((run for run in runs if run["namespaces"] == size), key=lambda run: run["rtt_ms"])
        rtts = [run["rtt_ms"] for run in of_size]
        for key, label, style in (
            ("baseline_seconds", "baseline (sequential)", "s--"),
            ("rotation_seconds", "rotation (16 in flight)", "o-"),
            ("raw_seconds", "raw capacity (32 threads)", "^:"),
        ):
            axes.plot(rtts, [run[key] for run in of_size], style, label=label)
        axes.set_title(f"{size:,} namespaces", fontsize=10)
        axes.set_xlabel("added round-trip time to kube-apiserver (ms)")
        axes.set_ylabel("seconds per rotation (median)")
        axes.set_xticks(rtts)
        axes.grid(visible=True, alpha=0.3)
        axes.legend(fontsize=7)
    figure.text(0.01, 0.01, machine + "; delay added by bench/delay_proxy.py on loopback", fontsize=6, alpha=0.7)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def latency_main(args: argparse.Namespace) -> int:
    """The optional latency scenario: every RTT of ``--rtt-ms``, every size, into ``latency.json``."""
    machine = machine_description()
    started = time.perf_counter()
    binaries = resolve_all(os.environ, allow_build=False)
    access_key_id = "bench-" + secrets.token_hex(4)
    secret_key = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
    runs, apiserver_version = latency_runs(args, binaries, access_key_id, secret_key)
    result = {
        "machine": machine["summary"],
        "machine_detail": machine,
        "versions": {
            "kube-apiserver": apiserver_version,
            "etcd": binaries[ETCD].version,
            "python": platform.python_version(),
        },
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "scenario": (
            "latency: the function, the baseline and the raw client reach kube-apiserver through "
            "bench/delay_proxy.py on 127.0.0.1, which delays each direction by rtt_ms / 2 (and a new "
            "connection's first bytes by one more RTT); kube-apiserver to etcd, the Crusoe emulator, the "
            "HTTP call into the function, setup and request counting are not delayed"
        ),
        "settings": {
            "rtt_ms": args.rtt_ms,
            "repeats": args.repeats,
            "raw_concurrency": args.raw_concurrency,
            "max_parallel_writes": args.max_parallel_writes or "function default",
            "statistic": "median of the steady-state repeats (secrets already exist)",
        },
        "runs": runs,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("rtt_ms | namespaces | rotation_seconds | baseline_seconds | raw_seconds | speedup | efficiency")
    for run in runs:
        print(
            f"{run['rtt_ms']:g} | {run['namespaces']} | {run['rotation_seconds']} | {run['baseline_seconds']} | "
            f"{run['raw_seconds']} | {run['speedup_vs_seed']} | {run['efficiency_vs_raw']}"
        )
    if not args.no_chart:
        draw_latency_chart(runs, args.chart, machine["summary"])
        print(f"chart: {args.chart}")
    print(f"results: {args.output} ({result['total_seconds']} s)")
    return 0


def server_pids(handle: ClusterHandle) -> tuple[int | None, int | None]:
    """This run's kube-apiserver and etcd, found by their command lines, for their CPU seconds."""
    port = handle.server.rsplit(":", 1)[1]
    apiserver_pid = find_process(f"--secure-port={port}")
    etcd_pid = None
    if apiserver_pid is not None:
        cmdline = Path(f"/proc/{apiserver_pid}/cmdline").read_bytes().decode(errors="replace")
        etcd_url = re.search(r"--etcd-servers=(\S+?)\x00", cmdline)
        etcd_pid = find_process(f"--listen-client-urls={etcd_url.group(1)}") if etcd_url else None
    return apiserver_pid, etcd_pid


def main(argv: list[str] | None = None) -> int:
    """Run every size on one control plane and write the results."""
    args = parse_args(argv)
    if not args.no_chart:
        try:
            import matplotlib as mpl  # noqa: F401, PLC0415 - fail before a long run, not after it
        except ImportError:
            print("matplotlib is not installed (a dev dependency): install it, or pass --no-chart", file=sys.stderr)
            return 2
    if args.rtt_ms is not None:
        return latency_main(args)
    machine = machine_description()
    started = time.perf_counter()
    binaries = resolve_all(os.environ, allow_build=False)
    access_key_id = "bench-" + secrets.token_hex(4)
    secret_key = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
    runs: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="ccr-bench-") as workdir,
        ControlPlane(binaries) as plane,
        CrusoeEmulator() as emulator,
    ):
        Path(workdir).chmod(0o700)
        emulator.add_api_key(access_key_id, secret_key)
        handle = plane.handle
        apiserver_pid, etcd_pid = server_pids(handle)
        admin = kube.admin_client(handle)
        bench = Bench(
            handle=handle,
            admin=admin,
            crusoe=emulator,
            access_key_id=access_key_id,
            secret_key=secret_key,
            workdir=Path(workdir),
            repeats=args.repeats,
            raw_concurrency=args.raw_concurrency,
            max_parallel_writes=args.max_parallel_writes,
            apiserver_pid=apiserver_pid,
            etcd_pid=etcd_pid,
            profile_dir=args.profile,
        )
        try:
            runs.extend(measure(bench, size) for size in sorted(args.sizes))
        finally:
            admin.close()  # type: ignore[no-untyped-call]  # the kubernetes client is untyped
    versions = {
        "kube-apiserver": handle.version,
        "etcd": binaries[ETCD].version,
        "python": platform.python_version(),
    }
    result = {
        "machine": machine["summary"],
        "machine_detail": machine,
        "versions": versions,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "settings": {
            "repeats": args.repeats,
            "raw_concurrency": args.raw_concurrency,
            "max_parallel_writes": args.max_parallel_writes or "function default",
            "statistic": "median of the steady-state repeats (secrets already exist)",
        },
        "runs": runs,
        "goals": goals(runs),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_table(runs)
    for verdict in result["goals"]:
        status = "met" if verdict["met"] else "NOT met"
        print(f"goal {verdict['field']} {verdict['goal']} at N={verdict['namespaces']}: {verdict['value']} ({status})")
    if not args.no_chart:
        draw_chart(runs, args.chart, machine["summary"])
        print(f"chart: {args.chart}")
    print(f"results: {args.output} ({result['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
