"""``--profile``: one extra rotation sampled by py-spy, and a summary of the hottest functions."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

PY_SPY = Path(sys.executable).with_name("py-spy")
RATE_HZ = 250


def profile(worker_pid: int, action: Callable[[], object], raw: Path) -> None:
    """Run ``action`` while py-spy samples whichever thread of ``worker_pid`` holds the GIL, into ``raw``.

    ``--gil`` makes the samples the function's on-CPU Python time: threads waiting for a connection, a
    lock or the API server are not counted (CPU in C with the GIL released, e.g. TLS, is not either:
    the per-process CPU seconds in the results cover that).
    """
    raw.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(PY_SPY), "record", "--gil", "--pid", str(worker_pid), "--rate", str(RATE_HZ), "--format", "raw"]
    spy = subprocess.Popen(  # noqa: S603 - our own venv's py-spy, fixed arguments
        [*argv, "-o", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    time.sleep(1.0)  # py-spy attaches and starts sampling
    action()
    spy.send_signal(signal.SIGINT)
    _, err = spy.communicate(timeout=60)
    if not raw.exists():
        raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")


def summarise(raw: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function, from py-spy's collapsed stacks."""
    self_samples: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [re.sub(r":\d+\)$", ")", frame.strip()) for frame in stack.split(";")]
        self_samples[frames[-1]] = self_samples.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    seconds = total / RATE_HZ
    lines = [f"{total} samples at {RATE_HZ} Hz of the thread holding the GIL ({seconds:.2f} s of Python on CPU)", ""]
    for title, table in (("self", self_samples), ("inclusive", inclusive)):
        lines.append(f"top {top} by {title} samples:")
        lines += [
            f"  {100 * count / max(total, 1):5.1f}%  {frame}"
            for frame, count in sorted(table.items(), key=lambda item: -item[1])[:top]
        ]
        lines.append("")
    return "\n".join(lines)
