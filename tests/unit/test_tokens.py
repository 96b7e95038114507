from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rotator import tokens
from rotator.tokens import MAX_REVOCATIONS_PER_RUN, ApiKey, RevocationPolicy, Revocations, minted_at, new_alias

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
PREFIX = "ccr-rotator"
#: Long after every token in these tables was minted: no run can still be writing any of them.
LATER = NOW + timedelta(days=1)
IN_FLIGHT = timedelta(minutes=10)


def plan_revocations(keys, *, now=LATER, in_flight=IN_FLIGHT, **rules) -> Revocations:
    return tokens.plan_revocations(keys, RevocationPolicy(now=now, in_flight=in_flight, **rules))


def select_revocations(keys, **rules) -> list[ApiKey]:
    return list(plan_revocations(keys, **rules).keys)


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
        "ccr-rotator-20261128T120000Z-abcdef\n",  # re.match with $ accepted a trailing newline
        "\nccr-rotator-20261128T120000Z-abcdef",
        "ccr-rotator-20261128T120000Z-ABCDEF",
        "ccr-rotator-2026112\u0668T120000Z-abcdef",  # an Arabic-Indic digit: \\d matched it
        "ccr-rotator-\uff12\uff10\uff12\uff16\uff11\uff11\uff12\uff18T120000Z-abcdef",  # full-width digits
        "ccr-rotator-20260230T120000Z-abcdef",  # 30 February: strptime raised ValueError
        "ccr-rotator-20261128T250000Z-abcdef",
        "ccr-rotator-20261128T126000Z-abcdef",
        "ccr-rotator-00001128T120000Z-abcdef",
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


def test_revocation_without_an_owned_current_alias_selects_nothing_and_says_why():
    plan = plan_revocations([owned(6), owned(12)], prefix=PREFIX, current_alias="manual", keep_previous=0)
    assert plan.keys == ()
    assert plan.warnings == ("nothing was revoked: the current alias 'manual' is not the rotator's",)


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


def test_impossible_dates_in_the_list_or_the_delivered_aliases_are_not_ours_and_never_raise():
    impossible = key("ccr-rotator-20260230T120000Z-abcdef", hours_ago=20)
    unicode_digits = key("ccr-rotator-2026112\u0668T120000Z-abcdef", hours_ago=20)
    revoked = select_revocations(
        [CURRENT, impossible, unicode_digits, owned(6), owned(12)],
        prefix=PREFIX,
        current_alias=CURRENT.alias,
        keep_previous=1,
        delivered=[impossible.alias, unicode_digits.alias, owned(6).alias],
    )
    assert aliases(revoked) == [owned(12).alias]


def test_a_duplicate_key_id_under_an_older_alias_never_revokes_the_current_token():
    echo = key(owned(30).alias, hours_ago=30, key_id=CURRENT.key_id)
    revoked = select_revocations(
        [CURRENT, echo, owned(12)], prefix=PREFIX, current_alias=CURRENT.alias, keep_previous=0
    )
    assert aliases(revoked) == [owned(12).alias]


def test_a_duplicate_key_id_under_an_older_alias_never_revokes_a_token_in_the_grace_window():
    previous = owned(6)
    echo = key(owned(30).alias, hours_ago=30, key_id=previous.key_id)
    revoked = select_revocations([CURRENT, previous, echo], prefix=PREFIX, current_alias=CURRENT.alias, keep_previous=1)
    assert revoked == []


def test_a_key_listed_twice_is_revoked_once():
    old = owned(12)
    revoked = select_revocations([CURRENT, old, old], prefix=PREFIX, current_alias=CURRENT.alias, keep_previous=0)
    assert revoked == [old]


def test_revocation_ranks_by_the_alias_time_not_by_the_listed_creation_time():
    previous = ApiKey("id-prev", owned(6).alias, "registry", NOW - timedelta(days=400), None)
    filler = ApiKey("id-fill", owned(12).alias, "registry", NOW + timedelta(days=400), None)  # created "in the future"
    revoked = select_revocations(
        [CURRENT, filler, previous], prefix=PREFIX, current_alias=CURRENT.alias, keep_previous=1
    )
    assert aliases(revoked) == [filler.alias]


