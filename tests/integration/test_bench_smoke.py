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
        if os.environ.get("REQUIRE_CLUSTER") == "1":
            pytest.fail(f"REQUIRE_CLUSTER=1 but the control plane binaries are missing: {exc}", pytrace=False)
        pytest.skip(f"no control plane binaries: {exc}")


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
