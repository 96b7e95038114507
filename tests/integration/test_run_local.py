"""``make run`` as a user runs it: the launcher process, with the reloader on, bound to loopback only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from devkit import REPO_ROOT
from devkit.loopback import free_port

pytestmark = pytest.mark.integration


def listening_addresses(port: int) -> set[str]:
    """The local addresses (hex, as the kernel shows them) of TCP sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(address)
    return found


def test_run_local_binds_loopback_without_debugger_and_never_runs_env_as_shell(tmp_path):
    marker = tmp_path / "owned"
    env_file = tmp_path / ".env"
    env_file.write_text(f"TARGET_NAMESPACES=web, ml\nINJECTED=$(touch {marker})\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "DEBUG", "FLASK_DEBUG")}
    env["PORT"] = str(port)
    process = subprocess.Popen(
        [sys.executable, "-m", "devkit.run_local", "--env-file", str(env_file)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the reloader runs the server in a child: stop the whole group
    )
    try:
        deadline = time.monotonic() + 60
        while not listening_addresses(port):
            assert process.poll() is None, process.communicate()[0].decode()
            assert time.monotonic() < deadline, "the launcher did not listen within 60 s"
            time.sleep(0.05)
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only
        url = f"http://127.0.0.1:{port}/"
        assert requests.options(url, timeout=10).status_code == 405
        # With Flask's debugger on, this query serves the debugger's script from any path.
        probe = requests.get(url, params={"__debugger__": "yes", "cmd": "resource", "f": "debugger.js"}, timeout=10)
        assert probe.headers["Content-Type"] == "application/json"
        assert "invalid configuration" in probe.json()["error"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=15)[0].decode()
    assert "Debug mode: off" in output
    assert not marker.exists()
