"""One size measured: the three contenders interleaved round by round, so that drift hits all three alike.

The first round creates the secrets; the reported figures are medians of the later (steady-state) rounds.
Secret requests are counted by the apiserver's own metric, Crusoe calls from the emulator's request log,
CPU seconds of each process from ``/proc``, peak RSS from ``VmHWM`` of the function's process tree.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench import pyspy
from bench.accounting import CpuMeter, counted, peak_rss_mib, process_tree
from bench.contenders import ColdStart, Contenders, set_up
from bench.results import LoadAverage, PerContender, RunResult
from bench.scenarios import Environment

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})


@dataclass(frozen=True)
class Sample:
    """One round: rotation, baseline and raw, each run once over every namespace."""

    seconds: PerContender[float]
    requests: PerContender[dict[str, float]]  # secret requests by verb
    crusoe_calls: int  # of the rotation
    rotation_cpu: dict[str, float]  # CPU seconds by process during the rotation
    raw_cpu: dict[str, float]  # CPU seconds by process during the raw run


@dataclass(frozen=True)
class Meters:
    """Whose CPU is read around the rotation and around the raw run."""

    rotation: CpuMeter
    raw: CpuMeter

    @classmethod
    def of(cls, env: Environment, contenders: Contenders) -> Meters:
        """The function's tree, the servers and this process (the bench driver, the emulator, the raw client)."""
        function = process_tree(contenders.function.process.pid)
        own = (os.getpid(),)
        return cls(
            rotation=CpuMeter({"function": function, **env.servers, "bench driver + emulator": own}, others=True),
            raw=CpuMeter({"client": own, **env.servers}),
        )


def sample(env: Environment, contenders: Contenders, meters: Meters) -> Sample:
    """Run one round, counting requests and CPU around each contender (not around the counting itself)."""
    requests = PerContender[dict[str, float]]({}, {}, {})
    rotation_cpu: dict[str, float] = {}
    raw_cpu: dict[str, float] = {}
    api, server = env.admin, env.handle.server
    crusoe_before = len(env.emulator.requests)
    with counted(api, server, requests.rotation), meters.rotation.measure(rotation_cpu):
        rotation = contenders.run_rotation()
    crusoe_calls = len(env.emulator.requests) - crusoe_before
    with counted(api, server, requests.baseline):
        baseline = contenders.run_baseline()
    with counted(api, server, requests.raw), meters.raw.measure(raw_cpu):
        raw = contenders.run_raw()
    return Sample(PerContender(rotation, baseline, raw), requests, crusoe_calls, rotation_cpu, raw_cpu)


def _describe(samples: PerContender[float]) -> str:
    return f"rotation {samples.rotation:.2f} s, baseline {samples.baseline:.2f} s, raw {samples.raw:.2f} s"


def measure(env: Environment, size: int) -> RunResult:
    """Set up ``size`` namespaces and measure the three contenders on them."""

    def log(text: str) -> None:
        print(f"{env.label}[N={size}] {text}", flush=True)

    load_before = os.getloadavg()[0]
    with set_up(env, size) as contenders:
        cold = contenders.cold_start
        log(f"cold start {cold.seconds:.2f} s: ready {cold.ready_seconds:.2f} + first GET {cold.first_get_seconds:.2f}")
        meters = Meters.of(env, contenders)
        first = sample(env, contenders, meters)
        log(f"first (creating) runs: {_describe(first.seconds)}")
        steady = []
        for repeat in range(env.options.repeats):
            steady.append(sample(env, contenders, meters))
            log(f"repeat {repeat + 1}/{env.options.repeats}: {_describe(steady[-1].seconds)}")
        rss = peak_rss_mib(contenders.function.process.pid)
        if env.options.profile is not None:
            raw = env.options.profile / f"profile-{size}.txt"
            pyspy.profile(process_tree(contenders.function.process.pid)[-1], contenders.run_rotation, raw)
            raw.with_suffix(".summary.txt").write_text(pyspy.summarise(raw) + "\n", encoding="utf-8")
            log(f"profile: {raw.with_suffix('.summary.txt')}")
    load = LoadAverage(round(load_before, 2), round(os.getloadavg()[0], 2))
    result = summarise(size, first, steady, cold, rss, load)
    log(f"medians: {_describe(PerContender(result.rotation_seconds, result.baseline_seconds, result.raw_seconds))}")
    return dataclasses.replace(result, rtt_ms=env.rtt_ms, delay_check=env.delay_check)


