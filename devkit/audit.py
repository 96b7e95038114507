"""``make audit``: known vulnerabilities in both locks (``requirements.txt``, ``tests/requirements.txt``).

pip-audit does the work with its default service, the package index's per-release JSON, which lists the
vulnerabilities known for each pinned release. Where that answers nothing for a package (the registry
mirror these machines reach serves only each project's *latest* release JSON: pip-audit then reports
"Dependency not found on PyPI and could not be audited" for every package and still exits 0), this falls
back to the project's JSON, whose ``vulnerabilities`` are those of the latest release, and so speak for the
pinned version only when the pin *is* the latest release. A pin that is older and could not be audited
fails the audit like a vulnerability does: re-lock (``make lock``), or audit it elsewhere and write an
exception.

Exceptions live in ``devkit/audit_exceptions.json``, each with its reason: ``exceptions`` maps a vulnerability
id to ``{"package", "reason"}`` (why it does not apply), ``unaudited`` maps ``name==version`` to why that pin
cannot be the latest release (so this machine cannot audit it). An entry that matches nothing fails the
audit too, so the file never outlives what it excuses.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import requests
from pip._internal.models.index import PyPI

from devkit import REPO_ROOT

LOCKS: Final = (REPO_ROOT / "requirements.txt", REPO_ROOT / "tests" / "requirements.txt")
EXCEPTIONS: Final = REPO_ROOT / "devkit" / "audit_exceptions.json"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)
_TIMEOUT_SECONDS: Final = 30

Fetch = Callable[[str], dict[str, Any] | None]


@dataclass(frozen=True)
class Finding:
    """A known vulnerability of a pinned release."""

    package: str
    version: str
    vulnerability: str
    fixed_in: tuple[str, ...]


@dataclass
class Report:
    """What the audit found, what it could not audit, and which exceptions were used."""

    audited: int
    findings: list[Finding]
    not_audited: list[str]
    accepted_unaudited: list[str]
    unused_exceptions: list[str]

    @property
    def ok(self) -> bool:
        """Nothing found, nothing left unaudited, no stale exception."""
        return not (self.findings or self.not_audited or self.unused_exceptions)


def canonical(name: str) -> str:
    """The normalised project name (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(texts: Iterable[str]) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line in the lock texts."""
    return {canonical(name): version for text in texts for name, version in _PIN.findall(text)}


def pip_audit(locks: Iterable[Path]) -> dict[str, Any]:
    """pip-audit's JSON report over the locks (hash-checked, no resolver: the locks are complete)."""
    argv = [sys.executable, "-m", "pip_audit", "--disable-pip", "--require-hashes", "--progress-spinner", "off"]
    for lock in locks:
        argv += ["-r", str(lock)]
    result = subprocess.run([*argv, "-f", "json"], capture_output=True, text=True, check=False)
    if not result.stdout.strip():
        raise RuntimeError(f"pip-audit produced no report (exit {result.returncode}): {result.stderr.strip()}")
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def fetch_project(name: str) -> dict[str, Any] | None:
    """The index's JSON for a project (its latest release and that release's vulnerabilities), or None."""
    response = requests.get(f"{PyPI.pypi_url}/{name}/json", timeout=_TIMEOUT_SECONDS, allow_redirects=False)
    if response.status_code != requests.codes.ok:
        return None
    data: dict[str, Any] = response.json()
    return data


def _from_project(name: str, version: str, fetch: Fetch) -> tuple[list[Finding], str | None]:
    """Findings for a pin from the project JSON, or why it could not be audited that way."""
    project = fetch(name)
    if project is None:
        return [], f"{name}=={version}: the index answered neither the release nor the project JSON"
    latest = str(project.get("info", {}).get("version", ""))
    if latest != version:
        return [], f"{name}=={version}: not the latest release ({latest}); no per-release data to audit it with"
    findings = [
        Finding(name, version, str(v["id"]), tuple(v.get("fixed_in") or ()))
        for v in project.get("vulnerabilities") or []
        if not v.get("withdrawn")
    ]
    return findings, None


def audit(report: dict[str, Any], pinned: dict[str, str], exceptions: dict[str, Any], fetch: Fetch) -> Report:
    """Merge pip-audit's report with the fallback for what it skipped, then apply the exceptions."""
    vulnerabilities, unaudited = exceptions.get("exceptions", {}), exceptions.get("unaudited", {})
    findings: list[Finding] = []
    not_audited: list[str] = []
    accepted: list[str] = []
    for dependency in report.get("dependencies", []):
        name, version = canonical(dependency["name"]), str(dependency.get("version") or pinned.get(dependency["name"]))
        if "skip_reason" not in dependency:
            findings += [
                Finding(name, version, str(v["id"]), tuple(v.get("fix_versions") or ())) for v in dependency["vulns"]
            ]
            continue
        pin = f"{name}=={pinned.get(name, version)}"
        found, reason = _from_project(name, pinned.get(name, version), fetch)
        findings += found
        if reason is not None:
            (accepted if pin in unaudited else not_audited).append(reason)
    used = {f.vulnerability for f in findings} | {reason.split(":", 1)[0] for reason in accepted}
    return Report(
        audited=len(report.get("dependencies", [])) - len(not_audited) - len(accepted),
        findings=[f for f in findings if f.vulnerability not in vulnerabilities],
        not_audited=not_audited,
        accepted_unaudited=accepted,
        unused_exceptions=sorted((set(vulnerabilities) | set(unaudited)) - used),
    )


def main(argv: list[str] | None = None) -> int:
    """Audit both locks; print what was found; exit 1 unless all is clean."""
    parser = argparse.ArgumentParser(prog="python -m devkit.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--exceptions", type=Path, default=EXCEPTIONS, help="documented exceptions (JSON)")
    args = parser.parse_args(argv)
    exceptions = json.loads(args.exceptions.read_text(encoding="utf-8"))
    pinned = pins(lock.read_text(encoding="utf-8") for lock in LOCKS)
    result = audit(pip_audit(LOCKS), pinned, exceptions, fetch_project)
    out = sys.stdout
    out.write(f"audited {result.audited} of {len(pinned)} pinned packages in {len(LOCKS)} locks\n")
    for finding in result.findings:
        fixed = ", ".join(finding.fixed_in) or "no fix yet"
        out.write(f"VULNERABLE {finding.package}=={finding.version}: {finding.vulnerability} (fixed in {fixed})\n")
    for reason in result.not_audited:
        out.write(f"NOT AUDITED {reason}\n")
    for reason in result.accepted_unaudited:
        why = exceptions["unaudited"][reason.split(":", 1)[0]]
        out.write(f"not audited, accepted: {reason} -- {why}\n")
    for vulnerability in result.unused_exceptions:
        out.write(f"STALE EXCEPTION {vulnerability}: matches no finding; remove it\n")
    out.write(f"vulnerabilities excepted: {', '.join(sorted(exceptions.get('exceptions', {}))) or 'none'}\n")
    out.write("audit: clean\n" if result.ok else "audit: FAILED\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
