"""The latency scenario's network: the delay proxy in front of kube-apiserver, and a check of its delay.

In production the function talks to a remote apiserver, where round trips, not this machine's two cores,
dominate; loopback alone cannot show that. Why a proxy and not ``tc netem``: see ``devkit/faultproxy.py``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from bench.results import DelayCheck, PathTimings
from devkit import REPO_ROOT
from devkit.cluster import ClusterHandle
from devkit.loopback import LOOPBACK

SAMPLES = 21


@contextmanager
def delay_proxy(upstream: str, rtt_ms: float, log_path: Path) -> Iterator[tuple[str, int]]:
    """Run ``devkit/faultproxy.py``'s delay layer in front of kube-apiserver; yield its URL and pid, then stop it.

    The proxy is a separate process, so its CPU is neither the bench driver's GIL nor "other processes".
    """
    argv = [sys.executable, "-m", "devkit.faultproxy", "--upstream-port", upstream.rsplit(":", 1)[1]]
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [*argv, "--rtt-ms", f"{rtt_ms:g}"], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log
        )
    try:
        assert process.stdout is not None  # noqa: S101 - stdout=PIPE above
        line = process.stdout.readline()  # b"" if it exits before listening
        if not line:
            raise RuntimeError(f"the delay proxy exited with {process.wait()}; see {log_path}")
        yield f"https://{LOOPBACK}:{int(json.loads(line)['port'])}", process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _admin_session(handle: ClusterHandle, pki: Path) -> requests.Session:
    """A session that authenticates as the cluster admin, with the certificates written to ``pki``."""
    pki.mkdir(mode=0o700, exist_ok=True)
    files = {"ca.crt": handle.credentials.ca_cert, "admin.crt": handle.credentials.admin_cert}
    files["admin.key"] = handle.credentials.admin_key
    for name, data in files.items():
        (pki / name).write_bytes(data)
        (pki / name).chmod(0o600)
    session = requests.Session()
    session.trust_env = False
    session.verify = str(pki / "ca.crt")
    session.cert = (str(pki / "admin.crt"), str(pki / "admin.key"))
    return session


def _timings(session: requests.Session, base: str, pause_s: float | None) -> PathTimings:
    """Time ``/version`` (a new connection, then kept alive) and an etcd read on one path.

    With ``pause_s``, ``/version`` is also timed after that pause before each request.
    """

    def ms(path: str, pause: float = 0.0) -> float:
        time.sleep(pause)
        started = time.perf_counter()
        session.get(f"{base}{path}", timeout=30).raise_for_status()
        return (time.perf_counter() - started) * 1000

    def median(path: str, pause: float = 0.0) -> float:
        return round(statistics.median(ms(path, pause) for _ in range(SAMPLES)), 2)

    first = round(ms("/version"), 2)
    version, etcd_read = median("/version"), median("/api/v1/namespaces/default")
    after_pause = None if pause_s is None else median("/version", pause_s)
    return PathTimings(first, version, etcd_read, after_pause)


def delay_check(handle: ClusterHandle, proxy_url: str, workdir: Path, rtt_ms: float) -> DelayCheck:
    """Time the same admin requests direct and through the proxy: the delay is real, and only on that path.

    ``GET /version`` is answered by kube-apiserver alone; ``GET /api/v1/namespaces/default`` is a quorum
    read that kube-apiserver forwards to etcd. If the etcd leg were delayed, the direct read would be slow
    too. Medians of 21 requests on a kept-alive connection, plus the first request of a new connection
    (TCP and TLS handshakes included), in milliseconds.

    Through the proxy, kube-apiserver sits idle for an RTT between two requests, and on this VM a request
    after a pause of 5 ms or more costs about 1 ms more than one sent back to back. So the direct path is
    also timed with a pause of ``rtt_ms`` before each request: the proxy's own share is the difference.
    """
    with _admin_session(handle, workdir / "delay-check") as session:
        direct = _timings(session, handle.server, rtt_ms / 1000)
    with _admin_session(handle, workdir / "delay-check") as session:
        proxied = _timings(session, proxy_url, None)
    assert direct.version_after_rtt_pause_ms is not None  # noqa: S101 - timed with a pause above
    return DelayCheck(
        direct=direct,
        through_proxy=proxied,
        added_rtt_measured_ms=round(proxied.version_ms - direct.version_ms, 2),
        added_rtt_net_of_idle_wakeup_ms=round(proxied.version_ms - direct.version_after_rtt_pause_ms, 2),
    )
