"""The repository stands alone: from a copy in an empty folder, nothing reads above the copy's root.

The copy holds exactly the files git tracks, in a fresh temporary folder with no ``shared/`` (or anything else)
beside it. The unit tier and the platform's own tests run there with a Python audit hook that records every
file opened under the copy's parent but outside the copy, every process started, every network connection made
and every platform module imported that runs processes; the unit tier must need none of them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devkit import REPO_ROOT

GIT = shutil.which("git") or "git"

#: Runs pytest under an audit hook; prints one JSON line of what the hook saw.
RUNNER = r"""
import json, os, sys
root = os.path.realpath(sys.argv[1])
outside, started, imported = set(), [], set()
HEAVY = ("devkit.cluster", "devkit.pytest_plugin", "devkit.binaries", "devkit.function")

def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        path = os.path.realpath(os.fsdecode(args[0]))
        if path.startswith(os.path.dirname(root) + os.sep) and not path.startswith(root + os.sep):
            outside.add(path)
    elif event == "subprocess.Popen":
        started.append(os.fsdecode(args[0]))
    elif event == "socket.connect":
        started.append(f"connect {args[1]!r}")
    elif event == "import" and args[0] in HEAVY:
        imported.add(args[0])

sys.addaudithook(hook)
import pytest
code = pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[2:]])
print("AUDIT " + json.dumps({"code": int(code), "outside": sorted(outside), "started": started,
                             "imported": sorted(imported)}))
"""


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tracked files (as they are in the working tree), copied into an empty temporary folder."""
    listing = subprocess.run(
        [GIT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    )
    target = tmp_path_factory.mktemp("lonely") / "clone"
    for name in filter(None, listing.stdout.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def audited(clone: Path, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(clone), *args],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("AUDIT ")]
    assert lines, result.stdout[-3000:] + result.stderr[-3000:]
    report: dict[str, object] = json.loads(lines[-1].removeprefix("AUDIT "))
    assert report["code"] == 0, result.stdout[-3000:]
    return report


def test_unit_tier_from_a_lonely_clone_reads_nothing_outside_and_starts_nothing(clone):
    report = audited(clone, "tests/unit")
    assert report["outside"] == []
    assert report["started"] == []
    assert report["imported"] == []


def test_platform_tests_from_a_lonely_clone_read_nothing_outside(clone):
    report = audited(clone, "devkit/tests", "--deselect", "devkit/tests/test_standalone.py")
    assert report["outside"] == []
