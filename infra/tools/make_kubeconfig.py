# ruff: noqa: INP001  # a command-line script beside data files, not part of a package
"""Make a least-privilege kubeconfig for the rotator and add it as a new version of its Secret Manager secret.

The kubeconfig authenticates as the rotator's ServiceAccount (made by infra/modules/cluster-rbac or by
``python infra/rbac/render.py ... | kubectl apply -f -``) with a BOUND token from ``kubectl create token``: it may
only get, patch and create the one pull secret in the target namespaces, and it expires.

Usage::

    python infra/tools/make_kubeconfig.py --secret projects/P/secrets/S [--duration 2160h] [--context ADMIN]
        [--namespace crusoe-system] [--service-account ccr-pull-secret-rotator] [--server https://HOST:6443]
        [--project P] [--stdout]

Needs kubectl >= 1.24 with rights to create tokens for the ServiceAccount, and gcloud (unless --stdout). Runs the
same on Linux and macOS (no shell, no base64 or date flags). The token goes from kubectl's stdout to gcloud's
stdin in memory: nothing is written to disk, and it is never printed except with --stdout.

Renewal: re-run before the printed expiry (for example monthly with the default 90 days); the function reads the
``latest`` version at every run. An old token stays valid until it expires; disable old versions with
``gcloud secrets versions disable`` and, to cut a token off at once, re-create the ServiceAccount.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from collections.abc import Callable

DEFAULT_DURATION = "2160h"  # 90 days; API servers may cap it (--service-account-max-token-expiration)
DEFAULT_NAMESPACE = "crusoe-system"
DEFAULT_SERVICE_ACCOUNT = "ccr-pull-secret-rotator"
CONTEXT_NAME = "ccr-pull-secret-rotator"
_DURATION = re.compile(r"^[1-9][0-9]*(h|m|s)$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SECRET = re.compile(r"^(projects/[a-z0-9-]+/secrets/)?[A-Za-z0-9_-]{1,255}$")


class KubeconfigToolError(Exception):
    """A problem the user can fix; its message never holds the token."""


@dataclass(frozen=True)
class Options:
    """The parsed command line."""

    secret: str | None
    project: str | None
    duration: str
    context: str | None
    namespace: str
    service_account: str
    server: str | None
    to_stdout: bool


@dataclass(frozen=True)
class ClusterAccess:
    """Where the ServiceAccount's kubeconfig points: the API server and the CA that signs its certificate."""

    server: str
    ca_data: str | None


def check_options(options: Options) -> None:
    """Refuse bad input before anything touches the cluster."""
    if not options.to_stdout and not options.secret:
        raise KubeconfigToolError("--secret is required (the module output kubeconfig_secret_id), or pass --stdout")
    if options.secret and not _SECRET.match(options.secret):
        raise KubeconfigToolError(f"--secret {options.secret!r} must be a secret id or projects/PROJECT/secrets/SECRET")
    if not _DURATION.match(options.duration):
        raise KubeconfigToolError(f"--duration {options.duration!r} must look like 2160h, 90m or 3600s")
    for value, flag in ((options.namespace, "--namespace"), (options.service_account, "--service-account")):
        if not _DNS1123_LABEL.match(value):
            raise KubeconfigToolError(f"{flag} {value!r} is not a valid Kubernetes name")
    if options.server is not None and not options.server.startswith("https://"):
        raise KubeconfigToolError(f"--server {options.server!r} must be an https:// URL")


def cluster_access(
    view: dict[str, Any],
    server: str | None,
    read_file: Callable[[Path], bytes] = Path.read_bytes,
) -> ClusterAccess:
    """The server and CA of ``kubectl config view --minify --raw -o json``; ``server`` overrides the address."""
    clusters = view.get("clusters") or []
    if not clusters:
        raise KubeconfigToolError("the admin kubeconfig has no cluster for the chosen context (check --context)")
    cluster: dict[str, Any] = clusters[0].get("cluster") or {}
    address = server or cluster.get("server") or ""
    if not address.startswith("https://"):
        raise KubeconfigToolError(f"API server {address or '?'} is not https://; pass --server")
    ca_data = cluster.get("certificate-authority-data")
    if not ca_data and cluster.get("certificate-authority"):
        ca_data = base64.b64encode(read_file(Path(cluster["certificate-authority"]))).decode("ascii")
    return ClusterAccess(server=address, ca_data=ca_data or None)


