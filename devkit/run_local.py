r"""``make run``: serve the function on loopback with configuration from ``.env``, never with a debugger.

The process holds the user's Crusoe key and kubeconfig, so:

* it binds ``127.0.0.1`` unless ``HOST`` says otherwise (a warning then says who can reach it);
* Flask's interactive debugger is never on (``functions-framework --debug`` turns it on; this does not use
  that flag), only the reloader, which restarts the process when a source file or ``.env`` changes;
* ``.env`` is read as data, ``KEY=VALUE`` per line, never executed by a shell: ``$(...)``, backticks and
  ``$VARS`` stay literal text. Values in ``.env`` win over the shell's environment, as before.

Format: blank lines and ``#`` comments are skipped, ``export KEY=VALUE`` is accepted, whitespace around key
and value is dropped, a value may be quoted (``'...'`` literally, ``"..."`` with ``\"``, ``\\`` and
``\n``), and an unquoted value ends at `` #`` (a comment after a space).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from devkit import REPO_ROOT

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8080
MAIN: Final = REPO_ROOT / "function" / "main.py"
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ESCAPES: Final = {'"': '"', "\\": "\\", "n": "\n"}


class DotenvError(ValueError):
    """A line of ``.env`` that is not ``KEY=VALUE``; the message names the line, never its value."""


def _unquote_double(text: str, line_number: int) -> str:
    out: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == '"':
            return "".join(out)
        if char == "\\":
            escaped = next(chars, "")
            out.append(_ESCAPES.get(escaped, "\\" + escaped))
        else:
            out.append(char)
    raise DotenvError(f".env line {line_number}: the double-quoted value has no closing quote")


def _value(raw: str, line_number: int) -> str:
    raw = raw.strip()
    if raw.startswith("'"):
        end = raw.find("'", 1)
        if end < 0:
            raise DotenvError(f".env line {line_number}: the single-quoted value has no closing quote")
        return raw[1:end]
    if raw.startswith('"'):
        return _unquote_double(raw[1:], line_number)
    comment = re.search(r"\s#", raw)
    return (raw[: comment.start()] if comment else raw).strip()


def parse_dotenv(text: str) -> dict[str, str]:
    """The variables of a ``.env`` text (see the module docstring for the format).

    Raises:
        DotenvError: a line is neither blank, a comment, nor ``KEY=VALUE`` with a valid name.
    """
    variables: dict[str, str] = {}
    for line_number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        stripped = stripped.removeprefix("export ").lstrip()
        key, sep, raw = stripped.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            raise DotenvError(f".env line {line_number}: expected KEY=VALUE with KEY a variable name")
        variables[key] = _value(raw, line_number)
    return variables


def bind_host(env: Mapping[str, str]) -> str:
    """``HOST`` when set, else loopback."""
    return env.get("HOST", "").strip() or DEFAULT_HOST


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Load ``.env`` into the environment, then serve ``function/main.py`` with the reloader only."""
    parser = argparse.ArgumentParser(prog="python -m devkit.run_local", description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="dotenv file (optional)")
    parser.add_argument("--no-reload", action="store_true", help="do not restart on code changes")
    args = parser.parse_args(argv)
    if args.env_file.is_file():
        try:
            os.environ.update(parse_dotenv(args.env_file.read_text(encoding="utf-8")))
        except DotenvError as exc:
            sys.stderr.write(f"{exc}\n")
            return 2
    host = bind_host(os.environ)
    port = int(os.environ.get("PORT", "").strip() or DEFAULT_PORT)
    if not is_loopback(host):
        sys.stderr.write(f"warning: HOST={host}: the function (and the credentials it holds) is reachable by others\n")
    from functions_framework import create_app  # noqa: PLC0415 - after .env is in the environment

    app = create_app(target="rotate", source=str(MAIN))  # type: ignore[no-untyped-call]  # untyped library
    extra = [str(args.env_file.resolve())] if args.env_file.is_file() else []
    app.run(
        host,
        port,
        debug=False,
        use_debugger=False,
        use_reloader=not args.no_reload,
        reloader_type="stat",
        extra_files=extra,
        threaded=True,
        load_dotenv=False,  # Flask's own .env loading would need python-dotenv; parsed above instead
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
