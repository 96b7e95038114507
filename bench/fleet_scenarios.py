"""What each fleet scenario measures (its contenders and its goals), and the runner of all four.

See ``bench/fleet.py`` for the scenarios themselves. The goals are issue 10's; ratios are of medians
measured side by side in one run, so drift on the shared machine hits both sides alike.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from bench.accounting import machine_description
from bench.cli import Options
from bench.contenders import status_seconds
from bench.fleet import Site, by_name, cluster_entries, concurrently, dry_run, ratio, rotation, serving, sites
from bench.results import ContenderResult, Figure, LoadAverage, ScenarioReport, ScenarioRun, figure
from bench.scenarios import Environment, environments
from bench.side_by_side import Contender, other_processes, run_rounds
from devkit.binaries import Binary
from devkit.crusoe_emulator import format_time
from devkit.function import FunctionProcess

EVENTS_SETTINGS = ("all", "failures")  # the product default first
RAW = "raw"


def _rotation_name(events: str) -> str:
    return f"rotation EVENTS={events}"


@dataclass(frozen=True)
class Plan:
    """One setting's contenders, and the figures (with issue 10's goals) computed from their results."""

    contenders: list[Contender]
    figures: Callable[[dict[str, ContenderResult]], list[Figure]]


def _functions(stack: ExitStack, site: Site, variables: Mapping[str, str]) -> dict[str, FunctionProcess]:
    """One function per EVENTS setting, on ``site``, with ``variables`` too."""
    return {
        events: stack.enter_context(serving(site, events, {**variables, "EVENTS": events}))
        for events in EVENTS_SETTINGS
    }


@contextmanager
def wide(envs: Sequence[Environment], size: int) -> Iterator[Plan]:
    """``TARGET_NAMESPACES=*`` over every namespace (``size`` created, plus the cluster's own) against raw."""
    names = [f"bench-w-{index:05d}" for index in range(size)]
    with sites(envs[:1], names, every_namespace=True) as (site,), ExitStack() as stack:
        every = len(site.namespaces)
        functions = _functions(stack, site, {"TARGET_NAMESPACES": "*"})
        contenders = [rotation(_rotation_name(events), function, every) for events, function in functions.items()]

        def figures(results: dict[str, ContenderResult]) -> list[Figure]:
            found = []
            for events in EVENTS_SETTINGS:
                name, result = _rotation_name(events), results[_rotation_name(events)]
                found += [
                    *ratio(results, name, RAW, ("<=", 1.15)),
                    figure(
                        f"{name}: peak RSS MiB (master + worker)",
                        sum((result.peak_rss_mib or {}).values()),
                        ("<=", 250),
                    ),
                    figure(f"{name}: secret writes per namespace", result.writes_per_namespace, ("<=", 1.0)),
                ]
            return found

        yield Plan([*contenders, Contender(RAW, site.run_raw, every)], figures)


@contextmanager
def fleet(envs: Sequence[Environment], size: int) -> Iterator[Plan]:
    """Every cluster's ``size`` namespaces in one rotation, against the first cluster's alone (and raw both ways)."""
    names = [f"bench-f-{index:04d}" for index in range(size)]
    count = len(envs)
    with sites(envs, names) as group, ExitStack() as stack:
        many = stack.enter_context(serving(group[0], "fleet", {"CLUSTERS": cluster_entries(group, "fleet")}))
        one = stack.enter_context(serving(group[0], "single", {"CLUSTERS": cluster_entries(group[:1], "single")}))
        rotate_many, rotate_one = f"rotation {count} clusters", "rotation 1 cluster"
        raw_many, raw_one = f"raw {count} clusters", "raw 1 cluster"
        contenders = [
            rotation(rotate_many, many, count * size),
            rotation(rotate_one, one, size),
            Contender(raw_many, concurrently([site.run_raw for site in group]), count * size),
            Contender(raw_one, group[0].run_raw, size),
        ]

        def figures(results: dict[str, ContenderResult]) -> list[Figure]:
            return [
                *ratio(results, rotate_many, rotate_one, ("<=", 1.3)),
                *ratio(results, raw_many, raw_one, None),
                *ratio(results, raw_one, rotate_one, None),
                *ratio(results, raw_many, rotate_many, None),
            ]

        yield Plan(contenders, figures)


@contextmanager
def dryrun_status(envs: Sequence[Environment], size: int) -> Iterator[Plan]:
    """A dry run and a status call against a rotation, with either EVENTS setting."""
    names = [f"bench-d-{index:04d}" for index in range(size)]
    with sites(envs[:1], names) as (site,), ExitStack() as stack:
        functions = _functions(stack, site, {})
        default = functions[EVENTS_SETTINGS[0]]
        contenders = [rotation(_rotation_name(events), function, size) for events, function in functions.items()]
        contenders += [
            Contender("dry run", lambda: dry_run(default.url, size), size, default.process.pid),
            Contender("status", lambda: status_seconds(default.url), size, default.process.pid),
        ]

        def figures(results: dict[str, ContenderResult]) -> list[Figure]:
            found = []
            for events in EVENTS_SETTINGS:
                found += [
                    *ratio(results, "dry run", _rotation_name(events), ("<=", 1.2)),
                    *ratio(results, "status", _rotation_name(events), ("<=", 0.6)),
                ]
            return found

        yield Plan(contenders, figures)


@contextmanager
def events(envs: Sequence[Environment], size: int) -> Iterator[Plan]:
    """``EVENTS=all`` (one Event per namespace) against ``EVENTS=failures`` against raw capacity."""
    names = [f"bench-e-{index:04d}" for index in range(size)]
    with sites(envs[:1], names) as (site,), ExitStack() as stack:
        functions = _functions(stack, site, {})
        contenders = [rotation(_rotation_name(events), function, size) for events, function in functions.items()]

        def figures(results: dict[str, ContenderResult]) -> list[Figure]:
            every, failures = (_rotation_name(events) for events in EVENTS_SETTINGS)
            return [
                *ratio(results, RAW, every, (">=", 0.9)),
                *ratio(results, RAW, failures, (">=", 0.9)),
                *ratio(results, every, failures, None),
            ]

        yield Plan([*contenders, Contender(RAW, site.run_raw, size)], figures)


#: Each scenario: what it measures, and its description in the results file.
SCENARIOS: dict[str, tuple[Callable[[Sequence[Environment], int], AbstractContextManager[Plan]], str]] = {
    "wide": (wide, "TARGET_NAMESPACES=* over every namespace of one cluster, EVENTS=all and =failures, against raw"),
    "fleet": (fleet, "N clusters (one control plane and delay proxy each) in one rotation, against 1 cluster"),
    "dryrun-status": (dryrun_status, "a dry run and a status call against a rotation (EVENTS=all and =failures)"),
    "events": (events, "EVENTS=all against EVENTS=failures against raw capacity, on loopback and with an RTT"),
}


def settings(options: Options) -> tuple[float | None, ...]:
    """The network settings a scenario runs in, each in fresh control planes: loopback (None) or an RTT."""
    if options.scenario == "events":
        return (None, *(options.rtt_ms or (10.0,)))
    if options.scenario == "fleet":
        return options.rtt_ms or (10.0,)
    return options.rtt_ms or (None,)


def measure_scenario(options: Options, envs: Sequence[Environment], size: int) -> ScenarioRun:
    """Set one scenario up at ``size`` in these clusters and measure its contenders side by side."""
    rtt_ms = envs[0].rtt_ms
    setting = "loopback" if rtt_ms is None else f"RTT {rtt_ms:g} ms"

    def log(text: str) -> None:
        print(f"[{options.scenario}, {setting}, N={size}] {text}", flush=True)

    load_before, started = os.getloadavg()[0], time.perf_counter()
    with SCENARIOS[options.scenario][0](envs, size) as plan:
        setup = time.perf_counter() - started
        log(f"set up in {setup:.1f} s; contenders: {', '.join(c.name for c in plan.contenders)}")
        results = run_rounds(envs, plan.contenders, options.repeats, log)
    figures = plan.figures(by_name(results))
    for found in figures:
        log(
            f"{found.name}: {found.value}"
            + ("" if found.goal is None else f" (goal {found.goal}: {'met' if found.met else 'NOT met'})")
        )
    return ScenarioRun(
        scenario=options.scenario,
        setting=setting,
        namespaces=size,
        clusters=len(envs),
        setup_seconds=round(setup, 1),
        contenders=tuple(results),
        figures=tuple(figures),
        load_average_1min=LoadAverage(round(load_before, 2), round(os.getloadavg()[0], 2)),
        other_processes_cpu_seconds_per_round=other_processes(results),
        rtt_ms=rtt_ms,
        delay_check=envs[0].delay_check,
    )


def run_scenario(options: Options, binaries: Mapping[str, Binary], versions: dict[str, str]) -> ScenarioReport:
    """Every setting and size of ``options.scenario``, each setting in fresh control planes."""
    started = time.perf_counter()
    runs = []
    count = options.clusters if options.scenario == "fleet" else 1
    for rtt_ms in settings(options):
        with environments(options, binaries, rtt_ms, count) as envs:
            versions["kube-apiserver"] = envs[0].handle.version
            runs += [measure_scenario(options, envs, size) for size in sorted(options.sizes)]
    machine = machine_description()
    return ScenarioReport(
        scenario=options.scenario,
        description=SCENARIOS[options.scenario][1],
        machine=machine.summary,
        machine_detail=machine,
        versions=versions,
        generated_at=format_time(datetime.now(UTC)),
        repeats=options.repeats,
        statistic="median of the steady-state rounds; all contenders interleaved round by round",
        runs=tuple(runs),
        total_seconds=round(time.perf_counter() - started, 1),
    )
