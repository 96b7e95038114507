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


@dataclass(frozen=True)
class Options:
    """What to measure and where to write it.

    ``rtt_ms`` selects the latency scenario (one fresh control plane per round-trip time, the contenders
    behind the delay proxy); ``None`` is the loopback scenario (one control plane for every size).
    """

    sizes: tuple[int, ...]
    repeats: int
    rtt_ms: tuple[float, ...] | None
    output: Path
    chart: Path | None  # None: no chart
    raw_concurrency: int
    max_parallel_writes: int | None
    profile: Path | None


def _ints(text: str) -> tuple[int, ...]:
    """A comma-separated list of whole numbers."""
    return tuple(int(part) for part in text.split(",") if part.strip())


def _floats(text: str) -> tuple[float, ...]:
    """A comma-separated list of numbers."""
    return tuple(float(part) for part in text.split(",") if part.strip())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Rotation cost at 10 to 1,000 namespaces.")
    add = parser.add_argument
    add("--sizes", type=_ints, help="comma-separated namespace counts (default: 10,100,1000; with --rtt-ms: 100,1000)")
    add("--repeats", type=int, help="steady-state runs per size; the median is reported (default: 5; with --rtt-ms: 3)")
    add(
        "--rtt-ms",
        type=_floats,
        help="latency scenario: comma-separated round-trip times in ms added between the clients and "
        "kube-apiserver by a loopback delay proxy, e.g. 0,2,10 (0: through the proxy, no delay); "
        f"writes {DEFAULT_LATENCY_OUTPUT.relative_to(REPO_ROOT)} instead",
    )
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
    latency = args.rtt_ms is not None
    options = Options(
        sizes=((100, 1000) if latency else (10, 100, 1000)) if args.sizes is None else args.sizes,
        repeats=(3 if latency else 5) if args.repeats is None else args.repeats,
        rtt_ms=args.rtt_ms,
        output=args.output or (DEFAULT_LATENCY_OUTPUT if latency else DEFAULT_OUTPUT),
        chart=None if args.no_chart else args.chart or (DEFAULT_LATENCY_CHART if latency else DEFAULT_CHART),
        raw_concurrency=args.raw_concurrency,
        max_parallel_writes=args.max_parallel_writes,
        profile=args.profile,
    )
    if options.repeats < 1 or min(options.sizes, default=0) < 1 or options.raw_concurrency < 1:
        parser.error("--repeats, --raw-concurrency and every size must be at least 1")
    if latency and (not args.rtt_ms or min(args.rtt_ms) < 0):
        parser.error("--rtt-ms takes one or more round-trip times of at least 0 ms")
    if latency and options.profile is not None:
        parser.error("--profile is for loopback runs only")
    return options
