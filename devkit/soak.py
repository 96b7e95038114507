"""``make soak``: the promise measured. Do pulls ever fail because of the rotator?

Runs the real function (a ``functions-framework`` process) against the real control plane, through the fault
proxy, with the Crusoe API emulator in this process, and rotates many times back to back: single runs,
overlapping ones (two or three concurrent POSTs), scheduler-style retries (a second POST while the first one's
mint answer is held in flight) and injected faults (a Crusoe 503 or a reset mint, the apiserver cut after K
writes or answering 503). Meanwhile a checker thread samples every target namespace's pull secret about every
100 ms (one admin list call by label) and asks the emulator's registry login check whether the token it holds
is live, as a kubelet pulling an image would. After every step the driver waits for a full sample made after
the step ended, so the state each step leaves behind is always seen (the hours between scheduled runs).

The report counts rotations by outcome, samples, samples whose token was not live (goal 0), rotator tokens
left beyond the grace window after one final clean run ("tokens lost", goal 0), namespaces without a live
token at the end, and credentials found in any function output or response (goal 0). Bounded in count
(``--rotations``) and time (``--max-seconds``); loopback only::

    python -m devkit.soak --namespaces 3 --rotations 12          # the CI size (tests/integration/test_soak.py)
    python -m devkit.soak --namespaces 20 --rotations 400 --max-seconds 1800 --output soak.json
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import requests
from kubernetes import client
from rotator.config import VARIABLES

from devkit import kube
from devkit.cluster import ClusterHandle, ControlPlane, handle_from_state
from devkit.crusoe_emulator import CrusoeEmulator
from devkit.faultproxy import FaultProxy
from devkit.function import FunctionProcess, start_function
from devkit.pullsecrets import list_held

REGISTRY = "registry.soak.invalid"
PREFIX = "ccr-rotator"
_OWNED = re.compile(rf"^{PREFIX}-\d{{8}}T\d{{6}}Z-[0-9a-f]{{6}}$")
#: One cycle of steps and how many POSTs each makes; the first cycle runs in this order, later ones shuffled.
STEPS: dict[str, int] = {
    "single": 1,
    "retry": 2,
    "overlap2": 2,
    "crusoe-reset": 1,
    "kube-cut": 1,
    "overlap3": 3,
    "crusoe-503": 1,
    "kube-503": 1,
}
_POST_TIMEOUT_S = 120.0
_ARRIVAL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SoakOptions:
    """How big and how long; every size is bounded."""

    namespaces: int = 3
    rotations: int = 12
    max_seconds: float = 300.0
    sample_interval: float = 0.1
    seed: int = 9
    keep_previous: int = 1
    #: The function's RUN_DEADLINE_SECONDS. A token minted but never delivered is kept while a run may still be
    #: writing it (twice this, at most): the soak waits that long before its final clean run, so that run can
    #: remove the strays of the runs its faults crashed.
    run_deadline: int = 6


@dataclass
class SoakReport:
    """What the soak measured (the JSON document ``--output`` writes)."""

    options: dict[str, Any]
    rotations: int = 0
    rotations_by_outcome: dict[str, int] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    dead_token_samples: int = 0
    missing_secret_samples: int = 0
    dead_token_steps: dict[str, int] = field(default_factory=dict)
    tokens_beyond_grace_window: int = 0
    namespaces_without_live_token_at_end: int = 0
    secrets_leaked: int = 0
    final_run_ok: bool = False
    seconds: float = 0.0

    def goals_met(self) -> bool:
        """Every goal of issue 9: no dead-token sample, nothing lost, nothing leaked, a clean end."""
        return (
            self.dead_token_samples == 0
            and self.tokens_beyond_grace_window == 0
            and self.namespaces_without_live_token_at_end == 0
            and self.secrets_leaked == 0
            and self.final_run_ok
        )


class Checker:
    """The kubelet's view: every ~100 ms, is the token each namespace's pull secret holds live?"""

    def __init__(
        self, admin: client.ApiClient, emulator: CrusoeEmulator, namespaces: list[str], interval: float
    ) -> None:
        self._admin = admin
        self._emulator = emulator
        self._namespaces = namespaces
        self._interval = interval
        self._stop = threading.Event()
        self._passes = threading.Condition()
        self._count = 0
        self.step = "initial"
        self.samples = 0
        self.dead = 0
        self.missing = 0
        self.dead_steps: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._run, name="soak-checker", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            with self._passes:
                self._count += 1
                self._passes.notify_all()
            self._stop.wait(self._interval)

    def sample(self) -> None:
        """One pass: one list call, one login check per namespace."""
        held = list_held(self._admin, self._namespaces, REGISTRY)
        for namespace in self._namespaces:
            self.samples += 1
            entry = held.get(namespace)
            if entry is None or entry.password is None:
                self.missing += 1
            elif not self._emulator.is_live(entry.password):
                self.dead += 1
                self.dead_steps[self.step] += 1

    def settle(self) -> None:
        """Return once a whole pass has started after this call: the state a step left behind is sampled."""
        with self._passes:
            target = self._count + 2
            if not self._passes.wait_for(lambda: self._count >= target, timeout=60):
                raise RuntimeError("the checker stopped sampling")


@dataclass
class _World:
    """Everything one soak talks to."""

    function: FunctionProcess
    emulator: CrusoeEmulator
    proxy: FaultProxy
    admin: client.ApiClient
    namespaces: list[str]
    secret_values: list[str]
    answers: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self) -> int:
        """One rotation request, as Cloud Scheduler sends it; the answer is kept for the leak scan."""
        try:
            response = requests.post(self.function.url, timeout=_POST_TIMEOUT_S)
            status, text = response.status_code, response.text
        except requests.RequestException as exc:
            status, text = 0, type(exc).__name__
        with self.lock:
            self.answers.append(text)
            self.outcomes[f"HTTP {status}" if status else "no answer"] += 1
        return status

    def concurrently(self, count: int) -> None:
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(lambda _: self.post(), range(count)))

    def retried_while_minting(self) -> None:
        """A scheduler retry: the first call's mint answer is held while a second call runs to the end."""
        gate = self.emulator.hold("createCcrToken")
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(self.post)
            if not gate.arrived.wait(_ARRIVAL_TIMEOUT_S):
                gate.release()
                raise RuntimeError("the first call never reached the Crusoe API")
            self.post()
            gate.release()
            first.result()


