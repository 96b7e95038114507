from datetime import UTC, datetime, timedelta, timezone

import pytest
from rotator.tokens import ApiKey, minted_at, new_alias, select_revocations

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
PREFIX = "ccr-rotator"


def key(alias, *, hours_ago=0.0, usage="registry", key_id=None):
    created = NOW - timedelta(hours=hours_ago)
    return ApiKey(key_id or f"id-{alias}", alias, usage, created, created + timedelta(hours=12))


def owned(hours_ago, suffix="aaaaaa"):
    return key(new_alias(PREFIX, NOW - timedelta(hours=hours_ago), suffix), hours_ago=hours_ago)


def test_alias_shape_and_uniqueness():
    alias = new_alias(PREFIX, NOW)
    assert alias.startswith("ccr-rotator-20261128T120000Z-")
    assert minted_at(alias, PREFIX) == NOW
    assert len({new_alias(PREFIX, NOW) for _ in range(50)}) == 50


def test_alias_stamp_is_utc_whatever_the_machines_time_zone(local_time_zone_ahead_of_utc):
    minted = datetime(2026, 11, 28, 21, 0, 0, tzinfo=timezone(timedelta(hours=9)))
    assert new_alias(PREFIX, minted, "abcdef") == "ccr-rotator-20261128T120000Z-abcdef"


@pytest.mark.parametrize(
    "alias",
    [
        "ccr-rotator",
        "ccr-rotator-manual",
        "ccr-rotator-20261128T120000Z",
        "other-20261128T120000Z-abcdef",
        "ccr-rotator-20261128T120000Z-abcdef-x",
        "ccr-rotator-extra-20261128T120000Z-abcdef",
    ],
)
def test_foreign_aliases_are_not_ours(alias):
    assert minted_at(alias, PREFIX) is None


CURRENT = owned(0, "cccccc")


def aliases(keys):
    return [k.alias for k in keys]


@pytest.mark.parametrize(
    ("keep", "expected_revoked_hours"),
    [(0, [6, 12, 18]), (1, [12, 18]), (2, [18]), (3, []), (10, [])],
)
def test_revocation_keeps_the_newest_previous_tokens(keep, expected_revoked_hours):
    older = [owned(6), owned(12), owned(18)]
    revoked = select_revocations([CURRENT, *older], prefix=PREFIX, current_alias=CURRENT.alias, keep_previous=keep)
    assert aliases(revoked) == [owned(h).alias for h in expected_revoked_hours]


def test_revocation_never_touches_foreign_current_newer_or_non_registry_tokens():
    foreign = [
        key("ccr-rotator-manual", hours_ago=100),
        key("someone-else", hours_ago=100),
        key(new_alias("other", NOW - timedelta(hours=50), "bbbbbb"), hours_ago=50),
        key(new_alias(PREFIX, NOW - timedelta(hours=40), "dddddd"), hours_ago=40, usage="api"),
        key(new_alias(PREFIX, NOW + timedelta(minutes=5), "eeeeee"), hours_ago=-0.1),
    ]
    revoked = select_revocations([CURRENT, *foreign], prefix=PREFIX, current_alias=CURRENT.alias, keep_previous=0)
    assert revoked == []


def test_strays_are_revoked_even_inside_the_grace_window():
    stray = owned(0, "ffffff")
    previous = owned(6)
    revoked = select_revocations(
        [CURRENT, stray, previous],
        prefix=PREFIX,
        current_alias=CURRENT.alias,
        keep_previous=1,
        strays=[stray.alias],
    )
    assert aliases(revoked) == [stray.alias]


def test_revocation_requires_an_owned_current_alias():
    with pytest.raises(ValueError, match=r"^the current alias does not have the rotator's alias shape$"):
        select_revocations([], prefix=PREFIX, current_alias="manual", keep_previous=1)


def test_tokens_minted_after_the_last_delivered_one_were_never_written_and_are_revoked():
    delivered = owned(12)  # what the pull secrets held before this run
    crashed = owned(6, "bbbbbb")  # minted by a run that stopped before writing anything
    revoked = select_revocations(
        [CURRENT, crashed, delivered, owned(18)],
        prefix=PREFIX,
        current_alias=CURRENT.alias,
        keep_previous=1,
        delivered=[delivered.alias],
    )
    assert aliases(revoked) == [crashed.alias, owned(18).alias]


def test_without_delivered_aliases_nothing_counts_as_undelivered():
    revoked = select_revocations(
        [CURRENT, owned(6), owned(12)],
        prefix=PREFIX,
        current_alias=CURRENT.alias,
        keep_previous=1,
        delivered=["manual-alias-not-ours"],
    )
    assert aliases(revoked) == [owned(12).alias]


def test_a_token_minted_in_the_same_second_as_the_delivered_one_is_undelivered():
    delivered = owned(6, "aaaaaa")
    twin = owned(6, "dddddd")
    revoked = select_revocations(
        [CURRENT, twin, delivered],
        prefix=PREFIX,
        current_alias=CURRENT.alias,
        keep_previous=1,
        delivered=[delivered.alias],
    )
    assert aliases(revoked) == [twin.alias]


def test_revocation_orders_tokens_without_a_creation_time_by_their_alias():
    undated = ApiKey("id-6", owned(6).alias, "registry", None, None)
    revoked = select_revocations(
        [CURRENT, owned(12), undated], prefix=PREFIX, current_alias=CURRENT.alias, keep_previous=1
    )
    assert aliases(revoked) == [owned(12).alias]


def test_revocation_breaks_ties_between_tokens_minted_in_one_second_by_alias():
    twins = [owned(6, "bbbbbb"), owned(6, "aaaaaa")]
    revoked = select_revocations([CURRENT, *twins], prefix=PREFIX, current_alias=CURRENT.alias, keep_previous=1)
    assert aliases(revoked) == [owned(6, "aaaaaa").alias]
