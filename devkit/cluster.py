"""A real Kubernetes control plane (etcd + kube-apiserver) on loopback, for tests and the local demo.

One implementation serves both users: the pytest session fixture uses ``ControlPlane`` as a context
manager (processes die with the test run), and the CLI starts the same thing detached so
``make cluster-up`` returns with it running::

    python -m devkit.cluster up       # start detached, write .cache/cluster/{state.json,admin.kubeconfig}
    python -m devkit.cluster status   # is it running and ready?
    python -m devkit.cluster down     # stop both, remove the data

What it configures, and why:

- free loopback ports and a fresh temporary data dir, so parallel runs and stale state cannot collide;
- a CA generated at start; a serving cert for ``127.0.0.1``/``localhost``; an admin client cert in
  ``system:masters`` (client-cert auth, so the admin kubeconfig carries only embedded data);
- ``--authorization-mode=Node,RBAC``: RBAC is what the rotator's least privilege is tested against;
- a service-account issuer and RSA signing key, so the TokenRequest API mints tokens;
- admission as envtest configures it (defaults minus ``ServiceAccount``: no controller-manager runs to
  create default ServiceAccounts);
- ``--endpoint-reconciler-type=none``: the ``kubernetes`` Service's endpoints would be 127.0.0.1, which
  Endpoints validation rejects, so the reconciler would only log errors. The service CIDR is required by
  kube-apiserver but only allocated from, never routed to.

Processes run in their own process groups and are stopped by group (SIGTERM, then SIGKILL). In context
manager use, children also get ``PR_SET_PDEATHSIG`` (SIGKILL) so even a SIGKILLed test run leaves no process
behind (only its temporary data dir), and SIGTERM to the test run is turned into ``KeyboardInterrupt`` so the
normal teardown runs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

import requests
import yaml

from devkit.binaries import CACHE_DIR, ETCD, KUBE_APISERVER, Binary, resolve_all
from devkit.loopback import LOOPBACK, free_port
from devkit.pki import Credentials, write_pki

LOG = logging.getLogger(__name__)

STATE_DIR = CACHE_DIR / "cluster"
STATE_FILE = STATE_DIR / "state.json"
ADMIN_KUBECONFIG = STATE_DIR / "admin.kubeconfig"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"  # required by kube-apiserver; allocated from, never routed to
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0  # kube-apiserver drains for a few seconds; more under load
_PR_SET_PDEATHSIG = 1
_START_ATTEMPTS = 3


class ControlPlaneError(RuntimeError):
    """The control plane did not start, is not running, or could not be stopped."""


@dataclasses.dataclass(frozen=True)
class ClusterHandle:
    """How to reach a running control plane; what tests and helpers receive.

    Attributes:
        server: the kube-apiserver URL (``https://127.0.0.1:<port>``).
        credentials: CA and admin client certificate, as PEM.
        version: the version the kube-apiserver binary reports (``v1.37.2``), for the /version test.
        binary_source: which resolution rule found the binary (``cache``, ``PATH``, ...).
    """

    server: str
    credentials: Credentials
    version: str
    binary_source: str

    def admin_kubeconfig(self) -> str:
        """Return an admin kubeconfig (YAML) with all certificates embedded, no file paths."""
        return kubeconfig_yaml(
            self.server,
            self.credentials.ca_cert,
            user_name="admin",
            user={
                "client-certificate-data": _b64(self.credentials.admin_cert),
                "client-key-data": _b64(self.credentials.admin_key),
            },
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def kubeconfig_yaml(server: str, ca_cert: bytes, *, user_name: str, user: Mapping[str, str]) -> str:
    """Return a single-context kubeconfig with embedded CA data; ``user`` is the kubeconfig user map."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)}}],
        "users": [{"name": user_name, "user": dict(user)}],
        "contexts": [{"name": user_name, "context": {"cluster": "local", "user": user_name}}],
        "current-context": user_name,
    }
    return yaml.safe_dump(config, sort_keys=False)


