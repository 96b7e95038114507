"""The one retry loop, used by every client and by minting.

Each client decides what is worth another try with a pure function of the failure (its ``classify``); this
module decides when: exponential backoff with full jitter, a server's ``Retry-After`` honoured up to a cap,
and never a wait that would overrun the caller's deadline. Sleep and clock are injectable so tests need no
real time.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from rotator.errors import RotatorError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """How many times to try and how long to wait between tries."""

    attempts: int = 3
    base_seconds: float = 0.5
    cap_seconds: float = 8.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed ``attempt`` (0-based); a server's Retry-After wins, up to the cap."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap_seconds)
        return random.uniform(0, min(self.cap_seconds, self.base_seconds * 2**attempt))  # noqa: S311 - jitter


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds; HTTP dates, NaN and infinities count as absent."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) else None


def retry_after_of(error: RotatorError) -> float | None:
    """The server's requested wait carried by ``error``, if it has one."""
    value = getattr(error, "retry_after", None)
    return value if isinstance(value, float | int) else None


def call_with_retries(
    call: Callable[[int], T],
    *,
    classify: Callable[[RotatorError], bool],
    backoff: Backoff,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    deadline: float | None = None,
) -> T:
    """Run ``call(attempt)`` until it returns, retrying the failures ``classify`` calls temporary.

    Args:
        call: one attempt; gets the 0-based attempt number (minting uses it for a fresh alias per try).
        classify: pure function: is this failure worth another try?
        backoff: how many tries and how long between them.
        what: names the operation in the retry log line.
        sleep: waits (injected in tests).
        clock: monotonic seconds, compared with ``deadline``.
        deadline: a ``clock()`` value no wait may cross; the last failure is raised instead.

    Raises:
        RotatorError: the last failure, when it is permanent, the attempts are used up, or the deadline is near.
    """
    attempt = 0
    while True:
        try:
            return call(attempt)
        except RotatorError as error:
            attempt += 1
            if attempt >= backoff.attempts or not classify(error):
                raise
            delay = backoff.delay(attempt - 1, retry_after_of(error))
            if deadline is not None and clock() + delay >= deadline:
                raise
            log.warning(
                "%s failed (%s), retrying in %.2fs",
                what,
                error.message,
                delay,
                extra={"fields": {"operation": what, "attempt": attempt}},
            )
            sleep(delay)
