"""The function as Cloud Run serves it: a real ``functions-framework`` process on loopback.

The demo, the bench and the integration tests start it here, the one way: the deployed entry point
(``function/main.py``, target ``rotate``), bound to 127.0.0.1 only, ready once it answers HTTP at all.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self

import requests

from devkit import REPO_ROOT
from devkit.loopback import LOOPBACK, free_port

MAIN = REPO_ROOT / "function" / "main.py"
FRAMEWORK = Path(sys.executable).with_name("functions-framework")
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class FunctionStartError(RuntimeError):
    """The function process exited or did not answer in time."""


@dataclass
class FunctionProcess:
    """A running function: its process, URL, and how long it took to answer its first request."""

    process: subprocess.Popen[bytes]
    url: str
    ready_seconds: float

    def stop(self) -> None:
        """SIGTERM (gunicorn stops its worker first), then SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_function(
    env: Mapping[str, str],
    *,
    output: IO[bytes] | int | None = subprocess.DEVNULL,
    timeout: float = READY_TIMEOUT_S,
) -> FunctionProcess:
    """Serve the rotator on a free loopback port and wait until it answers.

    Readiness is probed with ``OPTIONS``, which the function answers without reading its configuration or
    touching a cluster, so ``ready_seconds`` is the cold start: process start to the first answer.

    Args:
        env: the whole environment of the process (the function's variables among it).
        output: where its stdout and stderr go (a file, ``subprocess.PIPE``, or discarded).
        timeout: seconds to wait for the first answer.

    Raises:
        FunctionStartError: the process exited, or did not answer within ``timeout``.
    """
    port = free_port()
    url = f"http://{LOOPBACK}:{port}/"
    argv = [str(FRAMEWORK), "--source", str(MAIN), "--target", "rotate", "--host", LOOPBACK, "--port", str(port)]
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=dict(env), stdout=output, stderr=subprocess.STDOUT)
    function = FunctionProcess(process, url, 0.0)
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise FunctionStartError(f"functions-framework exited with {process.returncode} before answering")
        try:
            requests.options(url, timeout=5)
        except requests.ConnectionError:
            time.sleep(0.02)
            continue
        function.ready_seconds = time.perf_counter() - started
        return function
    function.stop()
    raise FunctionStartError(f"functions-framework did not answer within {timeout:.0f} s")
