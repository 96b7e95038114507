"""Token naming and revocation rules: pure functions, so the safety contract can be table-tested.

Every token the rotator mints gets an alias ``<prefix>-<UTC time>-<6 hex>``. Only aliases of exactly that
shape (ASCII digits, a real date, nothing before or after) count as the rotator's own: a person's token
called ``<prefix>-manual`` is never touched, and neither is anything that merely looks close.

The token list comes from a remote API, so the rules trust it as little as they can: tokens are ranked by
the time in their alias (not by the ``created_at`` the list reports), a key id that also appears under an
alias that is kept is never revoked, and one run revokes at most :data:`MAX_REVOCATIONS_PER_RUN`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

_STAMP_FORMAT: Final = "%Y%m%dT%H%M%SZ"
# Explicit [0-9], not \d: \d also matches other scripts' digits, which int() would then read.
_STAMP: Final = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z")

#: At most this many tokens are revoked by one run; the rest wait for the next run (a warning says so).
#: A bad list answer (or a bug) can then cost at most this many tokens, and a backlog still drains.
MAX_REVOCATIONS_PER_RUN: Final = 20


@dataclass(frozen=True)
class ApiKey:
    """One limited-usage API key as the Crusoe API lists it (registry tokens have usage ``registry``)."""

    key_id: str
    alias: str
    usage: str
    created_at: datetime | None
    expires_at: datetime | None


@dataclass(frozen=True)
class Revocations:
    """What one run should revoke, and what it chose not to (for the run's warnings)."""

    keys: tuple[ApiKey, ...]
    warnings: tuple[str, ...] = ()


def new_alias(prefix: str, now: datetime, suffix: str | None = None) -> str:
    """A unique alias for a token minted at ``now`` (the suffix keeps two mints in one second apart)."""
    return f"{prefix}-{now.astimezone(UTC).strftime(_STAMP_FORMAT)}-{suffix or secrets.token_hex(3)}"


def owned_alias_pattern(prefix: str) -> re.Pattern[str]:
    """The exact alias shape :func:`new_alias` produces for ``prefix`` (use with ``fullmatch``)."""
    return re.compile(rf"{re.escape(prefix)}-({_STAMP.pattern})-[0-9a-f]{{6}}")


def minted_at(alias: str, prefix: str) -> datetime | None:
    """When an owned alias was minted (from the alias itself), or None if the alias is not ours.

    An alias of the right shape with an impossible date (``...-20260230T...``) is not ours either.
    """
    match = owned_alias_pattern(prefix).fullmatch(alias)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[1:])
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class RevocationPolicy:
    """What a run knows when it chooses what to revoke."""

    prefix: str
    current_alias: str
    keep_previous: int
    #: When the run chooses (its clock).
    now: datetime
    #: How long another run may still be writing the token it minted (the run deadline plus a margin).
    in_flight: timedelta
    #: Aliases this run tried to mint but whose answer was lost: no run will ever deliver them.
    strays: Collection[str] = ()
    #: Aliases the pull secrets held when this run read them.
    delivered: Collection[str] = ()


