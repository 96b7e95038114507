"""``make demo``: the whole product on this machine, with no Crusoe account and no cluster.

Starts a real control plane and the Crusoe API emulator, creates namespaces (one already holding someone
else's registry login, to show it is kept; one excluded; one being deleted), gives the rotator a
least-privilege ServiceAccount from ``infra/rbac`` (the all-namespaces mode, since the demo selects
namespaces with a glob), serves the function with functions-framework on localhost, asks for a dry run,
rotates, creates a namespace, rotates again, asks for the status, and prints what happened. Everything it
started is stopped at the end.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
import time
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

import requests
from kubernetes import client
from rotator.config import VARIABLES

from devkit import kube
from devkit.cluster import ControlPlane
from devkit.crusoe_emulator import CrusoeEmulator
from devkit.function import start_function

REGISTRY = "registry.us-east1-a.ccr.crusoecloudcompute.com"
SECRET_NAME = "crusoe-image-pull-secrets"
NAMESPACES = ("demo-web", "demo-batch", "demo-ml")
EXCLUDED = "demo-sandbox"
TERMINATING = "demo-old"
LATE = "demo-new"
SHOWN = (*NAMESPACES, LATE, EXCLUDED, TERMINATING)


def say(text: str = "") -> None:
    """Print one line of the demo's story."""
    print(text, flush=True)  # noqa: T201 - the demo reports on stdout


def table(rows: list[list[str]], header: list[str]) -> None:
    """Print rows as an aligned text table."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for line in [header, ["-" * w for w in widths], *rows]:
        say("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)))


def secrets_table(api: client.ApiClient) -> None:
    """What each namespace's pull secret holds now (registries and the rotator's annotations, no tokens)."""
    rows = []
    for namespace in SHOWN:
        try:
            secret = client.CoreV1Api(api).read_namespaced_secret(SECRET_NAME, namespace)
        except client.ApiException:
            rows.append([namespace, "absent", "", "", ""])
            continue
        config = json.loads(base64.b64decode((secret.data or {}).get(".dockerconfigjson", "e30=")))
        notes = (secret.metadata.annotations if secret.metadata else None) or {}
        rows.append(
            [
                namespace,
                str(secret.type).split("/")[-1],
                ", ".join(sorted(config.get("auths", {}))),
                notes.get("ccr-pull-secret-rotator/token-alias", ""),
                notes.get("ccr-pull-secret-rotator/expires-at", ""),
            ]
        )
    table(rows, ["namespace", "secret", "registries", "token alias", "expires at"])


def tokens_table(emulator: CrusoeEmulator) -> None:
    """The organisation's registry tokens as the (emulated) Crusoe API lists them."""
    rows = [[key.alias, key.created_at, "live"] for key in emulator.tokens()]
    rows += [[key.alias, key.created_at, "revoked"] for key in emulator.deleted()]
    table(rows, ["token alias", "created at", "state"])


def post(url: str, title: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST to the function (a rotation, or a dry run) and print its answer."""
    started = time.monotonic()
    response = requests.post(url, json=body, timeout=120)
    answer: dict[str, Any] = response.json()
    cluster = answer["clusters"][0]
    say(
        f"\n{title}: HTTP {response.status_code} in {time.monotonic() - started:.2f}s "
        f"(status {answer['status']}, cluster {cluster['name']} at {cluster['server']}, "
        f"function's own duration {answer['duration_ms']} ms)"
    )
    if answer.get("dry_run"):
        say(f"  would revoke {', '.join(answer['would_revoke']) or 'nothing'}; nothing was minted or written")
    else:
        say(f"  minted  {answer['token']['alias']}  (expires {answer['token']['expires_at']})")
        say(f"  revoked {', '.join(answer['revoked']) or 'nothing'}")
    for namespace in answer["namespaces"]:
        accounts = ", ".join(f"{a['name']} {a['result']}" for a in namespace.get("service_accounts", []))
        say(f"  {namespace['namespace']:<12} {namespace['result']:<13} {accounts and 'service accounts: ' + accounts}")
    return answer


def status(url: str) -> int:
    """GET the status and print it: seconds left per namespace, and the 200/503 verdict."""
    response = requests.get(url, timeout=120)
    answer = response.json()
    margin = answer["expiry_warning_seconds"]
    say(
        f"\nStatus (GET): HTTP {response.status_code}: {answer['status']}, earliest expiry in "
        f"{answer['earliest_expiry_seconds']} s (503 once a target has less than {margin:.0f} s)"
    )
    rows = [
        [n["namespace"], n.get("token_alias") or "", str(n.get("seconds_left")), "yes" if n.get("at_risk") else "no"]
        for n in answer["namespaces"]
        if "skipped" not in n
    ]
    table(rows, ["namespace", "token alias", "seconds left", "at risk"])
    return int(response.status_code)


def accounts_table(api: client.ApiClient) -> None:
    """The imagePullSecrets of each namespace's default service account (names only)."""
    rows = []
    for namespace in (*NAMESPACES, LATE):
        try:
            account = client.CoreV1Api(api).read_namespaced_service_account("default", namespace)
        except client.ApiException:
            rows.append([namespace, "(no default service account)"])
            continue
        rows.append([namespace, ", ".join(str(ref.name) for ref in account.image_pull_secrets or [])])
    table(rows, ["namespace", "default service account's imagePullSecrets"])


def seed(admin: client.ApiClient, emulator: CrusoeEmulator) -> None:
    """The state a real team starts from: namespaces, someone else's pull secret, old and foreign tokens."""
    now = datetime.now(UTC)
    emulator.seed_token("ci-robot", created_at=now - timedelta(days=40))
    emulator.seed_token("ccr-rotator-20261001T000000Z-0d0d0d", created_at=now - timedelta(days=30))
    core = client.CoreV1Api(admin)
    for namespace in (*NAMESPACES, EXCLUDED, TERMINATING):
        kube.create_namespace(admin, namespace)
    core.delete_namespace(TERMINATING)  # no controller-manager runs, so it stays Terminating
    refs = [client.V1LocalObjectReference(name="ghcr-login")]
    core.create_namespaced_service_account(
        "demo-web", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"), image_pull_secrets=refs)
    )
    ghcr = {"auths": {"ghcr.io": {"auth": base64.b64encode(b"bot:not-a-real-token").decode()}}}
    client.CoreV1Api(admin).create_namespaced_secret(
        "demo-batch",
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=SECRET_NAME, labels={"team": "batch"}),
            type="kubernetes.io/dockerconfigjson",
            data={".dockerconfigjson": base64.b64encode(json.dumps(ghcr).encode()).decode()},
        ),
    )


