"""Smoke run of the benchmark (N=10, one repeat): the bench code works end to end and writes its JSON.

It runs ``python -m bench`` as ``make bench`` does, as a separate process with its own control plane, so a
broken benchmark is caught by ``make test`` without paying for the real (1,000-namespace) run. It checks
the shape of the results, not the speed: timing assertions belong to no test on a shared 2-core machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from devkit import REPO_ROOT
from devkit.binaries import BinaryNotFoundError, resolve_all
from devkit.pytest_plugin import unavailable

pytestmark = pytest.mark.integration
RUN_FIELDS = {
    "namespaces": int,
    "rotation_seconds": float,
    "baseline_seconds": float,
    "raw_seconds": float,
    "speedup_vs_seed": float,
    "efficiency_vs_raw": float,
    "writes_per_namespace": float,
    "crusoe_calls": int,
    "peak_rss_mib": float,
    "cold_start_seconds": float,
    "cold_start_ready_seconds": float,
    "cold_start_first_get_seconds": float,
    "function_cpu_ms_per_namespace": float,
    "raw_client_cpu_ms_per_namespace": float,
}


@pytest.fixture(scope="module")
def binaries_present() -> None:
    try:
        resolve_all(os.environ, allow_build=False)
    except BinaryNotFoundError as exc:
        unavailable(f"no control plane binaries: {exc}")


@pytest.mark.timeout(120)
def test_bench_smoke_run_writes_every_field(binaries_present, tmp_path):
    output = tmp_path / "latest.json"
    argv = [sys.executable, "-m", "bench", "--sizes", "10", "--repeats", "1", "--output", str(output), "--no-chart"]
    bench = subprocess.run(argv, check=False, cwd=REPO_ROOT, capture_output=True, timeout=110)
    assert bench.returncode == 0, bench.stdout.decode()[-3000:] + bench.stderr.decode()[-3000:]
    result = json.loads(output.read_text(encoding="utf-8"))
    assert isinstance(result["machine"], str)
    assert result["machine"]
    [run] = result["runs"]
    for name, kind in RUN_FIELDS.items():
        assert isinstance(run[name], int | float), name
        if kind is int:
            assert isinstance(run[name], int), name
    assert run["namespaces"] == 10
    assert run["rotation_seconds"] > 0
    assert run["baseline_seconds"] > 0
    assert run["raw_seconds"] > 0
    assert run["cold_start_seconds"] == pytest.approx(
        run["cold_start_ready_seconds"] + run["cold_start_first_get_seconds"], abs=0.002
    )
    assert set(run["rotation_cpu_seconds"]) >= {"function", "kube-apiserver", "etcd", "other processes"}
    # Counted, not timed: these hold on any machine.
    assert run["writes_per_namespace"] == 1.0
    assert run["secret_requests_per_namespace"]["baseline"] == {"GET": 1.0, "PUT": 1.0}
    assert run["crusoe_calls"] in {2, 3}  # mint, list, and a revocation once there is an old token
    assert {goal["field"] for goal in result["goals"]} == {
        "rotation_seconds",
        "speedup_vs_seed",
        "efficiency_vs_raw",
        "writes_per_namespace",
        "peak_rss_mib",
        "cold_start_seconds",
        "function_cpu_ms_per_namespace",
    }


#: Each fleet scenario at a tiny size: its extra options, and the contenders it must report.
SCENARIO_SMOKE = {
    "wide": (["--sizes", "5"], {"rotation EVENTS=all", "rotation EVENTS=failures", "raw"}),
    "fleet": (
        ["--sizes", "3", "--clusters", "2", "--rtt-ms", "2"],
        {"rotation 2 clusters", "rotation 1 cluster", "raw 2 clusters", "raw 1 cluster"},
    ),
    "dryrun-status": (["--sizes", "5"], {"rotation EVENTS=all", "rotation EVENTS=failures", "dry run", "status"}),
    "events": (["--sizes", "5", "--rtt-ms", "2"], {"rotation EVENTS=all", "rotation EVENTS=failures", "raw"}),
}


def _scenario_run(name: str, extra: list[str], output) -> dict:
    argv = [sys.executable, "-m", "bench", "--scenario", name, "--repeats", "1", "--output", str(output), "--no-chart"]
    bench = subprocess.run([*argv, *extra], check=False, cwd=REPO_ROOT, capture_output=True, timeout=50)
    assert bench.returncode == 0, bench.stdout.decode()[-3000:] + bench.stderr.decode()[-3000:]
    return json.loads(output.read_text(encoding="utf-8"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(SCENARIO_SMOKE))
def test_bench_scenario_smoke_run_reports_every_contender(binaries_present, tmp_path, name):
    extra, contenders = SCENARIO_SMOKE[name]
    result = _scenario_run(name, extra, tmp_path / f"{name}.json")
    assert result["scenario"] == name
    assert result["runs"]
    for run in result["runs"]:
        by_name = {contender["name"]: contender for contender in run["contenders"]}
        assert set(by_name) == contenders
        assert all(contender["seconds"] > 0 for contender in by_name.values())
        assert run["figures"]
        assert all(isinstance(found["value"], int | float) for found in run["figures"])
        # Counted, not timed: every rotation writes each namespace once, and only EVENTS=all records Events.
        for contender_name, contender in by_name.items():
            if contender_name.startswith("rotation"):
                assert contender["writes_per_namespace"] == 1.0, contender_name
                assert contender["events_per_namespace"] == (0.0 if "failures" in contender_name else 1.0)
                assert contender["peak_rss_mib"]
        assert "other processes" in run["contenders"][0]["cpu_seconds"]
    if name == "dryrun-status":
        [run] = result["runs"]
        dry = next(c for c in run["contenders"] if c["name"] == "dry run")
        assert dry["writes_per_namespace"] == 0.0  # the server-side dry run writes nothing
    if name == "events":
        assert [run["setting"] for run in result["runs"]] == ["loopback", "RTT 2 ms"]
