"""Side-by-side measurement of named contenders, interleaved round by round (the issue 10 scenarios).

The loopback and latency scenarios compare three fixed contenders; the fleet scenarios compare settings of
the function itself (EVENTS=all against EVENTS=failures, four clusters against one, a dry run against a
rotation) with raw capacity. Each contender is one callable that runs once over its namespaces and returns
seconds. Round by round every contender runs once (each round starting one contender later), so that drift
on the shared machine hits them all alike; the first round (which creates the secrets) is reported on its
own, the rest as medians. Around each run the apiservers count the secret and Event requests, and
``/proc`` the CPU of each process.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bench.accounting import OTHER_PROCESSES, CpuMeter, counted_on, peak_rss_mib, process_tree
from bench.results import ContenderResult
from bench.scenarios import Environment

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})


@dataclass(frozen=True)
class Contender:
    """One thing measured: ``run`` does one whole run over ``namespaces`` namespaces and returns its seconds."""

    name: str
    run: Callable[[], float]
    namespaces: int
    function_pid: int | None = None  # the function's master process, whose tree's CPU and peak RSS are read


@dataclass
class _Rounds:
    """What one contender's rounds measured, in order (the first round included)."""

    seconds: list[float] = field(default_factory=list)
    requests: list[dict[str, float]] = field(default_factory=list)
    cpu: list[dict[str, float]] = field(default_factory=list)


def _servers(envs: Sequence[Environment]) -> dict[str, tuple[int, ...]]:
    """kube-apiserver, etcd (and the delay proxy) of every cluster, each name's processes together."""
    merged: dict[str, tuple[int, ...]] = {}
    for env in envs:
        for name, pids in env.servers.items():
            merged[name] = merged.get(name, ()) + pids
    return merged


def _meter(envs: Sequence[Environment], contender: Contender) -> CpuMeter:
    """The function's tree (if any), the servers, this process, and whatever else ran meanwhile."""
    function = () if contender.function_pid is None else process_tree(contender.function_pid)
    own = (os.getpid(),)
    return CpuMeter({"function": function, **_servers(envs), "bench driver + emulator": own}, others=True)


def run_rounds(
    envs: Sequence[Environment], contenders: Sequence[Contender], repeats: int, log: Callable[[str], None]
) -> list[ContenderResult]:
    """One first round and ``repeats`` steady-state rounds of every contender, interleaved; then the figures."""
    apiservers = [(env.admin, env.handle.server) for env in envs]
    meters = [_meter(envs, contender) for contender in contenders]
    rounds = [_Rounds() for _ in contenders]
    for number in range(repeats + 1):
        # Each round starts one contender later, so that none always runs first (or right after another).
        order = [(number + offset) % len(contenders) for offset in range(len(contenders))]
        for contender, meter, measured in ((contenders[i], meters[i], rounds[i]) for i in order):
            requests: dict[str, float] = {}
            cpu: dict[str, float] = {}
            with counted_on(apiservers, requests), meter.measure(cpu):
                measured.seconds.append(contender.run())
            measured.requests.append(requests)
            measured.cpu.append(cpu)
        described = ", ".join(f"{c.name} {r.seconds[-1]:.2f} s" for c, r in zip(contenders, rounds, strict=True))
        log(f"{'first round' if number == 0 else f'repeat {number}/{repeats}'}: {described}")
    return [_summary(contender, measured) for contender, measured in zip(contenders, rounds, strict=True)]


def _per_namespace(counts: Sequence[Mapping[str, float]], namespaces: int, keep: Callable[[str], bool]) -> float:
    """The requests whose ``"resource VERB"`` key ``keep`` accepts, per namespace and round."""
    total = sum(value for count in counts for key, value in count.items() if keep(key))
    return round(total / (namespaces * len(counts)), 3)


def _is_secret_write(key: str) -> bool:
    """A request that writes a secret (a dry run's key carries a suffix, so it is not one)."""
    resource, _, verb = key.partition(" ")
    return resource == "secrets" and verb in WRITE_VERBS


def _summary(contender: Contender, measured: _Rounds) -> ContenderResult:
    """Medians and means of the steady-state rounds (all rounds when only one ran)."""
    steady = slice(1, None) if len(measured.seconds) > 1 else slice(None)
    seconds, requests, cpu = measured.seconds[steady], measured.requests[steady], measured.cpu[steady]
    keys = sorted({key for count in requests for key in count})
    rss = None if contender.function_pid is None else peak_rss_mib(contender.function_pid)
    return ContenderResult(
        name=contender.name,
        seconds=round(statistics.median(seconds), 3),
        samples_seconds=tuple(round(value, 3) for value in seconds),
        first_run_seconds=round(measured.seconds[0], 3),
        namespaces=contender.namespaces,
        writes_per_namespace=_per_namespace(requests, contender.namespaces, _is_secret_write),
        events_per_namespace=_per_namespace(requests, contender.namespaces, lambda key: key == "events POST"),
        requests_per_namespace={key: _per_namespace(requests, contender.namespaces, key.__eq__) for key in keys},
        cpu_seconds={name: round(statistics.fmean(c[name] for c in cpu), 2) for name in cpu[0]},
        own_cpu_seconds=round(statistics.fmean(sum(v for k, v in c.items() if k != OTHER_PROCESSES) for c in cpu), 2),
        peak_rss_mib=rss,
    )


def other_processes(results: Sequence[ContenderResult]) -> float:
    """CPU seconds other processes used during one round of every contender: the shared machine's noise."""
    return round(sum(result.cpu_seconds.get(OTHER_PROCESSES, 0.0) for result in results), 2)
