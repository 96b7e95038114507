"""``make reliability``: run every fault scenario, the bad-input tests and a soak; write ``docs/reliability.md``.

One source of truth per scenario: each fault scenario is a test (``tests/integration/test_faults*.py``) that
states what it expects and records what it observed through the ``scenario`` fixture; this command runs them
with pytest (``--junitxml``) and turns the results into the table. Bad inputs are the tests whose names say
they feed hostile or mistaken input (``BAD_INPUT_KEYWORDS``), counted by outcome. The soak is
:func:`devkit.soak.run_soak`, the code ``make soak`` and ``tests/integration/test_soak.py`` run.
Strict expected failures (``xfail``) are product bugs a scenario found: the table says so, with the reason.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from devkit import REPO_ROOT
from devkit.cluster import ControlPlane, handle_from_state
from devkit.soak import SoakOptions, SoakReport, run_soak, table

FAULT_TESTS = (
    "tests/integration/test_faults_apiserver.py",
    "tests/integration/test_faults_crusoe.py",
    "tests/integration/test_faults_secret_manager.py",
)
BAD_INPUT_TIERS = ("tests/unit", "tests/integration")
BAD_INPUT_KEYWORDS = "bad or hostile or malformed or invalid or refuse or reject or garbage or nested or wrong"
OUTPUT = REPO_ROOT / "docs" / "reliability.md"
_TEST_ENV = {
    "REQUIRE_CLUSTER": "1",
    "NO_GCE_CHECK": "True",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
}


@dataclass(frozen=True)
class Case:
    """One test's result, with the scenario's expectation and observation when it recorded them."""

    test: str
    outcome: str  # passed, xfail, failed, skipped
    expected: str
    observed: str
    reason: str


def _outcome(case: ET.Element) -> tuple[str, str]:
    for child in case:
        if child.tag in ("failure", "error"):
            return "failed", child.get("message", "")
        if child.tag == "skipped":
            kind = "xfail" if child.get("type") == "pytest.xfail" else "skipped"
            return kind, child.get("message", "")
    return "passed", ""


def parse_junit(path: Path) -> list[Case]:
    """The test cases of a junit file written by pytest (``junit_family=xunit1``)."""
    cases = []
    for element in ET.parse(path).getroot().iter("testcase"):  # noqa: S314 - our own pytest's output
        properties = {p.get("name"): p.get("value", "") for p in element.iter("property")}
        outcome, reason = _outcome(element)
        module = element.get("classname", "").rsplit(".", 1)[-1]
        cases.append(
            Case(
                test=f"{module}::{element.get('name', '')}",
                outcome=outcome,
                expected=properties.get("expected", ""),
                observed=properties.get("observed", ""),
                reason=reason.removeprefix("reason: "),
            )
        )
    return cases


def run_pytest(arguments: Iterable[str], junit: Path) -> list[Case]:
    """Run pytest in a child process (its own control plane) and read its junit file."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "junit_family=xunit1"]
    argv += [f"--junitxml={junit}", *arguments]
    subprocess.run(argv, cwd=REPO_ROOT, env=os.environ | _TEST_ENV, check=False, timeout=1800)
    return parse_junit(junit)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "-"


_MARK = {"passed": "survived", "xfail": "**expected failure** (product fix pending)", "failed": "**FAILED**"}
_INTRO = (
    "Every fault row is a test in `tests/integration/test_faults*.py` run against a real kube-apiserver + etcd, "
    "the Crusoe API emulator and the Secret Manager server; what it expects and what it observed are recorded by "
    "the test itself. Each scenario also scans every response and log line for credentials (a leak fails it)."
)
_SOAK_INTRO = (
    "overlapping runs, scheduler-style retries (the first call's mint answer held while a second call runs) and "
    "injected faults, while a checker samples every namespace's pull secret about every 100 ms and asks the "
    "emulated registry whether its token is live. Dead-token samples are attributed to the step during or right "
    "after which they were taken."
)


def _totals(scenarios: list[Case], bad_inputs: list[Case], soak: SoakReport) -> list[str]:
    survived = sum(case.outcome == "passed" for case in scenarios)
    xfails = sum(case.outcome == "xfail" for case in scenarios)
    bad = Counter(case.outcome for case in bad_inputs)
    handled = f"{bad['passed']} handled as specified, {bad['xfail']} expected failures, {bad['failed']} failed"
    leaked = f"{soak.secrets_leaked} in the soak; 0 in the fault scenarios (their leak scans pass)"
    return [
        "| measure | value |",
        "|---|---|",
        f"| scenarios run | {len(scenarios) + 1} ({len(scenarios)} fault scenarios and one soak) |",
        f"| faults survived | {survived} of {len(scenarios)} |",
        f"| expected failures (product fixes pending) | {xfails} |",
        f"| bad inputs tried | {len(bad_inputs)} ({handled}) |",
        f"| soak samples with a dead token (goal 0) | {soak.dead_token_samples} of {soak.samples} |",
        f"| secrets leaked (goal 0) | {leaked} |",
        f"| tokens lost (goal 0) | {soak.tokens_beyond_grace_window} |",
    ]


