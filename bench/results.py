"""What a bench run records: typed, frozen records, the goals they are judged by, and their JSON form.

The field names are those of the JSON files in ``bench/results`` (older files stay comparable); nested
mappings keyed by data (HTTP verbs, process names, pids) stay mappings.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")

#: Goals at the largest N: (field, comparison, limit). Issue 5's, and issue 9's client CPU per namespace.
GOALS: tuple[tuple[str, str, float], ...] = (
    ("rotation_seconds", "<=", 5.0),
    ("speedup_vs_seed", ">=", 5.0),
    ("efficiency_vs_raw", ">=", 0.8),
    ("writes_per_namespace", "<=", 1.0),
    ("peak_rss_mib", "<=", 150.0),
    ("cold_start_seconds", "<=", 1.5),
    ("function_cpu_ms_per_namespace", "<=", 2.5),
)
#: Field names whose JSON key is not a Python identifier.
_JSON_NAMES = {"through_proxy": "through proxy"}


@dataclass(frozen=True)
class PerContender(Generic[T]):
    """One figure for each of the three contenders."""

    rotation: T
    baseline: T
    raw: T

    def map(self, function: Callable[[T], U]) -> PerContender[U]:
        """``function`` applied to each contender's figure."""
        return PerContender(function(self.rotation), function(self.baseline), function(self.raw))

    @staticmethod
    def collect(items: Sequence[PerContender[T]]) -> PerContender[tuple[T, ...]]:
        """Each contender's figures from several rounds, in order."""
        return PerContender(
            tuple(item.rotation for item in items),
            tuple(item.baseline for item in items),
            tuple(item.raw for item in items),
        )


@dataclass(frozen=True)
class LoadAverage:
    """The 1-minute load before and after one size: far above what the run makes means noisy numbers."""

    before: float
    after: float


@dataclass(frozen=True)
class PathTimings:
    """Admin requests on one path to kube-apiserver, in milliseconds (medians, but the new connection)."""

    new_connection_version_ms: float
    version_ms: float
    etcd_read_ms: float
    version_after_rtt_pause_ms: float | None = None  # direct path only


@dataclass(frozen=True)
class DelayCheck:
    """The delay proxy's delay, measured: real, and only on the path to kube-apiserver."""

    direct: PathTimings
    through_proxy: PathTimings
    added_rtt_measured_ms: float
    added_rtt_net_of_idle_wakeup_ms: float


@dataclass(frozen=True)
class RunResult:
    """One size measured: the headline figures first, then what they are made of."""

    namespaces: int
    rotation_seconds: float
    baseline_seconds: float
    raw_seconds: float
    speedup_vs_seed: float
    efficiency_vs_raw: float
    writes_per_namespace: float
    crusoe_calls: int
    peak_rss_mib: float
    cold_start_seconds: float
    function_cpu_ms_per_namespace: float
    cold_start_ready_seconds: float
    cold_start_first_get_seconds: float
    peak_rss_mib_by_process: dict[str, float]
    rotation_samples_seconds: tuple[float, ...]
    baseline_samples_seconds: tuple[float, ...]
    raw_samples_seconds: tuple[float, ...]
    first_run_seconds: PerContender[float]
    first_rotation_writes_per_namespace: float
    crusoe_calls_first_rotation: int
    secret_requests_per_namespace: PerContender[dict[str, float]]
    baseline_writes_per_namespace: float
    rotation_cpu_seconds: dict[str, float]
    rotation_machine_busy_share: float
    raw_cpu_seconds: dict[str, float]
    raw_client_cpu_ms_per_namespace: float
    load_average_1min: LoadAverage
    rtt_ms: float | None = None  # latency scenario only
    delay_check: DelayCheck | None = None  # latency scenario only


@dataclass(frozen=True)
class Machine:
    """Cores, CPU model, memory and OS: what the numbers are only true for."""

    summary: str
    cores: int
    cpu_model: str
    memory_gib: float
    kernel: str


@dataclass(frozen=True)
class Settings:
    """The options the numbers were measured with."""

    repeats: int
    raw_concurrency: int
    max_parallel_writes: int | str
    statistic: str = "median of the steady-state repeats (secrets already exist)"
    rtt_ms: tuple[float, ...] | None = None  # latency scenario only