def _per_namespace(counts: Sequence[Mapping[str, float]], size: int) -> dict[str, float]:
    """Requests by verb per namespace and round."""
    verbs = sorted({verb for count in counts for verb in count})
    return {verb: round(sum(count.get(verb, 0.0) for count in counts) / (size * len(counts)), 3) for verb in verbs}


def _writes(counts: Sequence[Mapping[str, float]], size: int) -> float:
    """Write requests per namespace and round."""
    writes = sum(value for count in counts for verb, value in count.items() if verb in WRITE_VERBS)
    return round(writes / (size * len(counts)), 3)


def _mean(cpu: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """CPU seconds by process, averaged over the rounds (every round has the same processes)."""
    return {name: statistics.fmean(round_cpu[name] for round_cpu in cpu) for name in cpu[0]}


def summarise(
    size: int, first: Sample, steady: Sequence[Sample], cold: ColdStart, rss: Mapping[str, float], load: LoadAverage
) -> RunResult:
    """The figures of one size, from its rounds: medians of the steady ones, the first one on its own."""
    seconds = PerContender.collect([s.seconds for s in steady])
    median = seconds.map(statistics.median)
    requests = PerContender.collect([s.requests for s in steady])
    rotation_cpu, raw_cpu = _mean([s.rotation_cpu for s in steady]), _mean([s.raw_cpu for s in steady])
    busy_share = sum(rotation_cpu.values()) / ((os.cpu_count() or 1) * statistics.fmean(seconds.rotation))
    return RunResult(
        namespaces=size,
        rotation_seconds=round(median.rotation, 3),
        baseline_seconds=round(median.baseline, 3),
        raw_seconds=round(median.raw, 3),
        speedup_vs_seed=round(median.baseline / median.rotation, 2),
        efficiency_vs_raw=round(median.raw / median.rotation, 2),
        writes_per_namespace=_writes(requests.rotation, size),
        crusoe_calls=max(s.crusoe_calls for s in steady),
        peak_rss_mib=round(sum(rss.values()), 1),
        cold_start_seconds=round(cold.seconds, 3),
        function_cpu_ms_per_namespace=round(1000 * rotation_cpu["function"] / size, 3),
        cold_start_ready_seconds=round(cold.ready_seconds, 3),
        cold_start_first_get_seconds=round(cold.first_get_seconds, 3),
        peak_rss_mib_by_process=dict(rss),
        rotation_samples_seconds=_rounded(seconds.rotation, 3),
        baseline_samples_seconds=_rounded(seconds.baseline, 3),
        raw_samples_seconds=_rounded(seconds.raw, 3),
        first_run_seconds=first.seconds.map(lambda value: round(value, 3)),
        first_rotation_writes_per_namespace=_writes([first.requests.rotation], size),
        crusoe_calls_first_rotation=first.crusoe_calls,
        secret_requests_per_namespace=requests.map(lambda counts: _per_namespace(counts, size)),
        baseline_writes_per_namespace=_writes(requests.baseline, size),
        rotation_cpu_seconds={name: round(value, 2) for name, value in rotation_cpu.items()},
        # CPU used during a rotation over the CPU the machine had: near 1.0 means every core was busy.
        rotation_machine_busy_share=round(busy_share, 2),
        raw_cpu_seconds={name: round(value, 2) for name, value in raw_cpu.items()},
        raw_client_cpu_ms_per_namespace=round(1000 * raw_cpu["client"] / size, 3),
        load_average_1min=load,
    )


def _rounded(values: Sequence[float], digits: int) -> tuple[float, ...]:
    return tuple(round(value, digits) for value in values)
