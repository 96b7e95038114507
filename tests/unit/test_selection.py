"""Namespace selection: globs, label selectors (kubectl -l syntax), exclusions, terminating and missing names."""

from __future__ import annotations

import pytest
from rotator.selection import NamespaceInfo, NamespaceSelection, parse_namespaces, parse_selector, resolve


def info(name, labels=None, *, terminating=False):
    return NamespaceInfo(name, labels or {}, terminating)


LISTED = [
    info("team-a", {"team": "a", "tier": "prod"}),
    info("team-b", {"team": "b", "tier": "dev"}),
    info("kube-system"),
    info("default"),
    info("team-gone", {"team": "c"}, terminating=True),
]


def test_parse_namespaces_splits_names_from_globs_and_reports_bad_entries():
    problems = []
    names, patterns = parse_namespaces(["web", "team-*", "ml", "web", "Bad_One", "a?[bc]"], problems.append)
    assert names == ("web", "ml")
    assert patterns == ("team-*", "a?[bc]")
    assert problems == ["not valid namespace names or globs: 'Bad_One'"]


@pytest.mark.parametrize(
    ("text", "matching"),
    [
        ("team=a", ["team-a"]),
        ("team==a", ["team-a"]),
        ("team!=a", ["team-b", "kube-system", "default", "team-gone"]),
        ("team in (a, b)", ["team-a", "team-b"]),
        ("team notin (a)", ["team-b", "kube-system", "default", "team-gone"]),
        ("team", ["team-a", "team-b", "team-gone"]),
        ("!team", ["kube-system", "default"]),
        ("team in (a,b),tier=dev", ["team-b"]),
        ("example.com/owner", []),
    ],
)
def test_label_selector_matches_as_the_api_server_does(text, matching):
    selector = parse_selector(text)
    assert [n.name for n in LISTED if selector.matches(n.labels)] == matching


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is empty"),
        ("team=a,,tier=b", "empty term"),
        ("team in (a", "unbalanced"),
        ("team in ()", "lists no value"),
        ("Bad Key=a", "not a valid label key"),
        ("team=has space", "not a valid label key|not a valid label value"),
        ("UPPER_.com/x=a", "not a DNS subdomain"),
        ("team=" + "v" * 64, "not a valid label value"),
    ],
)
def test_label_selector_refuses_what_kubectl_would(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_selector(text)


def test_resolve_with_names_only_lists_nothing_and_keeps_the_configured_order():
    selection = NamespaceSelection(names=("web", "ml", "kube-x"), exclude=("kube-*",))
    assert not selection.needs_listing
    assert resolve(selection, None).targets == ("web", "ml")


def test_resolve_glob_selector_and_exclusions():
    selection = NamespaceSelection(
        names=("default",), patterns=("team-*",), selector=parse_selector("tier=dev"), exclude=("team-b",)
    )
    resolved = resolve(selection, LISTED)
    assert resolved.targets == ("default", "team-a")
    assert resolved.skipped == ("team-gone",)
    assert resolved.missing == ()


def test_resolve_star_takes_every_namespace_but_the_excluded_and_skips_terminating_ones():
    resolved = resolve(NamespaceSelection(patterns=("*",), exclude=("kube-*",)), LISTED)
    assert resolved.targets == ("default", "team-a", "team-b")
    assert resolved.skipped == ("team-gone",)


def test_resolve_names_a_named_namespace_that_does_not_exist():
    resolved = resolve(NamespaceSelection(names=("nowhere",), patterns=("team-a",)), LISTED)
    assert resolved.missing == ("nowhere",)
    assert resolved.targets == ("team-a",)
