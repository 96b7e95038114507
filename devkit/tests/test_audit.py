"""The supply-chain audit's decisions, from pip-audit reports and project JSON given as data (no network)."""

from __future__ import annotations

from devkit.audit import Finding, audit, pins

LOCK = """
# via something
requests==2.34.2 \\
    --hash=sha256:abc
Google_Auth==2.63.0 ; python_version >= "3.11" \\
    --hash=sha256:def
"""


def project(version, *vulns):
    return {"info": {"version": version}, "vulnerabilities": list(vulns)}


def skipped(name):
    return {"name": name, "skip_reason": f"Dependency not found on PyPI and could not be audited: {name}"}


def test_pins_reads_name_and_version_of_hashed_lines():
    assert pins([LOCK]) == {"requests": "2.34.2", "google-auth": "2.63.0"}


def test_audit_reports_what_pip_audit_found_unless_excepted():
    report = {
        "dependencies": [{"name": "jinja2", "version": "3.1.0", "vulns": [{"id": "GHSA-1", "fix_versions": ["3.1.6"]}]}]
    }
    found = audit(report, {"jinja2": "3.1.0"}, {}, lambda _: None)
    assert found.findings == [Finding("jinja2", "3.1.0", "GHSA-1", ("3.1.6",))]
    assert not found.ok
    excepted = audit(
        report, {"jinja2": "3.1.0"}, {"exceptions": {"GHSA-1": {"package": "jinja2", "reason": "r"}}}, lambda _: None
    )
    assert excepted.ok


def test_audit_falls_back_to_the_latest_release_json_for_skipped_pins():
    report = {"dependencies": [skipped("requests"), skipped("flask")]}
    latest = {
        "requests": project("2.34.2"),
        "flask": project("3.1.3", {"id": "PYSEC-9", "fixed_in": ["3.1.4"]}, {"id": "OLD", "withdrawn": "2026-01-01"}),
    }
    result = audit(report, {"requests": "2.34.2", "flask": "3.1.3"}, {}, latest.get)
    assert result.findings == [Finding("flask", "3.1.3", "PYSEC-9", ("3.1.4",))]
    assert result.not_audited == []
    assert result.audited == 2


def test_audit_fails_an_older_pin_it_cannot_audit_unless_accepted_with_a_reason():
    report = {"dependencies": [skipped("numpy")]}
    fetch = {"numpy": project("2.5.5")}.get
    result = audit(report, {"numpy": "2.4.6"}, {}, fetch)
    assert result.not_audited == ["numpy==2.4.6: not the latest release (2.5.5); no per-release data to audit it with"]
    assert not result.ok
    accepted = audit(report, {"numpy": "2.4.6"}, {"unaudited": {"numpy==2.4.6": "needs Python 3.12"}}, fetch)
    assert accepted.ok
    assert accepted.audited == 0


def test_audit_fails_on_a_stale_exception():
    report = {"dependencies": [skipped("requests")]}
    exceptions = {"exceptions": {"GHSA-gone": {"package": "x", "reason": "r"}}, "unaudited": {"numpy==1.0": "r"}}
    result = audit(report, {"requests": "2.34.2"}, exceptions, {"requests": project("2.34.2")}.get)
    assert result.unused_exceptions == ["GHSA-gone", "numpy==1.0"]
    assert not result.ok


def test_audit_fails_when_the_index_answers_nothing():
    result = audit({"dependencies": [skipped("requests")]}, {"requests": "2.34.2"}, {}, lambda _: None)
    assert result.not_audited == ["requests==2.34.2: the index answered neither the release nor the project JSON"]
