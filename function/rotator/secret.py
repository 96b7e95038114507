"""A string wrapper for credentials, so that they cannot reach a log line or a response by accident.

Every :class:`SecretStr` is also registered for redaction (see :func:`redact`), as a second line of defence
behind never logging secrets at all. A registered value stays redacted:

- while its :class:`SecretStr` is alive;
- for the whole run that created it, even if the wrapper itself is gone: while a run scope is open
  (:func:`open_scope`, which :func:`rotator.logs.bind` calls for every request), values are held by
  strong references, because a revealed copy (in a message, a traceback) can outlive the wrapper;
- and, once the last scope closes, for the next :data:`RECENT` values, so a traceback the framework logs
  after the handler returned is still covered. Memory stays bounded either way.

A value is redacted in the forms it can take in a log line: as is, JSON- or repr-escaped (newlines, quotes
and non-ASCII of a PEM key or kubeconfig), percent-encoded, and base64 (standard and URL-safe alphabet,
padded or not, and at every alignment inside a longer base64 text such as a docker config ``auth``
field, ``base64("user:" + token)``).
"""

from __future__ import annotations

import base64
import functools
import json
import threading
import weakref
from collections import deque
from typing import Final
from urllib.parse import quote

REDACTED: Final = "[REDACTED]"
#: Values shorter than this are not redacted: they would replace ordinary words.
MIN_LENGTH: Final = 8
#: How many values of closed scopes stay redacted.
RECENT: Final = 64


class SecretStr:
    """Holds a credential; ``str()``/``repr()`` never show it, :meth:`reveal` does."""

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str) -> None:
        self._value = value
        _REGISTRY.add(self)

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


class _Registry:
    """The values to redact: live wrappers, values of open scopes, and the most recent released ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: weakref.WeakSet[SecretStr] = weakref.WeakSet()
        self._held: dict[str, None] = {}
        self._recent: deque[str] = deque(maxlen=RECENT)
        self._scopes = 0

    def add(self, secret: SecretStr) -> None:
        if len(secret.reveal()) < MIN_LENGTH:
            return
        with self._lock:
            self._live.add(secret)
            if self._scopes:
                self._held[secret.reveal()] = None

    def open(self) -> None:
        with self._lock:
            self._scopes += 1

    def close(self) -> None:
        with self._lock:
            self._scopes = max(self._scopes - 1, 0)
            if not self._scopes:
                self._recent.extend(value for value in self._held if value not in self._recent)
                self._held.clear()

    def values(self) -> list[str]:
        """Every value to redact, longest first (a secret inside another is redacted with it)."""
        with self._lock:
            values = {secret.reveal() for secret in list(self._live)} | set(self._held) | set(self._recent)
        return sorted(values, key=len, reverse=True)


_REGISTRY: Final = _Registry()


def open_scope() -> None:
    """Hold every value registered from now on until the matching :func:`close_scope` (scopes nest)."""
    _REGISTRY.open()


def close_scope() -> None:
    """End a scope; when none is left open, its values move to the bounded list of recent ones."""
    _REGISTRY.close()


def redact(text: str) -> str:
    """Replace every registered value found in ``text``, in each of the forms it can take."""
    for value in _REGISTRY.values():
        for form in forms(value):
            if form in text:
                text = text.replace(form, REDACTED)
    return text


@functools.lru_cache(maxsize=RECENT)
def forms(value: str) -> tuple[str, ...]:
    """The spellings of ``value`` to look for, longest first."""
    raw = value.encode()
    spellings = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], repr(value)[1:-1]}
    spellings.add(quote(value, safe=""))
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode()
        spellings |= {whole, whole.rstrip("=")}
        # Inside a longer base64 text the value starts at any byte offset: the groups made only of its
        # own bytes are the same whatever came before, one spelling per offset modulo 3.
        for skip in range(3):
            core = raw[skip:]
            core = core[: len(core) // 3 * 3]
            if len(core) >= MIN_LENGTH - 2:
                spellings.add(encode(core).decode())
    return tuple(sorted(spellings, key=len, reverse=True))
