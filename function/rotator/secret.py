"""A string wrapper for credentials, so that they cannot reach a log line or a response by accident."""

from __future__ import annotations

import weakref
from typing import Final

_LIVE: Final[weakref.WeakSet[SecretStr]] = weakref.WeakSet()
REDACTED: Final = "[REDACTED]"


class SecretStr:
    """Holds a credential; ``str()``/``repr()`` never show it, :meth:`reveal` does.

    Every live instance is also known to the log formatter, which redacts its value from any log line as a
    second line of defence.
    """

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str) -> None:
        self._value = value
        if len(value) >= 8:  # noqa: PLR2004 - shorter strings would redact ordinary words
            _LIVE.add(self)

    def reveal(self) -> str:
        """Return the secret value, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def redact(text: str) -> str:
    """Replace the value of every live :class:`SecretStr` found in ``text``."""
    for secret in list(_LIVE):
        value = secret.reveal()
        if value in text:
            text = text.replace(value, REDACTED)
    return text
