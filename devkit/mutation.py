"""Mutation testing of the product's pure core against the unit tier: ``make mutate``.

mutmut (configured in ``[tool.mutmut]`` of pyproject.toml) makes one small change to the product at a time
and runs the unit tests that reach the changed function; a change that no test notices (a *survivor*) is
behaviour that no test pins. mutmut names a mutant after its file's path and strips only a leading ``src/``,
while the tests import the product as ``rotator.*`` from ``function/``: so the run happens in a staged copy
(``.cache/mutation/work``) where ``function/`` is ``src/``. Nothing but the unit tier runs (its loopback
servers included), and the whole run is bounded by ``--timeout``.

Writes ``.cache/mutation/report.md``: the score per module and, for every mutant not killed, its diff
(survivors) or its function (mutants that no unit test reaches).

CLI::

    python -m devkit.mutation [--timeout SECONDS] [--children N] [--report PATH]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from devkit import REPO_ROOT
from devkit.binaries import CACHE_DIR

WORK_DIR = CACHE_DIR / "mutation" / "work"
REPORT = CACHE_DIR / "mutation" / "report.md"
LOG = CACHE_DIR / "mutation" / "mutmut.log"
MUTMUT = Path(sys.executable).parent / "mutmut"

#: mutmut's verdicts that count as detected: a test failed, the tests hung, or the type checker refused it.
KILLED = frozenset({"killed", "timeout", "caught by type check"})
_RESULT_LINE = re.compile(r"^\s*(?P<name>\S+__mutmut_\d+): (?P<status>.+?)\s*$")
_IGNORED = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.pyc")


class MutationRunError(RuntimeError):
    """mutmut failed or ran out of time; the log says why."""


@dataclass
class ModuleScore:
    """The verdicts on one module's mutants."""

    module: str
    statuses: dict[str, str] = field(default_factory=dict)

    @property
    def killed(self) -> int:
        """How many mutants a test (or timeout) detected."""
        return sum(status in KILLED for status in self.statuses.values())

    @property
    def score(self) -> float:
        """Killed mutants as a percentage of all mutants (100 when there are none)."""
        return 100.0 * self.killed / len(self.statuses) if self.statuses else 100.0

    def not_killed(self, status: str) -> list[str]:
        """The names of this module's mutants with ``status``, in mutmut's order."""
        return [name for name, got in self.statuses.items() if got == status]

    def counts(self) -> Counter[str]:
        """How many mutants got each verdict."""
        return Counter(self.statuses.values())


def stage(work: Path, repo: Path = REPO_ROOT) -> None:
    """A fresh copy of what the unit tier needs, with ``function/`` as ``src/`` (no stale mutants survive).

    That is ``tests/``, pyproject.toml and whatever ``[tool.mutmut] also_copy`` names (mutmut copies the same
    list on into its own ``mutants/`` tree, where the tests run).
    """
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(repo / "function", work / "src", ignore=_IGNORED)
    shutil.copy2(repo / "pyproject.toml", work / "pyproject.toml")
    config = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["mutmut"]
    for name in ["tests", *config.get("also_copy", [])]:
        shutil.copytree(repo / name, work / name, ignore=_IGNORED)


def run_mutmut(work: Path, *, children: int, timeout: float, log: Path) -> None:
    """``mutmut run`` in ``work``, its output in ``log``; the whole process group is stopped at ``timeout``."""
    env = dict(os.environ)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(MUTMUT), "run", "--max-children", str(children)],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise MutationRunError(f"mutmut did not finish in {timeout:.0f} s; see {log}") from None
    if code != 0:
        raise MutationRunError(f"mutmut exited with {code}; see {log}")


def _mutmut(work: Path, *args: str) -> str:
    return subprocess.run([str(MUTMUT), *args], cwd=work, check=True, capture_output=True, text=True).stdout


def show(work: Path, mutant: str) -> str:
    """The diff of one mutant (``mutmut show`` without its heading line)."""
    return _mutmut(work, "show", mutant).partition("\n")[2]


def parse_results(text: str) -> dict[str, str]:
    """``mutmut results --all true`` output as mutant name -> verdict."""
    return {m["name"]: m["status"] for m in map(_RESULT_LINE.match, text.splitlines()) if m}


def module_of(mutant: str) -> str:
    """``rotator.config.xǁ_Readerǁinteger__mutmut_5`` -> ``rotator.config``."""
    return mutant.rpartition(".")[0]


def function_of(mutant: str) -> str:
    """``rotator.config.xǁ_Readerǁinteger__mutmut_5`` -> ``_Reader.integer`` (the function it changes)."""
    mangled = mutant.rpartition(".")[2].partition("__mutmut_")[0]
    return mangled.removeprefix("x_").removeprefix("xǁ").replace("ǁ", ".")


def scores(statuses: Mapping[str, str]) -> list[ModuleScore]:
    """The verdicts grouped by module, in module name order."""
    by_module: dict[str, ModuleScore] = {}
    for name, status in statuses.items():
        by_module.setdefault(module_of(name), ModuleScore(module_of(name))).statuses[name] = status
    return [by_module[module] for module in sorted(by_module)]


def summary_table(modules: Iterable[ModuleScore]) -> str:
    """A Markdown table: module, mutants, killed, survived, not reached, score."""
    lines = ["| module | mutants | killed | survived | no test reaches | score |", "|---|--:|--:|--:|--:|--:|"]
    for m in modules:
        counts = m.counts()
        lines.append(
            f"| `{m.module}` | {len(m.statuses)} | {m.killed} | {counts['survived']} | {counts['no tests']} "
            f"| {m.score:.1f} % |"
        )
    return "\n".join(lines)


def render_report(modules: list[ModuleScore], diffs: Mapping[str, str]) -> str:
    """The report: the table, then each module's survivors (with diffs) and unreached functions."""
    parts = ["# Mutation testing report (`make mutate`)", "", summary_table(modules), ""]
    for m in modules:
        others = {status for status in m.statuses.values() if status not in KILLED}
        for status in sorted(others):
            names = m.not_killed(status)
            parts += [f"## `{m.module}`: {len(names)} {status}", ""]
            if status == "no tests":
                unreached = Counter(function_of(name) for name in names)
                parts += [f"- `{function}`: {count} mutants" for function, count in sorted(unreached.items())]
                parts.append("")
                continue
            for name in names:
                parts += [f"### `{name}`", "", "```diff", diffs.get(name, "").strip(), "```", ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: stage, run mutmut, write the report, print the table."""
    parser = argparse.ArgumentParser(description="Mutation testing of the product's pure core (mutmut).")
    parser.add_argument("--timeout", type=float, default=780.0, help="seconds for the whole mutmut run")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 2, help="parallel mutant runs")
    parser.add_argument("--report", type=Path, default=REPORT, help="where to write the Markdown report")
    args = parser.parse_args(argv)
    stage(WORK_DIR)
    try:
        run_mutmut(WORK_DIR, children=args.children, timeout=args.timeout, log=LOG)
    except MutationRunError as exc:
        print(f"error: {exc}")  # noqa: T201 - CLI output
        return 1
    statuses = parse_results(_mutmut(WORK_DIR, "results", "--all", "true"))
    shown = [name for name, status in statuses.items() if status not in KILLED and status != "no tests"]
    with ThreadPoolExecutor(max_workers=args.children) as pool:
        diffs = dict(zip(shown, pool.map(lambda name: show(WORK_DIR, name), shown), strict=True))
    modules = scores(statuses)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(render_report(modules, diffs))
    print(summary_table(modules))  # noqa: T201 - CLI output
    print(f"\nreport: {args.report}")  # noqa: T201 - CLI output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