def token_expiry(token: str) -> datetime | None:
    """The ``exp`` claim of a JWT (what the API server really granted), or None if it cannot be read."""
    parts = token.split(".")
    if len(parts) != 3:  # noqa: PLR2004  # header.payload.signature
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return datetime.fromtimestamp(exp, UTC) if isinstance(exp, int) else None


def build_kubeconfig(access: ClusterAccess, token: str, namespace: str, service_account: str) -> str:
    """A kubeconfig with one cluster, one token user and one context: no exec plugin, no client key."""
    cluster: dict[str, str] = {"server": access.server}
    if access.ca_data:
        cluster["certificate-authority-data"] = access.ca_data
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "target", "cluster": cluster}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [
            {
                "name": CONTEXT_NAME,
                "context": {"cluster": "target", "user": service_account, "namespace": namespace},
            },
        ],
        "current-context": CONTEXT_NAME,
    }
    return yaml.safe_dump(config, sort_keys=False)


def _run(argv: list[str], what: str, stdin: str | None = None) -> str:
    """Run a tool; on failure raise with its stderr (kubectl and gcloud never echo the token there)."""
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)  # noqa: S603
    except FileNotFoundError as exc:
        raise KubeconfigToolError(f"{argv[0]} not found on PATH; it is needed to {what}") from exc
    if done.returncode != 0:
        raise KubeconfigToolError(f"could not {what}: {done.stderr.strip() or f'{argv[0]} exited {done.returncode}'}")
    return done.stdout


def make(options: Options) -> tuple[str, datetime | None]:
    """Create the token and return the kubeconfig text and the token's expiry."""
    kubectl = ["kubectl", *(["--context", options.context] if options.context else [])]
    view = json.loads(_run([*kubectl, "config", "view", "--minify", "--raw", "-o", "json"], "read your kubeconfig"))
    access = cluster_access(view, options.server)
    account = f"{options.namespace}/{options.service_account}"
    _run(
        [*kubectl, "-n", options.namespace, "get", "serviceaccount", options.service_account, "-o", "name"],
        f"find the ServiceAccount {account}: apply the RBAC first (infra/README.md)",
    )
    token = _run(
        [*kubectl, "-n", options.namespace, "create", "token", options.service_account, "--duration", options.duration],
        f"create a token for {account}",
    ).strip()
    return build_kubeconfig(access, token, options.namespace, options.service_account), token_expiry(token)


def store(options: Options, kubeconfig: str) -> None:
    """Add the kubeconfig as a new version of the secret, from stdin."""
    if options.secret is None:
        raise KubeconfigToolError("--secret is required to store the kubeconfig")
    project = ["--project", options.project] if options.project else []
    _run(
        ["gcloud", "secrets", "versions", "add", options.secret, *project, "--data-file=-"],
        f"add a version to {options.secret}",
        stdin=kubeconfig,
    )


def parse(argv: list[str] | None) -> Options:
    """Parse the command line into Options."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--secret", help="secret id or projects/P/secrets/S (module output kubeconfig_secret_id)")
    parser.add_argument("--project", help="project of the secret when --secret is a short id")
    parser.add_argument("--duration", default=DEFAULT_DURATION, help="token lifetime (default %(default)s)")
    parser.add_argument("--context", help="context of YOUR kubeconfig that may create the token (default: current)")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="the ServiceAccount's namespace")
    parser.add_argument("--service-account", default=DEFAULT_SERVICE_ACCOUNT, help="the ServiceAccount's name")
    parser.add_argument("--server", help="API server URL as the function must reach it (default: the context's)")
    parser.add_argument("--stdout", action="store_true", help="print the kubeconfig (it holds the token) instead")
    args = parser.parse_args(argv)
    return Options(
        secret=args.secret,
        project=args.project,
        duration=args.duration,
        context=args.context,
        namespace=args.namespace,
        service_account=args.service_account,
        server=args.server,
        to_stdout=args.stdout,
    )


def main(argv: list[str] | None = None) -> int:
    """Make the kubeconfig, store or print it, and say when its token expires."""
    options = parse(argv)
    try:
        check_options(options)
        kubeconfig, expires = make(options)
        if options.to_stdout:
            sys.stdout.write(kubeconfig)
        else:
            store(options, kubeconfig)
    except KubeconfigToolError as exc:
        sys.stderr.write(f"make_kubeconfig: {exc}\n")
        return 2
    when = expires.strftime("%Y-%m-%dT%H:%M:%SZ") if expires else "an unknown time"
    sys.stderr.write(
        f"make_kubeconfig: token for {options.namespace}/{options.service_account} expires at {when}; "
        "re-run before then to renew.\n",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
