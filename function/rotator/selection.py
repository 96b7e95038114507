"""Which namespaces a cluster's pull secret goes into: names, shell-style globs, a label selector, exclusions.

Pure functions only. The selection is parsed once with the configuration (every mistake named up front) and
evaluated afresh on every run against the namespaces the API server lists, so a namespace created since the
last run gets the secret at the next one. Explicit names alone need no listing (and no permission to list).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

#: Characters a namespace glob may hold: a namespace name's, plus ``*``, ``?`` and ``[...]`` classes.
_GLOB: Final = re.compile(r"^[a-z0-9*?\[\]!-]{1,63}$")
_GLOB_CHARS: Final = frozenset("*?[")
_NAMESPACE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_NAME: Final = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE: Final = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_DNS_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_SUBDOMAIN_MAX: Final = 253
_SET: Final = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQUALITY: Final = re.compile(r"^(?P<key>[^=!\s]+)\s*(?P<op>==|=|!=)\s*(?P<value>\S*)$")

Operator = Literal["exists", "absent", "equals", "differs", "in", "notin"]


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this term, as the API server decides it."""
        value = labels.get(self.key)
        if self.operator == "exists":
            return value is not None
        if self.operator == "absent":
            return value is None
        if self.operator in {"equals", "in"}:
            return value is not None and value in self.values
        return value is None or value not in self.values


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector (``kubectl -l`` syntax); ``text`` is what the user wrote."""

    text: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Every term holds."""
        return all(term.matches(labels) for term in self.requirements)


@dataclass(frozen=True)
class NamespaceSelection:
    """The configured selection: explicit names, globs, a selector, exclusions (globs)."""

    names: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    selector: LabelSelector | None = None
    exclude: tuple[str, ...] = ()

    @property
    def needs_listing(self) -> bool:
        """A glob or a selector can only be evaluated against the namespaces that exist now."""
        return bool(self.patterns) or self.selector is not None

    def excluded(self, namespace: str) -> bool:
        """Whether an ``EXCLUDE_NAMESPACES`` glob removes ``namespace``."""
        return any(fnmatch.fnmatchcase(namespace, pattern) for pattern in self.exclude)


@dataclass(frozen=True)
class NamespaceInfo:
    """What the selection needs to know of a listed namespace."""

    name: str
    labels: Mapping[str, str]
    terminating: bool


@dataclass(frozen=True)
class Resolved:
    """The selection evaluated: namespaces to write, namespaces being deleted, named ones that do not exist."""

    targets: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


def split_list(raw: str | Iterable[str]) -> list[str]:
    """A comma-separated string (or a list) as stripped, non-empty entries."""
    parts = raw.split(",") if isinstance(raw, str) else list(raw)
    return [part.strip() for part in parts if isinstance(part, str) and part.strip()]


def parse_namespaces(entries: Iterable[str], report: Callable[[str], None]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Explicit names and globs from ``TARGET_NAMESPACES`` entries; bad entries are reported, not kept."""
    names: list[str] = []
    patterns: list[str] = []
    bad: list[str] = []
    for entry in entries:
        if _GLOB_CHARS & set(entry):
            (patterns if _GLOB.match(entry) else bad).append(entry)
        else:
            (names if _NAMESPACE.match(entry) else bad).append(entry)
    if bad:
        report(f"not valid namespace names or globs: {', '.join(repr(b) for b in bad)}")
    return tuple(dict.fromkeys(names)), tuple(dict.fromkeys(patterns))


def parse_globs(entries: Iterable[str], report: Callable[[str], None]) -> tuple[str, ...]:
    """Globs (or plain names) such as ``EXCLUDE_NAMESPACES`` holds."""
    globs = list(dict.fromkeys(entries))
    bad = [g for g in globs if not _GLOB.match(g)]
    if bad:
        report(f"not valid namespace globs: {', '.join(repr(b) for b in bad)}")
    return tuple(g for g in globs if g not in bad)


def parse_selector(text: str) -> LabelSelector:
    """Parse a label selector as ``kubectl -l`` takes it.

    Raises:
        ValueError: naming the term that is not valid.
    """
    terms = _split_terms(text)
    if not terms:
        raise ValueError("is empty")
    return LabelSelector(text.strip(), tuple(_requirement(term) for term in terms))


def _split_terms(text: str) -> list[str]:
    """Split on the commas outside ``( )``."""
    if not text.strip():
        return []
    terms: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth not in {0, 1}:
            raise ValueError("has unbalanced parentheses")
        if char == "," and depth == 0:
            terms.append(text[start:index].strip())
            start = index + 1
    if depth != 0:
        raise ValueError("has unbalanced parentheses")
    terms.append(text[start:].strip())
    if any(not term for term in terms):
        raise ValueError("has an empty term (two commas in a row?)")
    return terms


def _requirement(term: str) -> Requirement:
    if match := _SET.match(term):
        values = frozenset(split_list(match["values"]))
        if not values:
            raise ValueError(f"term {term!r} lists no value")
        for value in values:
            _check_value(value, term)
        return Requirement(_checked_key(match["key"], term), "in" if match["op"] == "in" else "notin", values)
    if match := _EQUALITY.match(term):
        _check_value(match["value"], term)
        operator: Operator = "differs" if match["op"] == "!=" else "equals"
        return Requirement(_checked_key(match["key"], term), operator, frozenset({match["value"]}))
    if term.startswith("!"):
        return Requirement(_checked_key(term[1:].strip(), term), "absent")
    return Requirement(_checked_key(term, term), "exists")


def _checked_key(key: str, term: str) -> str:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > _DNS_SUBDOMAIN_MAX or not _DNS_SUBDOMAIN.match(prefix)):
        raise ValueError(f"term {term!r}: the key prefix {prefix!r} is not a DNS subdomain")
    if not _LABEL_NAME.match(name):
        raise ValueError(f"term {term!r}: {key!r} is not a valid label key")
    return key


def _check_value(value: str, term: str) -> None:
    if not _LABEL_VALUE.match(value):
        raise ValueError(f"term {term!r}: {value!r} is not a valid label value")


def resolve(selection: NamespaceSelection, listed: Iterable[NamespaceInfo] | None) -> Resolved:
    """The namespaces to write now: named ones first (in the configured order), then matches, sorted.

    ``listed`` is None when the selection has names only (nothing was listed): every name not excluded is a
    target, and a missing namespace shows up when its write is refused.
    """
    if listed is None:
        return Resolved(tuple(n for n in selection.names if not selection.excluded(n)))
    existing = {info.name: info for info in listed}
    matched = sorted(
        name
        for name, info in existing.items()
        if any(fnmatch.fnmatchcase(name, p) for p in selection.patterns)
        or (selection.selector is not None and selection.selector.matches(info.labels))
    )
    chosen = [n for n in dict.fromkeys([*selection.names, *matched]) if not selection.excluded(n)]
    missing = tuple(n for n in chosen if n not in existing)
    skipped = tuple(n for n in chosen if n in existing and existing[n].terminating)
    targets = tuple(n for n in chosen if n in existing and not existing[n].terminating)
    return Resolved(targets, skipped, missing)