def test_aliases_that_only_look_like_ours_take_no_place_in_the_grace_window():
    previous = owned(6)
    fillers = [
        ApiKey(f"id-fill-{i}", alias, "registry", NOW + timedelta(days=1), None)
        for i, alias in enumerate(
            [
                owned(1).alias + "\n",
                owned(2).alias.upper(),
                "ccr-rotator-20261128T113000Z-abcdef0",
                "ccr-rotator-20261128T11300\u0660Z-abcdef",
                "ccr-rotator-20261131T113000Z-abcdef",
            ]
        )
    ]
    revoked = select_revocations(
        [CURRENT, *fillers, previous, owned(12)], prefix=PREFIX, current_alias=CURRENT.alias, keep_previous=1
    )
    assert aliases(revoked) == [owned(12).alias]


def test_one_run_revokes_at_most_the_cap_and_warns_about_the_rest():
    old = [owned(hours, f"{hours:06x}") for hours in range(1, MAX_REVOCATIONS_PER_RUN + 6)]
    plan = plan_revocations([CURRENT, *old], prefix=PREFIX, current_alias=CURRENT.alias, keep_previous=0)
    assert len(plan.keys) == MAX_REVOCATIONS_PER_RUN
    expected = (
        f"5 more old token(s) are due for revocation; at most {MAX_REVOCATIONS_PER_RUN} are revoked per run, "
        "the next run continues"
    )
    assert plan.warnings == (expected,)


# -- properties: for any list of keys ----------------------------------------------------------------------------

STAMPS = st.integers(min_value=-3, max_value=40).map(lambda hours: NOW - timedelta(hours=hours))
SUFFIXES = st.sampled_from(["aaaaaa", "bbbbbb", "0f0f0f"])
OWNED_ALIASES = st.builds(lambda when, suffix: new_alias(PREFIX, when, suffix), STAMPS, SUFFIXES)
LOOKALIKES = st.one_of(
    OWNED_ALIASES.map(lambda alias: alias + "\n"),
    OWNED_ALIASES.map(lambda alias: alias.replace("0", "\u0660", 1)),
    st.builds(lambda when, suffix: new_alias("other", when, suffix), STAMPS, SUFFIXES),
    st.sampled_from(["ccr-rotator-manual", "ccr-rotator-20260230T120000Z-abcdef", ""]),
    st.text(max_size=40),
)


def mostly(common, rare, percent=75):
    """``common`` in about ``percent`` % of the examples, ``rare`` otherwise."""
    return st.integers(min_value=1, max_value=100).flatmap(lambda roll: common if roll <= percent else rare)


ALIASES = mostly(OWNED_ALIASES, LOOKALIKES)
KEYS = st.builds(
    ApiKey,
    key_id=st.sampled_from([f"id-{i}" for i in range(40)]),
    alias=ALIASES,
    usage=mostly(st.just("registry"), st.just("api"), 90),
    created_at=st.none() | STAMPS,
    expires_at=st.none() | STAMPS,
)


