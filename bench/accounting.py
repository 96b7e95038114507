"""Accounting: CPU, memory and processes from ``/proc``; secret requests from the apiserver's own counter.

Linux only, like the rest of the bench: ``/proc`` is read directly, no extra dependency.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

from bench.results import Machine

OTHER_PROCESSES = "other processes"


def machine_description() -> Machine:
    """Cores, CPU model, memory and OS of this machine."""
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
    summary = f"{cores} cores, {model}, {memory_gib} GiB RAM, {platform.system()} {platform.release()}"
    return Machine(summary, cores, model, memory_gib, platform.release())


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn's worker under functions-framework's master)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text(encoding="utf-8").split()]
        except OSError:
            continue
    return found


def process_tree(pid: int) -> tuple[int, ...]:
    """``pid`` and all its descendants, parents before children."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending += _children(current)
    return tuple(tree)


def peak_rss_mib(pid: int) -> dict[str, float]:
    """``VmHWM`` (peak resident set) of every process of ``pid``'s tree in MiB, by pid."""
    peaks: dict[str, float] = {}
    for member in process_tree(pid):
        for line in Path(f"/proc/{member}/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                peaks[str(member)] = round(int(line.split()[1]) / 1024, 1)
    return peaks


def cpu_seconds(pids: tuple[int, ...]) -> float:
    """User + system CPU time used so far by these processes (all threads); gone processes count 0."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (not idle, not waiting for I/O), over all cores."""
    fields = [int(value) for value in Path("/proc/stat").read_text(encoding="utf-8").splitlines()[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def _find_process(pattern: str) -> int | None:
    """The pid whose command line contains ``pattern``."""
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


def server_processes(server: str) -> dict[str, tuple[int, ...]]:
    """This run's kube-apiserver and etcd, found by their command lines; empty if not found (CPU counts 0)."""
    apiserver = _find_process(f"--secure-port={server.rsplit(':', 1)[1]}")
    etcd = None
    if apiserver is not None:
        cmdline = Path(f"/proc/{apiserver}/cmdline").read_bytes().decode(errors="replace")
        etcd_url = re.search(r"--etcd-servers=(\S+?)\x00", cmdline)
        etcd = _find_process(f"--listen-client-urls={etcd_url.group(1)}") if etcd_url else None
    return {name: () if pid is None else (pid,) for name, pid in (("kube-apiserver", apiserver), ("etcd", etcd))}


@dataclass(frozen=True)
class CpuMeter:
    """Named groups of processes whose CPU is read before and after a block.

    With ``others``, whatever else kept the machine busy meanwhile is added as "other processes": on a
    shared machine, the noise in that sample.
    """

    processes: Mapping[str, tuple[int, ...]]
    others: bool = False

    def _read(self) -> dict[str, float]:
        return {name: cpu_seconds(pids) for name, pids in self.processes.items()}

    @contextmanager
    def measure(self, into: dict[str, float]) -> Iterator[None]:
        """Put the CPU seconds each group used inside the block into ``into``."""
        before, busy = self._read(), machine_busy_seconds()
        yield
        used = {name: seconds - before[name] for name, seconds in self._read().items()}
        if self.others:
            used[OTHER_PROCESSES] = max(machine_busy_seconds() - busy - sum(used.values()), 0.0)
        into.update(used)


def secret_request_counts(api: client.ApiClient, server: str) -> dict[str, float]:
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


#: The resources a side-by-side scenario counts requests of: the pull secrets and the Events about them.
COUNTED_RESOURCES = ("secrets", "events")


def resource_request_counts(api: client.ApiClient, server: str) -> dict[str, float]:
    """``apiserver_request_total`` for :data:`COUNTED_RESOURCES`, summed by ``"resource VERB"`` (dry runs apart)."""
    response = api.rest_client.request("GET", f"{server}/metrics", _request_timeout=30)  # type: ignore[no-untyped-call]  # the kubernetes client is untyped
    counts: dict[str, float] = {}
    for line in response.read().decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        resource, verb = re.search(r'resource="([a-z]+)"', line), re.search(r'verb="([A-Z]+)"', line)
        if resource and verb and resource.group(1) in COUNTED_RESOURCES:
            dry_run = re.search(r'dry_run="([^"]+)"', line)  # a server-side dry run writes nothing
            key = f"{resource.group(1)} {verb.group(1)}" + (" (dry run)" if dry_run else "")
            counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


@contextmanager
def counted_on(apiservers: list[tuple[client.ApiClient, str]], into: dict[str, float]) -> Iterator[None]:
    """Put the requests made inside the block to every apiserver, by ``"resource VERB"``, summed, into ``into``."""
    before = [resource_request_counts(api, server) for api, server in apiservers]
    yield
    for (api, server), earlier in zip(apiservers, before, strict=True):
        for key, value in resource_request_counts(api, server).items():
            if delta := value - earlier.get(key, 0.0):
                into[key] = into.get(key, 0.0) + delta


@contextmanager
def counted(api: client.ApiClient, server: str, into: dict[str, float]) -> Iterator[None]:
    """Put the secret requests made inside the block, by verb, into ``into``."""
    before = secret_request_counts(api, server)
    yield
    for verb, value in secret_request_counts(api, server).items():
        if delta := value - before.get(verb, 0.0):
            into[verb] = delta
