"""Find, or build from source, the kube-apiserver and etcd binaries that the test control plane runs.

Nothing can be downloaded here except through package registries, so the binaries are built with Go from
the module proxy: ``devkit/kube_build/kube-apiserver`` (a wrapper module that requires
``k8s.io/kubernetes`` and pins its staging modules) and ``devkit/kube_build/etcd`` (etcd's server
entry point). The versions are read from those go.mod files, which are the single source of truth.

Where a binary comes from, first match wins:

1. ``KUBE_APISERVER_BIN`` / ``ETCD_BIN``: an explicit path (an error if it is not an executable);
2. ``KUBEBUILDER_ASSETS``: a directory in the envtest layout (``$KUBEBUILDER_ASSETS/kube-apiserver``,
   ``$KUBEBUILDER_ASSETS/etcd``), so users of controller-runtime's setup-envtest can reuse theirs;
3. ``PATH``;
4. the build cache ``.cache/bin/<name>-<version>/<name>``, built with Go on first use (keyed by version so
   a warm machine starts in seconds; Go's own build cache also persists between builds);

otherwise ``BinaryNotFoundError`` names all four ways. An etcd older than 3.5.13 is refused wherever it
comes from: older ones make current kube-apiservers fail some watches.

CLI (CI calls ``build`` up front so the first test does not pay for the build)::

    python -m devkit.binaries build      # resolve or build both, print their paths
    python -m devkit.binaries show       # resolve without building
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import fcntl
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from devkit import REPO_ROOT

LOG = logging.getLogger(__name__)

KUBE_BUILD_DIR = Path(__file__).resolve().parent / "kube_build"
CACHE_DIR = REPO_ROOT / ".cache"
BIN_CACHE_DIR = CACHE_DIR / "bin"

KUBE_APISERVER = "kube-apiserver"
ETCD = "etcd"
MIN_ETCD_VERSION = (3, 5, 13)

_VERSION_PACKAGES = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
_GO_MOD_REQUIRE = {
    KUBE_APISERVER: "k8s.io/kubernetes",
    ETCD: "go.etcd.io/etcd/server/v3",
}
_ENV_VARS = {KUBE_APISERVER: "KUBE_APISERVER_BIN", ETCD: "ETCD_BIN"}
# Measured on the 2-core CI machine with empty Go caches (docs/control-plane.md).
_COLD_BUILD = {KUBE_APISERVER: "5 min", ETCD: "1 min"}
_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


class BinaryNotFoundError(RuntimeError):
    """A control-plane binary is neither configured, installed, cached nor buildable."""


class BinaryBuildError(RuntimeError):
    """``go build`` of a control-plane binary failed; the message names the build log."""


@dataclasses.dataclass(frozen=True)
class Binary:
    """A resolved binary: where it is, which version it reports and which rule found it."""

    name: str
    path: Path
    version: str
    source: str


def go_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Return the environment for Go commands: static binaries and no toolchain downloads.

    ``GOTOOLCHAIN=local`` makes a too-old Go fail with a clear message instead of trying to fetch a
    toolchain, which cannot work here.
    """
    env = dict(environ)
    env["CGO_ENABLED"] = "0"
    env.setdefault("GOTOOLCHAIN", "local")
    return env


def pinned_version(name: str) -> str:
    """Return the version that the wrapper module of ``name`` pins, e.g. ``v1.37.2``."""
    module = _GO_MOD_REQUIRE[name]
    text = (KUBE_BUILD_DIR / name / "go.mod").read_text(encoding="utf-8")
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.MULTILINE)
    if match is None:
        raise BinaryBuildError(f"{KUBE_BUILD_DIR / name / 'go.mod'} does not require {module}")
    return match.group(1)


def cached_path(name: str, version: str | None = None) -> Path:
    """Return where the Go-built ``name`` lives in the cache (it may not exist yet)."""
    version = version or pinned_version(name)
    return BIN_CACHE_DIR / f"{name}-{version}" / name


def parse_version(output: str) -> tuple[int, int, int] | None:
    """Return the first ``X.Y.Z`` in a ``--version`` output, or ``None``.

    Pure, so the version rules are tested without binaries.
    """
    match = _VERSION_RE.search(output)
    if match is None:
        return None
    return (int(match.group(1)), int(match.group(2)), int(match.group(3)))


def reported_version(name: str, path: Path) -> str:
    """Run ``path --version`` and return the version it reports (``v1.37.2``), or ``"unknown"``."""
    try:
        result = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BinaryNotFoundError(f"{name} at {path} does not run: {exc}") from exc
    parsed = parse_version(result.stdout + result.stderr)
    if parsed is None:
        return "unknown"
    return "v{}.{}.{}".format(*parsed)


def _check_usable(name: str, path: Path, source: str) -> Binary:
    if not path.is_file() or not os.access(path, os.X_OK):
        raise BinaryNotFoundError(f"{name}: {path} (from {source}) is not an executable file")
    version = reported_version(name, path)
    if name == ETCD:
        parsed = parse_version(version)
        if parsed is not None and parsed < MIN_ETCD_VERSION:
            raise BinaryNotFoundError(
                f"etcd at {path} (from {source}) is {version}; kube-apiserver needs etcd >= "
                f"{'.'.join(map(str, MIN_ETCD_VERSION))}. Unset {source} or point it at a newer etcd."
            )
    return Binary(name=name, path=path, version=version, source=source)


