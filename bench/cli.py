"""The command line: options, parsed once into a frozen ``Options``; the defaults are what ``make bench`` runs."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from devkit import REPO_ROOT

DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "latest.json"
DEFAULT_CHART = REPO_ROOT / "docs" / "benchmarks.png"
DEFAULT_LATENCY_OUTPUT = REPO_ROOT / "bench" / "results" / "latency.json"
DEFAULT_LATENCY_CHART = REPO_ROOT / "docs" / "benchmarks-latency.png"
COMPARE = "compare"
#: Each scenario's default sizes and repeats (``compare`` is the default run; with --rtt-ms its latency form).
SCENARIO_DEFAULTS: dict[str, tuple[tuple[int, ...], int]] = {
    COMPARE: ((10, 100, 1000), 5),
    "latency": ((100, 1000), 3),
    "wide": ((10000,), 3),
    "fleet": ((250,), 3),
    "dryrun-status": ((1000,), 5),
    "events": ((1000,), 3),
}


@dataclass(frozen=True)
class Options:
    """What to measure and where to write it.

    ``rtt_ms`` selects the latency scenario (one fresh control plane per round-trip time, the contenders
    behind the delay proxy); ``None`` is the loopback scenario (one control plane for every size). Any
    other ``scenario`` is one of the fleet scenarios (``bench/fleet.py``), where ``rtt_ms`` lists the RTTs
    it runs at (the defaults: see ``bench/fleet_scenarios.settings``).
    """

    sizes: tuple[int, ...]
    repeats: int
    rtt_ms: tuple[float, ...] | None
    output: Path
    chart: Path | None  # None: no chart
    raw_concurrency: int
    max_parallel_writes: int | None
    profile: Path | None
    scenario: str = COMPARE
    clusters: int = 4  # the fleet scenario's


def _default_files(scenario: str, *, latency: bool) -> tuple[Path, Path]:
    """Where a scenario writes its results and its chart unless told otherwise."""
    if scenario != COMPARE:
        return REPO_ROOT / "bench" / "results" / f"{scenario}.json", REPO_ROOT / "docs" / f"benchmarks-{scenario}.png"
    return (DEFAULT_LATENCY_OUTPUT, DEFAULT_LATENCY_CHART) if latency else (DEFAULT_OUTPUT, DEFAULT_CHART)


def _ints(text: str) -> tuple[int, ...]:
    """A comma-separated list of whole numbers."""
    return tuple(int(part) for part in text.split(",") if part.strip())


def _floats(text: str) -> tuple[float, ...]:
    """A comma-separated list of numbers."""
    return tuple(float(part) for part in text.split(",") if part.strip())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Rotation cost at 10 to 1,000 namespaces.")
    add = parser.add_argument
    add(
        "--sizes",
        type=_ints,
        help="comma-separated namespace counts, per cluster (default: 10,100,1000; with --rtt-ms: 100,1000; "
        "wide: 10000; fleet: 250; dryrun-status and events: 1000)",
    )
    add(
        "--repeats",
        type=int,
        help="steady-state runs per size; the median is reported (default: 5; with --rtt-ms, wide, fleet and "
        "events: 3)",
    )
    add(
        "--rtt-ms",
        type=_floats,
        help="latency scenario: comma-separated round-trip times in ms added between the clients and "
        "kube-apiserver by a loopback delay proxy, e.g. 0,2,10 (0: through the proxy, no delay); "
        f"writes {DEFAULT_LATENCY_OUTPUT.relative_to(REPO_ROOT)} instead",
    )
    add(
        "--scenario",
        choices=[name for name in SCENARIO_DEFAULTS if name != "latency"],
        default=COMPARE,
        help="compare (default): rotation, baseline and raw at each size; wide: TARGET_NAMESPACES=* over 10,000 "
        "namespaces; fleet: --clusters clusters x 250 namespaces against 1 at 10 ms RTT; dryrun-status: a dry "
        "run and a status call against a rotation; events: EVENTS=all against =failures on loopback and at "
        "10 ms RTT (see bench/fleet.py)",
    )
    add("--clusters", type=int, default=4, help="control planes of the fleet scenario (default: 4)")
    add("--output", type=Path, help="where to write the JSON results (default: see --rtt-ms)")
    add("--chart", type=Path, help="where to write the PNG chart")
    add("--no-chart", action="store_true", help="skip the chart (no matplotlib needed)")
    add("--raw-concurrency", type=int, default=32, help="threads of the raw-capacity client")
    add("--max-parallel-writes", type=int, help="MAX_PARALLEL_WRITES for the function (default: its own)")
    add(
        "--profile",
        type=Path,
        metavar="DIR",
        help="after measuring each size, profile one extra rotation with py-spy into DIR",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> Options:
    """Parse and check the command line; exits with a usage message on bad input."""
    parser = _parser()
    args = parser.parse_args(argv)
    latency = args.rtt_ms is not None and args.scenario == COMPARE
    sizes, repeats = SCENARIO_DEFAULTS["latency" if latency else args.scenario]
    output, chart = _default_files(args.scenario, latency=latency)
    options = Options(
        sizes=sizes if args.sizes is None else args.sizes,
        repeats=repeats if args.repeats is None else args.repeats,
        rtt_ms=args.rtt_ms,
        output=args.output or output,
        chart=None if args.no_chart else args.chart or chart,
        raw_concurrency=args.raw_concurrency,
        max_parallel_writes=args.max_parallel_writes,
        profile=args.profile,
        scenario=args.scenario,
        clusters=args.clusters,
    )
    if options.clusters < 1:
        parser.error("--clusters must be at least 1")
    if options.repeats < 1 or min(options.sizes, default=0) < 1 or options.raw_concurrency < 1:
        parser.error("--repeats, --raw-concurrency and every size must be at least 1")
    if args.rtt_ms is not None and (not args.rtt_ms or min(args.rtt_ms) < 0):
        parser.error("--rtt-ms takes one or more round-trip times of at least 0 ms")
    if options.profile is not None and (latency or options.scenario != COMPARE):
        parser.error("--profile is for the loopback compare scenario only")
    return options