def function_env(emulator: CrusoeEmulator, access_key_id: str, secret_key: str, kubeconfig: Path) -> dict[str, str]:
    """The function's environment: the caller's, cleared of every rotator variable, plus the demo's."""
    return {
        **{name: value for name, value in os.environ.items() if name not in VARIABLES},
        "CRUSOE_API_ENDPOINT": emulator.base_url,
        "CRUSOE_ACCESS_KEY": access_key_id,
        "CRUSOE_SECRET_KEY": secret_key,
        "REGISTRY_URL": REGISTRY,
        "REGISTRY_USERNAME": "ops@example.com",
        "TARGET_NAMESPACES": "demo-*",
        "EXCLUDE_NAMESPACES": EXCLUDED,
        "PATCH_SERVICE_ACCOUNTS": "default",
        "CLUSTER_NAME": "demo",
        "KUBECONFIG": str(kubeconfig),
        "KEEP_PREVIOUS_TOKENS": "1",
    }


def after(admin: client.ApiClient, emulator: CrusoeEmulator) -> None:
    """Print the cluster's and the registry's state after the runs."""
    say(
        f"\nAfter: every selected namespace holds the newest token; demo-batch kept its ghcr.io login; {EXCLUDED} "
        f"and {TERMINATING} were never touched."
    )
    secrets_table(admin)
    say("\nService accounts: the pull secret is appended, what was there stays first.")
    accounts_table(admin)
    say("\nRegistry tokens after (the previous token is kept for a grace window; the CI robot's is untouched):")
    tokens_table(emulator)
    calls = len(emulator.requests)
    say(
        f"\nCrusoe API calls in total: {calls} (a list per dry run; mint, list, revoke per rotation; "
        "never per namespace)."
    )


def main() -> int:
    """Run the demo; exit 0 when both rotations succeed and the status is 200."""
    access_key_id = "demo" + secrets.token_hex(4)
    secret_key = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
    say("Starting a real kube-apiserver + etcd on 127.0.0.1 and the Crusoe API emulator ...")
    with ControlPlane() as plane, CrusoeEmulator() as emulator, tempfile.TemporaryDirectory() as work:
        emulator.add_api_key(access_key_id, secret_key)
        admin = kube.admin_client(plane.handle)
        seed(admin, emulator)
        account = kube.rotator_service_account(
            plane.handle, admin, [], all_namespaces=True, service_accounts=["default"]
        )
        kubeconfig = Path(work, "rotator.kubeconfig")
        kubeconfig.write_text(account.kubeconfig)
        kubeconfig.chmod(0o600)
        say(
            f"kube-apiserver {plane.handle.version} at {plane.handle.server}; the rotator acts as "
            f"system:serviceaccount:{account.namespace}:{account.name}, bound only by infra/rbac."
        )
        say(
            f"Selection: TARGET_NAMESPACES=demo-* EXCLUDE_NAMESPACES={EXCLUDED}; {TERMINATING} is being deleted; "
            "PATCH_SERVICE_ACCOUNTS=default."
        )
        say("\nBefore: demo-batch already has a pull secret with someone else's ghcr.io login.")
        secrets_table(admin)
        say("\nRegistry tokens before (one stale rotator token, one token of a CI robot):")
        tokens_table(emulator)
        with start_function(function_env(emulator, access_key_id, secret_key, kubeconfig)) as function:
            say(f"\nServing the function: functions-framework --target rotate on {function.url}")
            post(function.url, "Dry run (every write checked by the API server's dry run)", {"dry_run": True})
            first = post(function.url, "First rotation")
            kube.create_namespace(admin, LATE)
            say(f"\nA team creates namespace {LATE}; the next run selects it afresh.")
            second = post(function.url, "Second rotation")
            health = status(function.url)
        after(admin, emulator)
        admin.close()  # type: ignore[no-untyped-call]
    ok = first["status"] == "ok" and second["status"] == "ok" and health == HTTPStatus.OK
    say("\nDemo finished: everything it started has been stopped." if ok else "\nDemo FAILED.")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
