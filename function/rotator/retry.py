"""Backoff with full jitter, shared by every client that retries."""

from __future__ import annotations

import random
from dataclasses import dataclass


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
    """Seconds from a ``Retry-After`` header given in seconds (HTTP dates are treated as absent)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None
