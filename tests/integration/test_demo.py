"""``make demo`` keeps working: it is the first thing a newcomer runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_to_completion(control_plane):  # the fixture proves binaries exist (or fails under CI)
    env = {**os.environ, "PYTHONPATH": "function"}
    result = subprocess.run(
        [sys.executable, "-m", "devkit.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Second rotation: HTTP 200" in result.stdout
    assert "ghcr.io, registry.us-east1-a.ccr.crusoecloudcompute.com" in result.stdout
    assert "Demo finished" in result.stdout
    assert "demo-new     created" in result.stdout  # created between the runs, selected by the glob
    assert "ghcr-login, crusoe-image-pull-secrets" in result.stdout  # the service account kept its entry
    assert "Status (GET): HTTP 200" in result.stdout