def _ldflags(name: str, version: str) -> str:
    flags = ["-s", "-w"]
    if name == KUBE_APISERVER:
        parsed = parse_version(version)
        if parsed is None:
            raise BinaryBuildError(f"cannot derive major/minor from {version!r}")
        build_date = dt.datetime.now(tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        # What hack/lib/version.sh sets, so /version reports the release instead of v0.0.0-master.
        # gitCommit stays empty: a module zip carries no commit, and an invented one would be a lie.
        values = {
            "gitVersion": version,
            "gitMajor": str(parsed[0]),
            "gitMinor": str(parsed[1]),
            "gitTreeState": "clean",
            "gitCommit": "",
            "buildDate": build_date,
        }
        for package in _VERSION_PACKAGES:
            flags += [f"-X {package}.{key}={value}" for key, value in values.items()]
    return " ".join(flags)


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """Serialise builds across processes (two pytest runs must not build the same binary twice)."""
    BIN_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (BIN_CACHE_DIR / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build(name: str, environ: Mapping[str, str] | None = None) -> Binary:
    """Build ``name`` with Go into the version-keyed cache unless it is already there.

    The binary is linked to a temporary name and renamed, so an interrupted build never leaves a
    half-written binary that a later run would trust.
    """
    environ = os.environ if environ is None else environ
    version = pinned_version(name)
    target = cached_path(name, version)
    go = shutil.which("go", path=environ.get("PATH"))
    with _build_lock():
        if target.is_file():
            return Binary(name=name, path=target, version=version, source="cache")
        if go is None:
            raise BinaryNotFoundError(_not_found_message(name, environ, reason="Go is not on PATH"))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{name}.partial")
        log_path = target.with_name("build.log")
        package = "k8s.io/kubernetes/cmd/kube-apiserver" if name == KUBE_APISERVER else "."
        argv = [
            go,
            "build",
            "-trimpath",
            "-buildvcs=false",
            "-ldflags",
            _ldflags(name, version),
            "-o",
            str(partial),
            package,
        ]
        LOG.info("building %s %s with Go (cold: about %s; log %s)", name, version, _COLD_BUILD[name], log_path)
        started = time.monotonic()
        with log_path.open("w", encoding="utf-8") as log:
            result = subprocess.run(
                argv,
                cwd=KUBE_BUILD_DIR / name,
                env=go_env(environ),
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            raise BinaryBuildError(f"go build of {name} {version} failed (exit {result.returncode}); see {log_path}")
        partial.rename(target)
        LOG.info("built %s %s in %.0f s", name, version, time.monotonic() - started)
    return Binary(name=name, path=target, version=version, source="go build")


def _not_found_message(name: str, environ: Mapping[str, str], reason: str) -> str:
    env_var = _ENV_VARS[name]
    assets = environ.get("KUBEBUILDER_ASSETS", "")
    return (
        f"no {name} binary ({reason}). Provide one of:\n"
        f"  1. {env_var}=/path/to/{name}\n"
        f"  2. KUBEBUILDER_ASSETS=/dir containing {name} (envtest layout; now {assets or 'unset'})\n"
        f"  3. {name} on PATH\n"
        f"  4. Go >= 1.26 on PATH, to build it into {cached_path(name)} "
        f"(`python -m devkit.binaries build`)"
    )


def resolve(name: str, environ: Mapping[str, str] | None = None, *, allow_build: bool = True) -> Binary:
    """Return the binary for ``name`` by the documented order, building it with Go if allowed."""
    environ = os.environ if environ is None else environ
    env_var = _ENV_VARS[name]
    if explicit := environ.get(env_var):
        return _check_usable(name, Path(explicit), env_var)
    if assets := environ.get("KUBEBUILDER_ASSETS"):
        candidate = Path(assets) / name
        if candidate.is_file():
            return _check_usable(name, candidate, "KUBEBUILDER_ASSETS")
        LOG.info("KUBEBUILDER_ASSETS=%s has no %s; trying PATH", assets, name)
    if on_path := shutil.which(name, path=environ.get("PATH")):
        try:
            return _check_usable(name, Path(on_path), "PATH")
        except BinaryNotFoundError as exc:
            LOG.warning("ignoring %s on PATH: %s", name, exc)
    target = cached_path(name)
    if target.is_file():
        return Binary(name=name, path=target, version=pinned_version(name), source="cache")
    if not allow_build:
        raise BinaryNotFoundError(_not_found_message(name, environ, reason="not built yet"))
    return build(name, environ)


def resolve_all(environ: Mapping[str, str] | None = None, *, allow_build: bool = True) -> dict[str, Binary]:
    """Resolve etcd and kube-apiserver (etcd first: it builds in a minute, the apiserver in many)."""
    return {name: resolve(name, environ, allow_build=allow_build) for name in (ETCD, KUBE_APISERVER)}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="Resolve or build the control-plane binaries.")
    parser.add_argument("command", choices=["build", "show"], help="build: resolve, building if needed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        binaries = resolve_all(allow_build=args.command == "build")
    except (BinaryNotFoundError, BinaryBuildError) as exc:
        print(f"error: {exc}")  # noqa: T201 - CLI output
        return 1
    for binary in binaries.values():
        print(f"{binary.name}\t{binary.version}\t{binary.source}\t{binary.path}")  # noqa: T201 - CLI output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