def _step_actions(world: _World, rng: random.Random) -> dict[str, Callable[[], object]]:
    """What each step name does: the plain calls, and each fault set around one call and cleared after it."""

    def with_fault(add: Callable[[], object], clear: Callable[[], None]) -> Callable[[], object]:
        def run() -> object:
            add()
            try:
                return world.post()
            finally:
                clear()

        return run

    emulator, proxy = world.emulator, world.proxy
    return {
        "single": world.post,
        "retry": world.retried_while_minting,
        "overlap2": lambda: world.concurrently(2),
        "overlap3": lambda: world.concurrently(3),
        "crusoe-reset": with_fault(lambda: emulator.inject("createCcrToken", reset="after"), emulator.clear_faults),
        "crusoe-503": with_fault(lambda: emulator.inject("createCcrToken", 503, retry_after=0), emulator.clear_faults),
        "kube-cut": with_fault(lambda: proxy.cut_after(rng.randrange(len(world.namespaces))), proxy.clear),
        "kube-503": with_fault(lambda: proxy.answer(503, times=None, retry_after="0"), proxy.clear),
    }


def schedule(options: SoakOptions) -> Iterator[str]:
    """Step names until ``options.rotations`` POSTs are planned: the fixed first cycle, then shuffled cycles."""
    rng = random.Random(options.seed)  # noqa: S311 - a reproducible schedule, not a secret
    planned, names = 0, list(STEPS)
    while True:
        for name in names:
            if planned >= options.rotations:
                return
            planned += STEPS[name]
            yield name
        names = rng.sample(list(STEPS), len(STEPS))


def _leaks(texts: list[str], values: list[str]) -> int:
    """How many distinct credentials appear anywhere in ``texts``, as themselves or base64-encoded."""
    forms = {value: (value, base64.b64encode(value.encode()).decode()) for value in values if value}
    return sum(1 for value, shown in forms.items() if any(form in text for text in texts for form in shown))


def _finish(world: _World, report: SoakReport, keep_previous: int, log_path: Path) -> None:
    """The end state after one final clean run: tokens beyond the grace window, namespaces left without one."""
    report.final_run_ok = world.post() == requests.codes.ok
    held = list_held(world.admin, world.namespaces, REGISTRY)
    report.namespaces_without_live_token_at_end = sum(
        1
        for namespace in world.namespaces
        if namespace not in held or not world.emulator.is_live(held[namespace].password or "")
    )
    owned = [key for key in world.emulator.tokens() if _OWNED.match(key.alias)]
    report.tokens_beyond_grace_window = max(0, len(owned) - (1 + keep_previous))
    tokens = [key.token for key in world.emulator.tokens() + world.emulator.deleted()]
    texts = [*world.answers, log_path.read_text(encoding="utf-8", errors="replace")]
    report.secrets_leaked = _leaks(texts, [*tokens, *world.secret_values])


