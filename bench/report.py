"""The report: the JSON file, the table on stdout, and the charts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from bench.results import Report, RunResult, ScenarioReport, to_json

if TYPE_CHECKING:
    from matplotlib.axes import Axes

TABLE_COLUMNS = (
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
    "function_cpu_ms_per_namespace",
)
#: Each contender's line in the charts: (RunResult field, label, matplotlib style).
LINES = (
    ("baseline_seconds", "baseline (Helm chart algorithm, sequential)", "s--"),
    ("rotation_seconds", "rotation (function over HTTP)", "o-"),
    ("raw_seconds", "raw capacity (GET + apply PATCH, no logic)", "^:"),
)


def matplotlib_missing() -> bool:
    """Whether the chart cannot be drawn (checked before a long run, not after it)."""
    try:
        import matplotlib as mpl  # noqa: F401, PLC0415 - a dev-only dependency, needed for the chart only
    except ImportError:
        return True
    return False


def write(report: Report | ScenarioReport, path: Path) -> None:
    """Write the report as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(report) + "\n", encoding="utf-8")


def print_summary(report: Report) -> None:
    """The headline numbers, one row per run, then the goals met or not."""
    columns = ("rtt_ms", *TABLE_COLUMNS) if report.settings.rtt_ms is not None else TABLE_COLUMNS
    print(" | ".join(columns))
    for run in report.runs:
        print(" | ".join(str(getattr(run, column)) for column in columns))
    for verdict in report.goals or ():
        status = "met" if verdict.met else "NOT met"
        print(f"goal {verdict.field} {verdict.goal} at N={verdict.namespaces}: {verdict.value} ({status})")


@contextmanager
def _figure(path: Path, note: str, panels: int) -> Iterator[Sequence[Axes]]:
    """A figure of ``panels`` side by side; yields their axes, then saves the figure to ``path``."""
    import matplotlib as mpl  # noqa: PLC0415 - a dev-only dependency, needed here only

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    size = (7.5, 4.8) if panels == 1 else (4.2 * panels, 4.2)
    figure, axes = plt.subplots(1, panels, figsize=size, dpi=120, squeeze=False)
    yield axes[0]
    figure.text(0.01, 0.01, note, fontsize=6, alpha=0.7)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def _plot(axes: Axes, runs: Sequence[RunResult], x_field: str) -> None:
    """One line per contender: its seconds against ``x_field``."""
    runs = sorted(runs, key=lambda run: getattr(run, x_field))
    for field, label, style in LINES:
        axes.plot([getattr(run, x_field) for run in runs], [getattr(run, field) for run in runs], style, label=label)
    axes.grid(visible=True, which="both", alpha=0.3)
    axes.legend(fontsize=8)


def draw_chart(report: Report, path: Path) -> None:
    """Seconds against namespaces for the three contenders (log-log)."""
    with _figure(path, report.machine, 1) as (axes,):
        _plot(axes, report.runs, "namespaces")
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("namespaces")
        axes.set_ylabel("seconds per rotation (median, steady state)")
        axes.set_title("Pull-secret rotation cost", fontsize=11)


def draw_latency_chart(report: Report, path: Path) -> None:
    """Seconds against the added RTT, one panel per N, for the three contenders."""
    sizes = sorted({run.namespaces for run in report.runs})
    note = report.machine + "; delay added by devkit/faultproxy.py on loopback"
    with _figure(path, note, len(sizes)) as panels:
        for axes, size in zip(panels, sizes, strict=True):
            runs = [run for run in report.runs if run.namespaces == size]
            _plot(axes, runs, "rtt_ms")
            axes.set_title(f"{size:,} namespaces", fontsize=10)
            axes.set_xlabel("added round-trip time to kube-apiserver (ms)")
            axes.set_ylabel("seconds per rotation (median)")
            axes.set_xticks(sorted({run.rtt_ms for run in runs if run.rtt_ms is not None}))


def draw(report: Report, path: Path) -> None:
    """The chart the report's scenario calls for."""
    (draw_chart if report.settings.rtt_ms is None else draw_latency_chart)(report, path)


def print_scenario(report: ScenarioReport) -> None:
    """Each setting's contenders (median seconds, writes and Events per namespace), then its figures."""
    for run in report.runs:
        print(f"{report.scenario}, {run.setting}, {run.clusters} x {run.namespaces} namespaces:")
        for result in run.contenders:
            rss = "" if result.peak_rss_mib is None else f", peak RSS {sum(result.peak_rss_mib.values()):.1f} MiB"
            print(
                f"  {result.name}: {result.seconds} s over {result.namespaces} namespaces, "
                f"{result.writes_per_namespace} writes and {result.events_per_namespace} Events per namespace{rss}"
            )
        for found in run.figures:
            verdict = "" if found.goal is None else f" (goal {found.goal}: {'met' if found.met else 'NOT met'})"
            print(f"  {found.name} = {found.value}{verdict}")
        noise = run.other_processes_cpu_seconds_per_round
        print(f"  other processes: {noise} CPU-s per round; 1-minute load {run.load_average_1min}")


def draw_scenario(report: ScenarioReport, path: Path) -> None:
    """One panel per setting and size: each contender's median seconds as a bar, its samples as dots."""
    note = f"{report.machine}; {report.description}"
    with _figure(path, note, len(report.runs)) as panels:
        for axes, run in zip(panels, report.runs, strict=True):
            names = [result.name for result in run.contenders]
            axes.barh(names, [result.seconds for result in run.contenders], alpha=0.6)
            for row, result in enumerate(run.contenders):
                axes.plot(result.samples_seconds, [row] * len(result.samples_seconds), "k.", markersize=3)
            axes.invert_yaxis()
            axes.set_xlabel("seconds (median; dots: samples)")
            axes.set_title(f"{run.setting}, {run.clusters} x {run.namespaces:,} namespaces", fontsize=9)
            axes.grid(visible=True, axis="x", alpha=0.3)
            axes.tick_params(axis="y", labelsize=7)
