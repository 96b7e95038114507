"""Token naming and revocation rules: pure functions, so the safety contract can be table-tested.

Every token the rotator mints gets an alias ``<prefix>-<UTC time>-<6 hex>``. Only aliases of exactly that
shape count as the rotator's own: a person's token called ``<prefix>-manual`` is never touched.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

_STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class ApiKey:
    """One limited-usage API key as the Crusoe API lists it (registry tokens have usage ``registry``)."""

    key_id: str
    alias: str
    usage: str
    created_at: datetime | None
    expires_at: datetime | None


def new_alias(prefix: str, now: datetime, suffix: str | None = None) -> str:
    """A unique alias for a token minted at ``now`` (the suffix keeps two mints in one second apart)."""
    return f"{prefix}-{now.astimezone(UTC).strftime(_STAMP_FORMAT)}-{suffix or secrets.token_hex(3)}"


def owned_alias_pattern(prefix: str) -> re.Pattern[str]:
    """The exact alias shape :func:`new_alias` produces for ``prefix``."""
    return re.compile(rf"^{re.escape(prefix)}-(\d{{8}}T\d{{6}}Z)-[0-9a-f]{{6}}$")


def minted_at(alias: str, prefix: str) -> datetime | None:
    """When an owned alias was minted (from the alias itself), or None if the alias is not ours."""
    match = owned_alias_pattern(prefix).match(alias)
    if match is None:
        return None
    return datetime.strptime(match.group(1), _STAMP_FORMAT).replace(tzinfo=UTC)


def select_revocations(
    keys: Iterable[ApiKey],
    *,
    prefix: str,
    current_alias: str,
    keep_previous: int,
    strays: Collection[str] = (),
    delivered: Collection[str] = (),
) -> list[ApiKey]:
    """The registry tokens to revoke once every namespace holds the token aliased ``current_alias``.

    Keeps the newest ``keep_previous`` of the rotator's older tokens (the grace window for pulls that
    started with them), revokes the rest, and always revokes ``strays``: aliases this run tried to mint
    but never delivered (a POST whose answer was lost). ``delivered`` are the aliases the pull secrets held
    before this run: an owned token minted after the newest of them (or in the same second) was never
    written anywhere (a run stopped between minting and writing) and is revoked too, so it cannot take a
    place in the grace window. This is safe because revocation runs only when every namespace was read.
    Never selects the current token, a token minted after it (another run's), a token that is not a
    registry token, or one whose alias is not ours.
    """
    current_time = minted_at(current_alias, prefix)
    if current_time is None:
        raise ValueError("the current alias does not have the rotator's alias shape")
    delivered_times = [t for t in (minted_at(alias, prefix) for alias in delivered) if t is not None]
    last_delivered = max(delivered_times, default=None)
    owned: list[tuple[datetime, ApiKey]] = []
    stray_keys: list[ApiKey] = []
    for key in keys:
        when = minted_at(key.alias, prefix)
        if key.usage != "registry" or when is None or key.alias == current_alias or when > current_time:
            continue
        never_delivered = last_delivered is not None and when >= last_delivered and key.alias not in delivered
        if key.alias in strays or never_delivered:
            stray_keys.append(key)
        else:
            owned.append((key.created_at or when, key))
    owned.sort(key=lambda pair: (pair[0], pair[1].alias), reverse=True)
    return stray_keys + [key for _, key in owned[keep_previous:]]