def _scenario_rows(scenarios: list[Case]) -> list[str]:
    rows = ["| scenario | expected | observed | result |", "|---|---|---|---|"]
    for case in scenarios:
        observed = _cell(case.observed or case.reason)
        rows.append(f"| `{_cell(case.test)}` | {_cell(case.expected)} | {observed} | {_MARK.get(case.outcome)} |")
    return rows


def _expected_failures(cases: list[Case], soak: SoakReport) -> list[str]:
    lines = [f"- `{case.test}`: {_cell(case.reason)}" for case in cases if case.outcome == "xfail"]
    if soak.dead_token_samples:
        lines.append(
            f"- the soak's {soak.dead_token_samples} dead-token samples: overlapping runs revoke each other's "
            "tokens (`tests/integration/test_soak.py::test_soak_no_sample_ever_holds_a_dead_token` is a strict "
            "xfail until the revocation fix)"
        )
    return lines or ["- none"]


def render(scenarios: list[Case], bad_inputs: list[Case], soak: SoakReport, seconds: float) -> str:
    """The Markdown report."""
    when = f"{dt.datetime.now(dt.UTC):%Y-%m-%d} on {platform.machine()} with {os.cpu_count()} CPUs"
    soak_command = (
        f"python -m devkit.soak --namespaces {soak.options['namespaces']} --rotations {soak.options['rotations']}"
    )
    lines = [
        "# Reliability report",
        "",
        f"Generated by `make reliability` (`python -m devkit.reliability`) on {when}, in {seconds:.0f} s. {_INTRO}",
        "",
        "## Totals",
        "",
        *_totals(scenarios, bad_inputs, soak),
        "",
        "## Fault scenarios",
        "",
        *_scenario_rows(scenarios),
        "",
        "## Soak",
        "",
        f"`{soak_command}`: {_SOAK_INTRO}",
        "",
        "```",
        table(soak),
        "```",
        "",
        "## Bad inputs",
        "",
        f'The tests selected by `-k "{BAD_INPUT_KEYWORDS}"` in {", ".join(BAD_INPUT_TIERS)}:',
        "",
        "| test | cases | handled as specified |",
        "|---|---|---|",
        *_grouped(bad_inputs),
        "",
        "## Expected failures until the product fixes land",
        "",
        *_expected_failures(scenarios + bad_inputs, soak),
        "",
    ]
    return "\n".join(lines)


def _grouped(cases: list[Case]) -> list[str]:
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.test.split("[", 1)[0], []).append(case)
    return [
        f"| `{_cell(name)}` | {len(group)} | {sum(c.outcome == 'passed' for c in group)} |"
        for name, group in groups.items()
    ]


def main(argv: list[str] | None = None) -> int:
    """Run everything, write the report; exit 1 if a scenario failed outright (not an expected failure)."""
    parser = argparse.ArgumentParser(prog="python -m devkit.reliability", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--soak-namespaces", type=int, default=5, help="namespaces in the soak")
    parser.add_argument("--soak-rotations", type=int, default=60, help="rotation requests in the soak")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where to write the Markdown report")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="reliability-") as work:
        scenarios = [c for c in run_pytest(FAULT_TESTS, Path(work, "faults.xml")) if c.outcome != "skipped"]
        bad_inputs = run_pytest([*BAD_INPUT_TIERS, "-k", BAD_INPUT_KEYWORDS], Path(work, "bad.xml"))
    options = SoakOptions(namespaces=args.soak_namespaces, rotations=args.soak_rotations, max_seconds=900)
    existing = handle_from_state()
    if existing is not None:
        soak = run_soak(existing, options)
    else:
        with ControlPlane() as plane:
            soak = run_soak(plane.handle, options)
    args.output.write_text(render(scenarios, bad_inputs, soak, time.monotonic() - started), encoding="utf-8")
    sys.stdout.write(f"wrote {args.output}\n")
    failed = [c.test for c in scenarios + bad_inputs if c.outcome == "failed"]
    for test in failed:
        sys.stdout.write(f"FAILED {test}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
