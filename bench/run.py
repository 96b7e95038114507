"""The one runner: every scenario's environment, every size in it, then the report."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from bench import fleet_scenarios, report
from bench.accounting import machine_description
from bench.cli import COMPARE, Options, parse_args
from bench.measure import measure
from bench.results import Report, RunResult, Settings, goals
from bench.scenarios import environment
from devkit.binaries import ETCD, Binary, resolve_all
from devkit.crusoe_emulator import format_time

LATENCY_SCENARIO = (
    "latency: the function, the baseline and the raw client reach kube-apiserver through "
    "devkit/faultproxy.py on 127.0.0.1, which delays each direction by rtt_ms / 2 (and a new "
    "connection's first bytes by one more RTT); kube-apiserver to etcd, the Crusoe emulator, the "
    "HTTP call into the function, setup and request counting are not delayed"
)


def run_all(options: Options, binaries: Mapping[str, Binary]) -> tuple[list[RunResult], str]:
    """Measure every size in every scenario environment (one for loopback, one per RTT).

    Returns:
        The runs, and the version of kube-apiserver they ran against.
    """
    runs: list[RunResult] = []
    version = "unknown"
    for rtt_ms in options.rtt_ms or (None,):
        with environment(options, binaries, rtt_ms) as env:
            version = env.handle.version
            runs += [measure(env, size) for size in sorted(options.sizes)]
    return runs, version


def build_report(options: Options, runs: list[RunResult], versions: dict[str, str], seconds: float) -> Report:
    """The report of a finished run: goals for the loopback scenario, the setup for the latency one."""
    machine = machine_description()
    latency = options.rtt_ms is not None
    settings = Settings(
        repeats=options.repeats,
        raw_concurrency=options.raw_concurrency,
        max_parallel_writes=options.max_parallel_writes or "function default",
        rtt_ms=options.rtt_ms,
    )
    return Report(
        machine=machine.summary,
        machine_detail=machine,
        versions=versions,
        generated_at=format_time(datetime.now(UTC)),
        settings=settings,
        runs=tuple(runs),
        total_seconds=round(seconds, 1),
        scenario=LATENCY_SCENARIO if latency else None,
        goals=None if latency else goals(runs),
    )


def _side_by_side(options: Options, binaries: Mapping[str, Binary]) -> int:
    """Run one of the fleet scenarios (``bench/fleet.py``) and write its results."""
    versions = {"etcd": binaries[ETCD].version, "python": platform.python_version()}
    result = fleet_scenarios.run_scenario(options, binaries, versions)
    report.write(result, options.output)
    report.print_scenario(result)
    if options.chart is not None:
        report.draw_scenario(result, options.chart)
        print(f"chart: {options.chart}")
    print(f"results: {options.output} ({result.total_seconds} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the bench as the command line asks and write its results."""
    options = parse_args(argv)
    if options.chart is not None and report.matplotlib_missing():
        print("matplotlib is not installed (a dev dependency): install it, or pass --no-chart", file=sys.stderr)
        return 2
    started = time.perf_counter()
    binaries = resolve_all(os.environ, allow_build=False)
    if options.scenario != COMPARE:
        return _side_by_side(options, binaries)
    runs, apiserver_version = run_all(options, binaries)
    versions = {
        "kube-apiserver": apiserver_version,
        "etcd": binaries[ETCD].version,
        "python": platform.python_version(),
    }
    result = build_report(options, runs, versions, time.perf_counter() - started)
    report.write(result, options.output)
    report.print_summary(result)
    if options.chart is not None:
        report.draw(result, options.chart)
        print(f"chart: {options.chart}")
    print(f"results: {options.output} ({result.total_seconds} s)")
    return 0
