# ruff: noqa: INP001  # a command-line script, not part of a package
"""Generate the input and output tables of infra/README.md from the modules' HCL (python-hcl2).

Usage: python infra/tools/docs.py [--check]   (rewrites the tables between the BEGIN/END markers; --check fails
if the README is stale instead)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import hcl2  # type: ignore[import-untyped,unused-ignore]

INFRA = Path(__file__).resolve().parent.parent
README = INFRA / "README.md"
MODULES = {"rotator": INFRA / "modules" / "rotator", "cluster-rbac": INFRA / "modules" / "cluster-rbac"}


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value  # noqa: PLR2004


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def _blocks(directory: Path, kind: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            for block in hcl2.load(handle).get(kind, []):
                out.update({_unquote(k): v for k, v in block.items()})
    return dict(sorted(out.items()))


def _default(value: object) -> str:
    if isinstance(value, str):
        return _unquote(value) if value.startswith('"') else value
    return json.dumps(value)


def _type(body: dict[str, Any]) -> str:
    text = str(body.get("type", "any")).removeprefix("${").removesuffix("}")
    return re.sub(r"\s+", " ", text)


def tables(directory: Path) -> str:
    """Return the markdown of one module's inputs and outputs."""
    lines = ["| Input | Description | Type | Default |", "|---|---|---|---|"]
    for name, body in _blocks(directory, "variable").items():
        default = "required" if "default" not in body else f"`{_default(body['default'])}`"
        lines.append(
            f"| `{name}` | {_cell(_unquote(body.get('description', '')))} | `{_cell(_type(body))}` | {_cell(default)} |"
        )
    lines += ["", "| Output | Description |", "|---|---|"]
    lines += [
        f"| `{name}` | {_cell(_unquote(body.get('description', '')))} |"
        for name, body in _blocks(directory, "output").items()
    ]
    return "\n".join(lines)


def render(text: str) -> str:
    """Return the README text with every module's tables regenerated."""
    for module, directory in MODULES.items():
        begin, end = f"<!-- BEGIN_TF_DOCS {module} -->", f"<!-- END_TF_DOCS {module} -->"
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
        # A literal replacement via str.replace: the tables hold backslashes that re.sub would interpret.
        for found in pattern.findall(text):
            text = text.replace(found, f"{begin}\n{tables(directory)}\n{end}")
    return text


def main(argv: list[str]) -> int:
    """Rewrite the README's tables, or with --check report whether they are current."""
    current = README.read_text(encoding="utf-8")
    fresh = render(current)
    if "--check" in argv:
        if fresh != current:
            sys.stderr.write("infra/README.md tables are stale: run python infra/tools/docs.py\n")
            return 1
        return 0
    README.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