@dataclass(frozen=True)
class Verdict:
    """One goal at the largest N: the value, the limit, met or not."""

    namespaces: int
    field: str
    goal: str
    value: float
    met: bool


@dataclass(frozen=True)
class Report:
    """A whole bench run, as written to ``bench/results``."""

    machine: str
    machine_detail: Machine
    versions: dict[str, str]
    generated_at: str
    settings: Settings
    runs: tuple[RunResult, ...]
    total_seconds: float
    scenario: str | None = None  # latency scenario only
    goals: tuple[Verdict, ...] | None = None  # loopback scenario only


@dataclass(frozen=True)
class ContenderResult:
    """One contender of a side-by-side scenario: its median, its samples, what it sent and what it cost."""

    name: str
    seconds: float  # median of the steady-state rounds
    samples_seconds: tuple[float, ...]
    first_run_seconds: float  # the first round (the secrets may not exist yet)
    namespaces: int  # namespaces one run covers, over every cluster
    writes_per_namespace: float  # secret writes counted by the apiservers, per namespace and round
    events_per_namespace: float  # Event creates counted by the apiservers, per namespace and round
    requests_per_namespace: dict[str, float]  # "resource VERB" -> per namespace and round
    cpu_seconds: dict[str, float]  # by process, mean of the steady-state rounds
    #: The CPU the run itself needed (every process above but "other processes"): on a CPU-bound machine,
    #: what the seconds would be proportional to without the other users' noise.
    own_cpu_seconds: float
    peak_rss_mib: dict[str, float] | None = None  # the function's process tree by pid (functions only)


@dataclass(frozen=True)
class Figure:
    """A derived figure of a scenario (a ratio of medians, a peak), with its goal when it has one."""

    name: str
    value: float
    goal: str | None = None  # e.g. "<= 1.15"
    met: bool | None = None


@dataclass(frozen=True)
class ScenarioRun:
    """One setting of a side-by-side scenario (loopback, or one RTT): every contender, interleaved round by round."""

    scenario: str
    setting: str
    namespaces: int  # per cluster
    clusters: int
    setup_seconds: float
    contenders: tuple[ContenderResult, ...]
    figures: tuple[Figure, ...]
    load_average_1min: LoadAverage
    other_processes_cpu_seconds_per_round: float  # the shared machine's noise, summed over a round's contenders
    rtt_ms: float | None = None
    delay_check: DelayCheck | None = None


@dataclass(frozen=True)
class ScenarioReport:
    """A side-by-side scenario's run (``--scenario wide|fleet|dryrun-status|events``), as written to bench/results."""

    scenario: str
    description: str
    machine: str
    machine_detail: Machine
    versions: dict[str, str]
    generated_at: str
    repeats: int
    statistic: str
    runs: tuple[ScenarioRun, ...]
    total_seconds: float


def figure(name: str, value: float, goal: tuple[str, float] | None = None) -> Figure:
    """A figure rounded for the report, judged against ``goal`` (comparison, limit) when given."""
    if goal is None:
        return Figure(name, round(value, 3))
    comparison, limit = goal
    met = value <= limit if comparison == "<=" else value >= limit
    return Figure(name, round(value, 3), f"{comparison} {limit:g}", met)


def goals(runs: Sequence[RunResult]) -> tuple[Verdict, ...]:
    """Each goal at the largest N measured."""
    largest = max(runs, key=lambda run: run.namespaces)
    verdicts = []
    for name, comparison, limit in GOALS:
        value = getattr(largest, name)
        met = value <= limit if comparison == "<=" else value >= limit
        verdicts.append(Verdict(largest.namespaces, name, f"{comparison} {limit:g}", value, met))
    return tuple(verdicts)


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A record's JSON object: fields of the other scenario (``None``) left out, keys as the files spell them."""
    return {_JSON_NAMES.get(name, name): value for name, value in pairs if value is not None}


def to_json(record: Report | RunResult | DelayCheck | ScenarioReport, indent: int | None = 2) -> str:
    """The record as JSON, with ``dataclasses.asdict`` (so nested records become objects too)."""
    return json.dumps(dataclasses.asdict(record, dict_factory=_json_object), indent=indent)
