"""Token naming and revocation rules: pure functions, so the safety contract can be table-tested.

Every token the rotator mints gets an alias ``<prefix>-<UTC time>-<6 hex>``. Only aliases of exactly that
shape (ASCII digits, a real date, nothing before or after) count as the rotator's own: a person's token
called ``<prefix>-manual`` is never touched, and neither is anything that merely looks close.

The token list comes from a remote API, so the rules trust it as little as they can: tokens are ranked by
the time in their alias (not by the ``created_at`` the list reports), a key id that also appears under an
alias that is kept is never revoked, and one run revokes at most :data:`MAX_REVOCATIONS_PER_RUN`.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

log = logging.getLogger(__name__)

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


def plan_revocations(
    keys: Iterable[ApiKey],
    *,
    prefix: str,
    current_alias: str,
    keep_previous: int,
    strays: Collection[str] = (),
    delivered: Collection[str] = (),
) -> Revocations:
    """The registry tokens to revoke once every namespace holds the token aliased ``current_alias``.

    Keeps the newest ``keep_previous`` of the rotator's older tokens (the grace window for pulls that
    started with them), revokes the rest, and always revokes ``strays``: aliases this run tried to mint
    but never delivered (a POST whose answer was lost). ``delivered`` are the aliases the pull secrets held
    before this run: an owned token minted after the newest of them (or in the same second) was never
    written anywhere (a run stopped between minting and writing) and is revoked too, so it cannot take a
    place in the grace window. This is safe because revocation runs only when every namespace was read.

    Never selects the current token, a token minted after it (another run's), a token that is not a
    registry token, one whose alias is not ours, or a key id that the list also shows under an alias that
    is kept (a duplicate id under an old alias must not revoke the current token). Never raises: whatever
    the list holds, the worst outcome is revoking nothing, with a warning.
    """
    current_time = minted_at(current_alias, prefix)
    if current_time is None:
        return Revocations((), (f"nothing was revoked: the current alias {current_alias!r} is not the rotator's",))
    keys = list(keys)
    last_delivered = max((t for t in (minted_at(alias, prefix) for alias in delivered) if t is not None), default=None)
    previous: list[tuple[datetime, str, ApiKey]] = []
    doomed: list[ApiKey] = []
    for key in keys:
        when = minted_at(key.alias, prefix)
        if key.usage != "registry" or when is None or key.alias == current_alias or when > current_time:
            continue
        never_delivered = last_delivered is not None and when >= last_delivered and key.alias not in delivered
        if key.alias in strays or never_delivered:
            doomed.append(key)
        else:
            previous.append((when, key.alias, key))
    previous.sort(key=lambda entry: entry[:2], reverse=True)
    # The window counts aliases, not list entries: two keys listed under one alias are kept or go together.
    window = sorted({entry[:2] for entry in previous}, reverse=True)[: max(keep_previous, 0)]
    doomed += [key for when, alias, key in previous if (when, alias) not in window]
    doomed_entries = {id(key) for key in doomed}
    kept_ids = {key.key_id for key in keys if id(key) not in doomed_entries}
    return _capped([key for key in _unique(doomed) if key.key_id not in kept_ids])


def select_revocations(
    keys: Iterable[ApiKey],
    *,
    prefix: str,
    current_alias: str,
    keep_previous: int,
    strays: Collection[str] = (),
    delivered: Collection[str] = (),
) -> list[ApiKey]:
    """The keys :func:`plan_revocations` selects; its warnings go to the log (for callers with no report)."""
    plan = plan_revocations(
        keys,
        prefix=prefix,
        current_alias=current_alias,
        keep_previous=keep_previous,
        strays=strays,
        delivered=delivered,
    )
    for warning in plan.warnings:
        log.warning("%s", warning)
    return list(plan.keys)


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