def plan_revocations(keys: Iterable[ApiKey], policy: RevocationPolicy) -> Revocations:
    """The registry tokens to revoke once every namespace holds the token aliased ``policy.current_alias``.

    Runs may overlap (a scheduler retry, a manual call, a second instance), so the rules never revoke a
    token another run may still deliver:

    - Only the newest run revokes: when the list shows one of our tokens minted after the current one (or
      in the same second with a greater alias), another run is in flight or finished later, and it will
      clean up; nothing is revoked now.
    - An older token that no secret held when this run read them was either never delivered (a run stopped
      between minting and writing) or is being written right now by a slower run. It is revoked only once
      it is older than ``in_flight``; until then it is simply kept, outside the grace window.
    - Of the remaining older tokens, the newest ``keep_previous`` stay (the grace window for pulls that
      started with them); the rest are revoked, and so are this run's own ``strays``.

    Never selects the current token, a token that is not a registry token, one whose alias is not ours, or a
    key id that the list also shows under an alias that is kept. Never raises: whatever the list holds, the
    worst outcome is revoking nothing, with a warning.
    """
    current_time = minted_at(policy.current_alias, policy.prefix)
    if current_time is None:
        warning = f"nothing was revoked: the current alias {policy.current_alias!r} is not the rotator's"
        return Revocations((), (warning,))
    keys = list(keys)
    owned = [(when, key) for key in keys if key.usage == "registry" and (when := minted_at(key.alias, policy.prefix))]
    # This run's own strays were tried before the current alias, and a token the secrets held was written
    # before this run read them: in the current alias's second, neither is "newer".
    earlier = {*policy.strays, *policy.delivered}
    newer = sorted(
        key.alias
        for when, key in owned
        if (when, key.alias) > (current_time, policy.current_alias)
        and not (key.alias in earlier and when == current_time)
    )
    if newer:
        return Revocations((), (f"nothing was revoked: a newer rotation ({newer[-1]}) will revoke old tokens",))
    doomed, previous = _older_tokens([(when, key) for when, key in owned if when <= current_time], policy)
    # The window counts aliases, not list entries: two keys listed under one alias are kept or go together.
    # Tokens the secrets held come first: pulls may be using them; an older token may never have been delivered.
    ranked = sorted({(alias in policy.delivered, when, alias) for when, alias, _ in previous}, reverse=True)
    window = {alias for _, _, alias in ranked[: max(policy.keep_previous, 0)]}
    newest_first = sorted(previous, key=lambda entry: entry[:2], reverse=True)
    doomed += [key for _, alias, key in newest_first if alias not in window]
    doomed_entries = {id(key) for key in doomed}
    kept_ids = {key.key_id for key in keys if id(key) not in doomed_entries}
    return _capped([key for key in _unique(doomed) if key.key_id not in kept_ids])


def _older_tokens(
    owned: list[tuple[datetime, ApiKey]], policy: RevocationPolicy
) -> tuple[list[ApiKey], list[tuple[datetime, str, ApiKey]]]:
    """Split the owned tokens older than the current one into the doomed and the grace-window candidates."""
    delivered_times = (minted_at(alias, policy.prefix) for alias in policy.delivered)
    last_delivered = max((t for t in delivered_times if t is not None), default=None)
    doomed: list[ApiKey] = []
    previous: list[tuple[datetime, str, ApiKey]] = []
    for when, key in owned:
        if key.alias == policy.current_alias:
            continue
        if key.alias in policy.strays:
            doomed.append(key)
        elif last_delivered is not None and when >= last_delivered and key.alias not in policy.delivered:
            if policy.now - when > policy.in_flight:  # never delivered, and no run can still be writing it
                doomed.append(key)
        else:
            previous.append((when, key.alias, key))
    return doomed, previous


def _unique(keys: Iterable[ApiKey]) -> list[ApiKey]:
    """``keys`` without a second entry for a key id already listed (a duplicate answer revokes once)."""
    seen: set[str] = set()
    unique: list[ApiKey] = []
    for key in keys:
        if key.key_id not in seen:
            seen.add(key.key_id)
            unique.append(key)
    return unique


def _capped(keys: list[ApiKey]) -> Revocations:
    """At most :data:`MAX_REVOCATIONS_PER_RUN` of ``keys``; a warning names how many wait for the next run."""
    if len(keys) <= MAX_REVOCATIONS_PER_RUN:
        return Revocations(tuple(keys))
    waiting = len(keys) - MAX_REVOCATIONS_PER_RUN
    warning = (
        f"{waiting} more old token(s) are due for revocation; at most {MAX_REVOCATIONS_PER_RUN} are revoked "
        "per run, the next run continues"
    )
    return Revocations(tuple(keys[:MAX_REVOCATIONS_PER_RUN]), (warning,))
