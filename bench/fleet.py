"""The fleet scenarios of issue 10, each measured side by side in one run (``--scenario``).

- **wide**: ``TARGET_NAMESPACES=*`` over 10,000 namespaces, the rotation with ``EVENTS=all`` (the default)
  and ``EVENTS=failures`` against raw capacity for the same namespaces (every namespace of the cluster);
- **fleet**: 4 clusters x 250 namespaces against 1 cluster x 250, each cluster a control plane of its own
  behind its own delay proxy (10 ms RTT), and raw capacity over the same clusters;
- **dryrun-status**: at 1,000 namespaces a dry run (``POST {"dry_run": true}``) and a status call (``GET``)
  against a rotation (with either EVENTS setting);
- **events**: at 1,000 namespaces, ``EVENTS=all`` against ``EVENTS=failures`` against raw capacity, on
  loopback and behind the delay proxy.

Two rotations measured side by side are two function processes with their own ``TOKEN_ALIAS_PREFIX``, so
neither revokes the other's tokens; they write the same secrets, one after the other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http import HTTPStatus

import requests
from kubernetes import client

from bench.contenders import (
    RAW_SECRET,
    ROTATOR_SECRET,
    create_namespaces,
    function_env,
    raw_body,
    rotate,
    service_account,
)
from bench.raw import RawClient, RawTarget
from bench.results import ContenderResult, Figure, figure
from bench.scenarios import Environment
from bench.side_by_side import Contender
from devkit.function import FunctionProcess, FunctionStartError, start_function

#: Namespaces created at once while setting up (the admin client; 10,000 take about a minute).
NAMESPACE_THREADS = 16
ROTATOR_ACCOUNT = "ccr-pull-secret-rotator"
RAW_ACCOUNT = "bench-raw-client"


@dataclass(frozen=True)
class Site:
    """One cluster set up for a scenario: its namespaces, the rotator's kubeconfig, the raw client."""

    env: Environment
    namespaces: list[str]
    kubeconfig: str  # the rotator's, through ``env.client_server``
    raw: RawClient

    def run_raw(self) -> float:
        """The raw requests of one rotation of this cluster, with a new token."""
        return self.raw.run(self.namespaces, raw_body())


@contextmanager
def sites(envs: Sequence[Environment], names: list[str], *, every_namespace: bool = False) -> Iterator[list[Site]]:
    """``names`` created in every cluster, the rotator's and the raw client's accounts; closed after.

    ``every_namespace``: both accounts get the ClusterRole mode (``TARGET_NAMESPACES=*``), and each site's
    namespaces are then every namespace of its cluster (the system ones and the accounts' own included),
    the ones a ``*`` rotation writes.
    """
    with ExitStack() as stack:
        found = []
        for env in envs:
            create_namespaces(env.admin, names, NAMESPACE_THREADS)
            rotator, raw = (
                service_account(env, names, secret_name=secret, account=account, all_namespaces=every_namespace)
                for secret, account in ((ROTATOR_SECRET, ROTATOR_ACCOUNT), (RAW_SECRET, RAW_ACCOUNT))
            )
            ca_file = env.workdir / "ca.crt"
            ca_file.write_bytes(env.handle.credentials.ca_cert)
            target = RawTarget(env.client_server, ca_file, raw.token, RAW_SECRET)
            raw_client = stack.enter_context(RawClient(target, env.options.raw_concurrency))
            targets = all_namespaces(env.admin) if every_namespace else names
            found.append(Site(env, targets, rotator.kubeconfig, raw_client))
        yield found


def all_namespaces(api: client.ApiClient) -> list[str]:
    """Every namespace of the cluster, as the admin lists them (one answer: the admin has no page limit)."""
    listed = client.CoreV1Api(api).list_namespace(_request_timeout=120)
    return [str(item.metadata.name) for item in listed.items if item.metadata is not None]


def kubeconfig_file(site: Site, name: str) -> str:
    """The rotator's kubeconfig for ``site`` in a file only this user can read; returns its path."""
    path = site.env.workdir / f"{name}.kubeconfig"
    path.touch(mode=0o600)
    path.write_text(site.kubeconfig, encoding="utf-8")
    return str(path)


@contextmanager
def serving(site: Site, name: str, variables: dict[str, str]) -> Iterator[FunctionProcess]:
    """The function, for ``site`` (one cluster) unless ``variables`` say otherwise, with these settings."""
    env = function_env(site.env, site.namespaces, site.env.workdir / "unused.kubeconfig")
    env |= {"KUBECONFIG": kubeconfig_file(site, name), "TOKEN_ALIAS_PREFIX": f"bench-{name}", **variables}
    if "CLUSTERS" in env:  # the one-cluster shorthand and CLUSTERS exclude each other
        for shorthand in ("KUBECONFIG", "TARGET_NAMESPACES"):
            env.pop(shorthand)
    log_path = site.env.workdir / f"function-{name}.log"
    with log_path.open("wb") as log:
        try:
            function = start_function(env, output=log)
        except FunctionStartError as exc:
            raise RuntimeError(f"{exc}: {log_path.read_text(errors='replace')[-2000:]}") from exc
    with function:
        yield function


def cluster_entries(group: Sequence[Site], name: str) -> str:
    """``CLUSTERS`` for these sites: one entry per cluster, its namespaces named explicitly."""
    entries = [
        {
            "name": f"cluster-{index}",
            "kubeconfig": kubeconfig_file(site, f"{name}-{index}"),
            "namespaces": site.namespaces,
        }
        for index, site in enumerate(group)
    ]
    return json.dumps(entries)


def dry_run(url: str, size: int) -> float:
    """One dry run over HTTP; returns request-to-response seconds. Fails loudly unless every write was checked."""
    started = time.perf_counter()
    response = requests.post(url, json={"dry_run": True}, timeout=600)
    seconds = time.perf_counter() - started
    if response.status_code != HTTPStatus.OK:
        raise RuntimeError(f"the dry run answered {response.status_code}")
    results = [n["result"] for n in response.json()["namespaces"]]
    if len(results) != size or any(r not in {"would-create", "would-update"} for r in results):
        raise RuntimeError(f"the dry run did not check all {size} namespaces")
    return seconds


def rotation(name: str, function: FunctionProcess, size: int) -> Contender:
    """The function's rotation as a contender."""
    return Contender(name, lambda: rotate(function.url, size), size, function.process.pid)


def concurrently(runs: Sequence[Callable[[], float]]) -> Callable[[], float]:
    """One run of all ``runs`` at once (raw capacity over several clusters); returns the wall-clock seconds."""

    def run() -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(runs)) as pool:
            for _ in pool.map(lambda one: one(), runs):
                pass
        return time.perf_counter() - started

    return run


def by_name(results: Sequence[ContenderResult]) -> dict[str, ContenderResult]:
    """Results by contender name."""
    return {result.name: result for result in results}


def ratio(results: dict[str, ContenderResult], over: str, under: str, goal: tuple[str, float] | None) -> list[Figure]:
    """``over`` / ``under`` of the two medians, named as such; then the same of their own CPU, for reference.

    On these two shared cores every run is CPU-bound, so the ratio of the CPU the two runs needed (other
    users' processes left out) is what the seconds' ratio would tend to on a quiet machine.
    """
    seconds = results[over].seconds / results[under].seconds
    cpu = results[over].own_cpu_seconds / results[under].own_cpu_seconds
    return [figure(f"{over} / {under}", seconds, goal), figure(f"{over} / {under}, own CPU", cpu)]