# --- processes --------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Runs in the child before exec: get SIGKILL when the parent (the test run) dies, even by SIGKILL.

    SIGKILL, not SIGTERM: both children get the signal at once, and a kube-apiserver whose etcd is gone
    hangs in its graceful shutdown. Nobody is left to wait for a graceful one anyway.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _spawn(argv: list[str], log_path: Path, *, detached: bool) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new process group, output to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if detached else _die_with_parent,  # noqa: PLW1509 - prctl only, no locks
            close_fds=True,
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers signal 0: reap it if it is ours, and count it as dead if it is not
    # (a detached child is reaped by whatever init adopted it, which may be slow or never).
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stop_group(pid: int, *, expect: str, timeout: float = STOP_TIMEOUT_S) -> None:
    """Stop the process group led by ``pid``: SIGTERM, then SIGKILL after ``timeout``.

    ``expect`` is a substring of the leader's command line; a PID that was reused by some other program
    is left alone.
    """
    if not _alive(pid):
        return
    if expect not in _cmdline(pid):
        LOG.warning("pid %d is no longer %s; not signalling it", pid, expect)
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)
        if sig == signal.SIGTERM:
            LOG.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it", expect, pid, timeout)
    raise ControlPlaneError(f"{expect} (pid {pid}) survived SIGKILL")


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_until(check: Callable[[], bool], *, what: str, pid: int, log: Path, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise ControlPlaneError(f"{what} exited during start-up; last log lines:\n{_log_tail(log)}")
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise ControlPlaneError(f"{what} not ready after {timeout:.0f} s; last log lines:\n{_log_tail(log)}")


# --- the control plane ------------------------------------------------------------------------------


@dataclasses.dataclass
class _Running:
    """What ``down`` needs to stop a control plane; persisted as state.json for the detached case."""

    data_dir: str
    etcd_pid: int
    apiserver_pid: int
    etcd_port: int
    apiserver_port: int
    server: str
    version: str
    binary_source: str


class ControlPlane:
    """etcd + kube-apiserver on loopback, started on enter and always stopped on exit.

    Args:
        binaries: resolved binaries (default: ``resolve_all`` without building, so a missing binary is
            reported quickly instead of a test fixture silently starting a 5-minute build).
        detached: start the processes so they outlive this Python process (the CLI's ``up``);
            then ``stop`` is not called on exit and ``down`` stops them from the state file.
        environ: environment for binary resolution (tests inject one).
    """

    def __init__(
        self,
        binaries: Mapping[str, Binary] | None = None,
        *,
        detached: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """Remember the configuration; nothing starts until ``start`` or ``__enter__``."""
        self._binaries = dict(binaries) if binaries is not None else None
        self._detached = detached
        self._environ = os.environ if environ is None else environ
        self._running: _Running | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self._handle: ClusterHandle | None = None
        self._previous_sigterm: Any = None

    @property
    def handle(self) -> ClusterHandle:
        """The running cluster; raises if not started."""
        if self._handle is None:
            raise ControlPlaneError("the control plane is not running")
        return self._handle

    def __enter__(self) -> Self:
        """Start, turning SIGTERM into KeyboardInterrupt meanwhile so teardown always runs."""
        if not self._detached and threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            self.start()
        except BaseException:
            self.stop()
            self._restore_sigterm()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop both processes and remove the data dir (unless detached)."""
        try:
            if not self._detached:
                self.stop()
        finally:
            self._restore_sigterm()

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def start(self) -> ClusterHandle:
        """Start etcd, then kube-apiserver, and return once ``/readyz`` answers ok.

        A free port can be taken by another process between choosing and binding it (other test runs
        share this machine), so a start that fails on "address already in use" is retried on new ports.
        """
        binaries = self._binaries or resolve_all(self._environ, allow_build=False)
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                return self._start_once(binaries[ETCD], binaries[KUBE_APISERVER])
            except ControlPlaneError as exc:
                self.stop()
                if "address already in use" not in str(exc) or attempt == _START_ATTEMPTS:
                    raise
                LOG.warning("a port was taken during start-up; retrying on new ports")
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _start_once(self, etcd: Binary, apiserver: Binary) -> ClusterHandle:
        data_dir = Path(tempfile.mkdtemp(prefix="ccr-control-plane-"))
        started = time.monotonic()
        credentials = write_pki(data_dir / "pki")
        etcd_port, peer_port, apiserver_port = free_port(), free_port(), free_port()
        server = f"https://{LOOPBACK}:{apiserver_port}"
        self._running = _Running(
            data_dir=str(data_dir),
            etcd_pid=0,
            apiserver_pid=0,
            etcd_port=etcd_port,
            apiserver_port=apiserver_port,
            server=server,
            version=apiserver.version,
            binary_source=apiserver.source,
        )
        etcd_log, apiserver_log = data_dir / "etcd.log", data_dir / "kube-apiserver.log"
        etcd_proc = _spawn(
            etcd_argv(etcd.path, data_dir / "etcd", etcd_port, peer_port), etcd_log, detached=self._detached
        )
        self._procs.append(etcd_proc)
        self._running.etcd_pid = etcd_proc.pid
        _wait_until(lambda: _etcd_healthy(etcd_port), what=f"etcd (log {etcd_log})", pid=etcd_proc.pid, log=etcd_log)
        apiserver_proc = _spawn(
            apiserver_argv(apiserver.path, data_dir / "pki", etcd_port, apiserver_port),
            apiserver_log,
            detached=self._detached,
        )
        self._procs.append(apiserver_proc)
        self._running.apiserver_pid = apiserver_proc.pid
        pki = data_dir / "pki"
        _wait_until(
            lambda: _apiserver_ready(server, pki),
            what=f"kube-apiserver (log {apiserver_log})",
            pid=apiserver_proc.pid,
            log=apiserver_log,
        )
        LOG.info(
            "control plane ready at %s in %.1f s (kube-apiserver %s from %s, etcd %s from %s)",
            server,
            time.monotonic() - started,
            apiserver.version,
            apiserver.source,
            etcd.version,
            etcd.source,
        )
        self._handle = ClusterHandle(
            server=server, credentials=credentials, version=apiserver.version, binary_source=apiserver.source
        )
        return self._handle

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd, and remove the data dir. Safe to call more than once."""
        running, self._running, self._handle = self._running, None, None
        procs, self._procs = self._procs, []
        if running is not None:
            _stop_running(running)
        for proc in procs:
            proc.poll()  # already reaped by stop_group; this only tells Popen, so it does not warn

    def write_state(self, state_file: Path = STATE_FILE, kubeconfig: Path = ADMIN_KUBECONFIG) -> None:
        """Persist PIDs and ports (for ``down``/``status``) and the admin kubeconfig (for users)."""
        if self._running is None or self._handle is None:
            raise ControlPlaneError("the control plane is not running")
        state_file.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 from the start: it holds the admin's private key.
        kubeconfig.unlink(missing_ok=True)
        with os.fdopen(os.open(kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(self._handle.admin_kubeconfig())
        state = dataclasses.asdict(self._running) | {"kubeconfig": str(kubeconfig)}
        state_file.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")


def _raise_keyboard_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_running(running: _Running) -> None:
    errors: list[str] = []
    for pid, name in ((running.apiserver_pid, KUBE_APISERVER), (running.etcd_pid, ETCD)):
        if pid:
            try:
                stop_group(pid, expect=name)
            except ControlPlaneError as exc:
                errors.append(str(exc))
    shutil.rmtree(running.data_dir, ignore_errors=True)
    if errors:
        raise ControlPlaneError("; ".join(errors))


def etcd_argv(binary: Path, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    """Return etcd's command line: one member, loopback only, no fsync (test data is disposable)."""
    client = f"http://{LOOPBACK}:{client_port}"
    peer = f"http://{LOOPBACK}:{peer_port}"
    return [
        str(binary),
        "--name=default",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_argv(binary: Path, pki: Path, etcd_port: int, secure_port: int) -> list[str]:
    """Return kube-apiserver's command line (see the module docstring for the reasons)."""
    return [
        str(binary),
        f"--etcd-servers=http://{LOOPBACK}:{etcd_port}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={secure_port}",
        f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'serving.crt'}",
        f"--tls-private-key-file={pki / 'serving.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=Node,RBAC",
        f"--service-account-issuer=https://{LOOPBACK}:{secure_port}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--disable-admission-plugins=ServiceAccount",
        "--allow-privileged=true",
        "--endpoint-reconciler-type=none",
        "--profiling=false",
    ]


def _etcd_healthy(port: int) -> bool:
    response = requests.get(f"http://{LOOPBACK}:{port}/health", timeout=2)
    return response.status_code == 200 and response.json().get("health") == "true"


def _apiserver_ready(server: str, pki: Path) -> bool:
    response = requests.get(
        f"{server}/readyz",
        cert=(str(pki / "admin.crt"), str(pki / "admin.key")),
        verify=str(pki / "ca.crt"),
        timeout=5,
    )
    return response.status_code == 200 and response.text.strip() == "ok"


# --- the detached control plane (CLI) ---------------------------------------------------------------


def read_state(state_file: Path = STATE_FILE) -> dict[str, Any] | None:
    """Return the detached control plane's state, or ``None`` if there is none."""
    try:
        state: dict[str, Any] = json.loads(state_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return state


def _running_from_state(state: Mapping[str, Any]) -> _Running:
    fields = {f.name for f in dataclasses.fields(_Running)}
    return _Running(**{k: v for k, v in state.items() if k in fields})


def handle_from_state(state_file: Path = STATE_FILE) -> ClusterHandle | None:
    """Return a handle to the detached control plane if it is running and ready, else ``None``.

    Lets the pytest fixture reuse ``make cluster-up``'s control plane for a fast edit-test loop.
    """
    state = read_state(state_file)
    if state is None:
        return None
    running = _running_from_state(state)
    if not (_alive(running.etcd_pid) and _alive(running.apiserver_pid)):
        return None
    pki = Path(running.data_dir) / "pki"
    try:
        if not _apiserver_ready(running.server, pki):
            return None
    except requests.RequestException:
        return None
    credentials = Credentials(
        ca_cert=(pki / "ca.crt").read_bytes(),
        admin_cert=(pki / "admin.crt").read_bytes(),
        admin_key=(pki / "admin.key").read_bytes(),
    )
    return ClusterHandle(
        server=running.server,
        credentials=credentials,
        version=running.version,
        binary_source=running.binary_source,
    )


def up(environ: Mapping[str, str] | None = None) -> ClusterHandle:
    """Start a detached control plane unless one is already running; write state and kubeconfig."""
    existing = handle_from_state()
    if existing is not None:
        LOG.info("control plane already running at %s", existing.server)
        return existing
    down()  # a stale state file: clean up whatever is left of it
    plane = ControlPlane(detached=True, environ=environ)
    try:
        handle = plane.start()
        plane.write_state()
    except BaseException:
        plane.stop()
        raise
    return handle


def down(state_file: Path = STATE_FILE, kubeconfig: Path = ADMIN_KUBECONFIG) -> bool:
    """Stop the detached control plane and remove its data; return whether there was one."""
    state = read_state(state_file)
    if state is None:
        return False
    _stop_running(_running_from_state(state))
    state_file.unlink(missing_ok=True)
    kubeconfig.unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: ``up``, ``down`` or ``status``."""
    parser = argparse.ArgumentParser(description="Run the local test control plane (etcd + kube-apiserver).")
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "up":
            handle = up()
            print(f"control plane ready at {handle.server} (kube-apiserver {handle.version})")  # noqa: T201
            print(f"admin kubeconfig: {ADMIN_KUBECONFIG}")  # noqa: T201
        elif args.command == "down":
            print("control plane stopped" if down() else "no control plane was running")  # noqa: T201
        else:
            handle_or_none = handle_from_state()
            if handle_or_none is None:
                print("not running")  # noqa: T201
                return 1
            print(f"running at {handle_or_none.server} (kube-apiserver {handle_or_none.version})")  # noqa: T201
    except Exception as exc:  # noqa: BLE001 - the CLI reports any failure as one line and an exit code
        print(f"error: {exc}")  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