@contextmanager
def _world(handle: ClusterHandle, options: SoakOptions, workdir: Path) -> Iterator[_World]:
    """Namespaces, the rotator's account, the emulator, the proxy and the function; all stopped at the end."""
    with ExitStack() as stack:
        admin = kube.admin_client(handle)
        stack.callback(admin.close)
        namespaces = [kube.create_namespace(admin, prefix="soak") for _ in range(options.namespaces)]
        stack.callback(kube.delete_namespaces, admin, namespaces)
        account = kube.rotator_service_account(handle, admin, namespaces)
        stack.callback(kube.delete_namespaces, admin, [account.namespace])
        access_key, secret_key = "soak" + secrets.token_hex(4), secrets.token_urlsafe(16).rstrip("=")
        emulator = stack.enter_context(CrusoeEmulator())
        emulator.add_api_key(access_key, secret_key)
        proxy = stack.enter_context(FaultProxy(handle.server, handle.credentials.ca_cert))
        kubeconfig = workdir / "rotator.kubeconfig"
        kubeconfig.write_text(proxy.kubeconfig(account.kubeconfig), encoding="utf-8")
        kubeconfig.chmod(0o600)
        settings = {
            "CRUSOE_ACCESS_KEY": access_key,
            "CRUSOE_SECRET_KEY": secret_key,
            "CRUSOE_API_ENDPOINT": emulator.base_url,
            "REGISTRY_URL": REGISTRY,
            "REGISTRY_USERNAME": "soak-user",
            "TARGET_NAMESPACES": ",".join(namespaces),
            "KUBECONFIG": str(kubeconfig),
            "KEEP_PREVIOUS_TOKENS": str(options.keep_previous),
            "RUN_DEADLINE_SECONDS": str(options.run_deadline),
            "LOG_LEVEL": "DEBUG",
        }
        env = {name: value for name, value in os.environ.items() if name not in VARIABLES} | settings
        log = stack.enter_context((workdir / "function.log").open("wb"))
        function = stack.enter_context(start_function(env, output=log))
        yield _World(function, emulator, proxy, admin, namespaces, [secret_key, account.token, account.kubeconfig])


def run_soak(handle: ClusterHandle, options: SoakOptions) -> SoakReport:
    """Run the soak on a running control plane and return its report."""
    started = time.monotonic()
    report = SoakReport(options=asdict(options))
    rng = random.Random(options.seed + 1)  # noqa: S311 - fault positions, reproducible
    with tempfile.TemporaryDirectory(prefix="soak-") as work, _world(handle, options, Path(work)) as world:
        world.post()  # the first rotation creates the secrets the checker samples
        steps: Counter[str] = Counter()
        with Checker(world.admin, world.emulator, world.namespaces, options.sample_interval) as checker:
            actions = _step_actions(world, rng)
            for name in schedule(options):
                if time.monotonic() - started > options.max_seconds:
                    break
                checker.step = name
                actions[name]()
                steps[name] += 1
                checker.settle()
            checker.step = "final"
            time.sleep(2 * options.run_deadline)  # the strays of crashed runs leave their in-flight window
            _finish(world, report, options.keep_previous, Path(work, "function.log"))
            checker.settle()
        report.rotations = sum(world.outcomes.values())
        report.rotations_by_outcome = dict(sorted(world.outcomes.items()))
        report.steps = dict(steps)
        report.samples, report.dead_token_samples, report.missing_secret_samples = (
            checker.samples,
            checker.dead,
            checker.missing,
        )
        report.dead_token_steps = dict(checker.dead_steps)
    report.seconds = round(time.monotonic() - started, 1)
    return report


def table(report: SoakReport) -> str:
    """The report as an aligned text table (stdout)."""
    rows = [
        ("rotations run", str(report.rotations)),
        *((f"  {outcome}", str(count)) for outcome, count in report.rotations_by_outcome.items()),
        ("steps", ", ".join(f"{name} x{count}" for name, count in report.steps.items())),
        ("samples taken", str(report.samples)),
        ("samples whose token was not live (goal 0)", str(report.dead_token_samples)),
        ("  after steps", ", ".join(f"{name}: {n}" for name, n in report.dead_token_steps.items()) or "-"),
        ("tokens beyond the grace window at the end (goal 0)", str(report.tokens_beyond_grace_window)),
        ("namespaces without a live token at the end (goal 0)", str(report.namespaces_without_live_token_at_end)),
        ("secrets leaked (goal 0)", str(report.secrets_leaked)),
        ("final clean run", "ok" if report.final_run_ok else "FAILED"),
        ("seconds", f"{report.seconds:.1f}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    """Run the soak on a fresh (or the ``cluster up``) control plane; exit 1 when a goal is missed."""
    parser = argparse.ArgumentParser(prog="python -m devkit.soak", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--namespaces", type=int, default=SoakOptions.namespaces, help="target namespaces")
    parser.add_argument("--rotations", type=int, default=SoakOptions.rotations, help="rotation requests to send")
    parser.add_argument("--max-seconds", type=float, default=SoakOptions.max_seconds, help="stop starting steps after")
    parser.add_argument("--seed", type=int, default=SoakOptions.seed, help="seed of the step order")
    parser.add_argument("--output", type=Path, help="write the JSON report here too")
    args = parser.parse_args(argv)
    if args.namespaces < 1 or args.rotations < 1 or args.max_seconds <= 0:
        parser.error("--namespaces, --rotations and --max-seconds must be positive")
    options = SoakOptions(args.namespaces, args.rotations, args.max_seconds, seed=args.seed)
    existing = handle_from_state()
    if existing is not None:
        report = run_soak(existing, options)
    else:
        with ControlPlane() as plane:
            report = run_soak(plane.handle, options)
    sys.stdout.write(table(report) + "\n")
    if args.output:
        args.output.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    return 0 if report.goals_met() else 1


if __name__ == "__main__":
    raise SystemExit(main())