@given(
    keys=st.lists(KEYS, min_size=1, max_size=16),
    current=mostly(st.just(CURRENT.alias), ALIASES, 80),
    keep=st.integers(min_value=-1, max_value=4),
    strays=st.lists(ALIASES, max_size=2),
    delivered=mostly(st.just([]), st.lists(ALIASES, max_size=2), 50),
)
def test_revocation_never_selects_a_current_foreign_shared_or_grace_window_token(
    keys, current, keep, strays, delivered
):
    plan = plan_revocations(
        keys, prefix=PREFIX, current_alias=current, keep_previous=keep, strays=strays, delivered=delivered
    )
    selected = list(plan.keys)
    current_time = minted_at(current, PREFIX)
    assert len(selected) <= MAX_REVOCATIONS_PER_RUN
    assert len({key.key_id for key in selected}) == len(selected)
    if current_time is None:
        assert selected == []
        return
    selected_ids = {key.key_id for key in selected}
    for entry in keys:  # every listed entry of a selected key id is itself up for revocation
        if entry.key_id in selected_ids:
            when = minted_at(entry.alias, PREFIX)
            assert entry.usage == "registry"
            assert when is not None
            assert when <= current_time
            assert entry.alias != current
    last_delivered = max((t for t in (minted_at(a, PREFIX) for a in delivered) if t is not None), default=None)
    previous = {
        key.alias
        for key in keys
        if key.usage == "registry"
        and key.alias != current
        and key.alias not in strays
        and (when := minted_at(key.alias, PREFIX)) is not None
        and when <= current_time
        and (last_delivered is None or when < last_delivered or key.alias in delivered)
    }
    for key in selected:
        if key.alias in previous:  # not a stray: as many newer previous tokens as the grace window holds
            when = minted_at(key.alias, PREFIX)
            newer = {alias for alias in previous if (minted_at(alias, PREFIX), alias) > (when, key.alias)}
            assert len(newer) >= keep


def test_two_keys_listed_under_one_alias_share_its_place_in_the_grace_window():
    twins = [key(owned(6).alias, hours_ago=6, key_id="id-a"), key(owned(6).alias, hours_ago=6, key_id="id-b")]
    revoked = select_revocations(
        [CURRENT, *twins, owned(12)], prefix=PREFIX, current_alias=CURRENT.alias, keep_previous=1
    )
    assert aliases(revoked) == [owned(12).alias]


def test_the_alias_time_keeps_its_seconds():
    assert minted_at("ccr-rotator-20261128T120059Z-abcdef", PREFIX) == datetime(2026, 11, 28, 12, 0, 59, tzinfo=UTC)


def test_exactly_the_cap_is_revoked_without_a_warning():
    old = [owned(hours, f"{hours:06x}") for hours in range(1, MAX_REVOCATIONS_PER_RUN + 1)]
    plan = plan_revocations([CURRENT, *old], prefix=PREFIX, current_alias=CURRENT.alias, keep_previous=0)
    assert len(plan.keys) == MAX_REVOCATIONS_PER_RUN
    assert plan.warnings == ()


def test_only_the_newest_run_revokes():
    newer = owned(-0.001, "dddddd")  # minted after the current token: another run is in flight
    plan = plan_revocations(
        [CURRENT, newer, owned(6), owned(12)], prefix=PREFIX, current_alias=CURRENT.alias, keep_previous=0
    )
    assert plan.keys == ()
    assert plan.warnings == (f"nothing was revoked: a newer rotation ({newer.alias}) will revoke old tokens",)


def test_this_runs_own_strays_never_count_as_a_newer_run():
    stray = owned(0, "ffffff")  # same second as the current token, a greater suffix
    plan = plan_revocations(
        [CURRENT, stray], prefix=PREFIX, current_alias=CURRENT.alias, keep_previous=1, strays=[stray.alias]
    )
    assert aliases(plan.keys) == [stray.alias]


@pytest.mark.parametrize(("minutes_later", "revoked"), [(5, False), (11, True)])
def test_undelivered_token_waits_out_the_in_flight_window(minutes_later, revoked):
    delivered = owned(6)
    undelivered = owned(0.5, "bbbbbb")  # minted after the delivered one, never written: maybe in flight
    plan = plan_revocations(
        [CURRENT, delivered, undelivered],
        prefix=PREFIX,
        current_alias=CURRENT.alias,
        keep_previous=1,
        delivered=[delivered.alias],
        now=NOW - timedelta(hours=0.5) + timedelta(minutes=minutes_later),
    )
    assert (undelivered.alias in aliases(plan.keys)) is revoked
    assert delivered.alias not in aliases(plan.keys)
