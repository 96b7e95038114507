"""The two scenarios, as the environment the one runner measures sizes in.

- **loopback** (default): one control plane and emulator for every size; the contenders talk to
  kube-apiserver directly.
- **latency** (``--rtt-ms``): for each round-trip time a fresh control plane and emulator (same etcd size,
  namespace names free), and the contenders reach kube-apiserver through the delay proxy. Setup, request
  counting, kube-apiserver to etcd and the Crusoe emulator stay undelayed.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

from bench.accounting import server_processes
from bench.baseline import CrusoeAccess
from bench.cli import Options
from bench.latency import delay_check, delay_proxy
from bench.results import DelayCheck, to_json
from devkit import kube
from devkit.binaries import Binary
from devkit.cluster import ClusterHandle, ControlPlane
from devkit.crusoe_emulator import CrusoeEmulator

_Shared = tuple[CrusoeEmulator, CrusoeAccess, Path, Options]


@dataclass(frozen=True)
class Environment:
    """What stays the same across the sizes of one scenario: servers, credentials, options."""

    handle: ClusterHandle  # setup and request counting talk to ``handle.server`` directly
    admin: client.ApiClient
    emulator: CrusoeEmulator
    crusoe: CrusoeAccess
    workdir: Path
    options: Options
    servers: Mapping[str, tuple[int, ...]]  # kube-apiserver, etcd (and the delay proxy): their CPU is reported
    client_server: str  # where the three contenders reach kube-apiserver
    rtt_ms: float | None = None
    delay_check: DelayCheck | None = None

    @staticmethod
    def shared(emulator: CrusoeEmulator, crusoe: CrusoeAccess, workdir: Path, options: Options) -> _Shared:
        """What the control planes of one run share, in the order of the fields."""
        return emulator, crusoe, workdir, options

    @property
    def label(self) -> str:
        """How log lines name the scenario."""
        return "" if self.rtt_ms is None else f"[RTT {self.rtt_ms:g} ms] "


def _api_key(emulator: CrusoeEmulator) -> CrusoeAccess:
    """A fresh API key the emulator accepts."""
    access_key_id = "bench-" + secrets.token_hex(4)
    secret_key = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
    emulator.add_api_key(access_key_id, secret_key)
    return CrusoeAccess(emulator.base_url, access_key_id, secret_key)


@contextmanager
def environment(options: Options, binaries: Mapping[str, Binary], rtt_ms: float | None) -> Iterator[Environment]:
    """Start a control plane, the emulator and (with ``rtt_ms``) the delay proxy; stop them all on the way out."""
    with environments(options, binaries, rtt_ms, 1) as (env,):
        yield env


@contextmanager
def environments(
    options: Options, binaries: Mapping[str, Binary], rtt_ms: float | None, count: int
) -> Iterator[list[Environment]]:
    """``count`` control planes (each with its own delay proxy when ``rtt_ms`` is given) and one emulator.

    Several control planes are several clusters of one fleet: one function mints one token for all of them,
    so they share the emulator and its API key.
    """
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ccr-bench-")))
        workdir.chmod(0o700)
        emulator = stack.enter_context(CrusoeEmulator())
        crusoe = _api_key(emulator)
        sites = []
        for index in range(count):
            site_dir = workdir / f"cluster-{index}"
            site_dir.mkdir(mode=0o700)
            sites.append(_site(stack, binaries, rtt_ms, Environment.shared(emulator, crusoe, site_dir, options)))
        yield sites


def _site(stack: ExitStack, binaries: Mapping[str, Binary], rtt_ms: float | None, shared: _Shared) -> Environment:
    """One control plane, and its delay proxy with the delay checked, closed by ``stack``."""
    handle = stack.enter_context(ControlPlane(binaries)).handle
    admin = kube.admin_client(handle)
    stack.callback(admin.close)
    servers = server_processes(handle.server)
    env = Environment(handle, admin, *shared, servers, handle.server)
    if rtt_ms is None:
        return env
    print(f"[RTT {rtt_ms:g} ms] control plane up, starting the delay proxy", flush=True)
    proxy_url, proxy_pid = stack.enter_context(delay_proxy(handle.server, rtt_ms, env.workdir / "delay-proxy.log"))
    check = delay_check(handle, proxy_url, env.workdir, rtt_ms)
    print(f"[RTT {rtt_ms:g} ms] delay check: {to_json(check, indent=None)}", flush=True)
    return dataclasses.replace(
        env,
        servers={**servers, "delay proxy": (proxy_pid,)},  # its own line, not "other processes"
        client_server=proxy_url,
        rtt_ms=rtt_ms,
        delay_check=check,
    )
