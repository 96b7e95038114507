"""Fixtures for the unit tier only."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest


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
