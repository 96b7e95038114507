"""Fixtures for the unit tier only."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings

# Property-based tests stay bounded so the unit tier stays fast: a modest number of examples, each with a
# deadline. HYPOTHESIS_PROFILE=thorough runs many more on demand.
settings.register_profile(
    "ci",
    max_examples=60,
    deadline=500,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported at once (mutation runs)
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=2000, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def local_time_zone_ahead_of_utc() -> Iterator[None]:
    """The machine's local time zone is UTC+9 for one test, so "UTC" in a stamp is proven, not assumed."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "JST-9"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()
