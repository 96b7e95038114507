import math

import pytest
from rotator.retry import Backoff, parse_retry_after


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        ("nan", None),
        ("NaN", None),
        ("inf", None),
        ("-inf", None),
        ("1e400", None),  # overflows to infinity
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),
        ("", None),
        (None, None),
        ("-5", -5.0),
        ("1e9", 1e9),
    ],
)
def test_retry_after_parsing_never_yields_nan_or_infinity(header, seconds):
    assert parse_retry_after(header) == seconds


@pytest.mark.parametrize(("retry_after", "delay"), [(-5.0, 0.0), (1e9, 8.0), (2.0, 2.0), (0.0, 0.0)])
def test_a_servers_retry_after_is_honoured_within_zero_and_the_cap(retry_after, delay):
    assert Backoff(cap_seconds=8.0).delay(0, retry_after) == delay


def test_without_retry_after_the_delay_is_jittered_below_the_exponential_cap():
    delays = [Backoff(base_seconds=0.5, cap_seconds=8.0).delay(attempt) for attempt in range(10)]
    assert all(0 <= d <= 8.0 and math.isfinite(d) for d in delays)
