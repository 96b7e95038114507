"""The baseline: the Helm-chart rotator's algorithm, written independently of ``function/``.

What the chart did, and so what this does: mint one registry token, then for each namespace **in
sequence** read the pull secret and replace it whole (PUT), or create it (POST) when the read answers
404. It used the official ``kubernetes`` Python client (``CoreV1Api``), so this does too: the client's
model (de)serialisation is part of what the chart paid per namespace, and therefore part of the baseline.

Nothing here is imported from the rotator, so the comparison is not of the rotator with itself. The
Crusoe request is signed with the emulator's own signer (an independent implementation of the spec).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from urllib.parse import urlsplit

import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devkit.crusoe_emulator import compute_signature, format_time

DOCKERCONFIG_TYPE = "kubernetes.io/dockerconfigjson"


@dataclass(frozen=True)
class CrusoeAccess:
    """Where and as whom the baseline mints its token (the secret key is never printed)."""

    base_url: str
    access_key_id: str
    secret_key: str


@dataclass(frozen=True)
class BaselineRun:
    """How one baseline rotation went."""

    seconds: float
    created: int
    replaced: int


def mint_token(crusoe: CrusoeAccess, alias: str, *, lifetime: timedelta = timedelta(hours=12)) -> str:
    """One signed ``POST /ccr/tokens``, as the chart did once per run; returns the token value."""
    url = f"{crusoe.base_url}/ccr/tokens"
    now = datetime.now(UTC)
    timestamp = format_time(now)
    signature = compute_signature(crusoe.secret_key, urlsplit(url).path, "", "POST", timestamp)
    expires_at = format_time(now + lifetime)
    response = requests.post(
        url,
        json={"alias": alias, "expires_at": expires_at},
        headers={"Authorization": f"Bearer 1.0:{crusoe.access_key_id}:{signature}", "X-Crusoe-Timestamp": timestamp},
        timeout=30,
    )
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


def dockerconfig(registry: str, username: str, token: str) -> str:
    """The whole ``.dockerconfigjson`` value (base64), as the chart wrote it: only its own entry."""
    auth = base64.b64encode(f"{username}:{token}".encode()).decode()
    config = {"auths": {registry: {"username": username, "password": token, "auth": auth}}}
    return base64.b64encode(json.dumps(config).encode()).decode()


def rotate(
    api: client.ApiClient,
    crusoe: CrusoeAccess,
    namespaces: list[str],
    *,
    secret_name: str,
    registry: str,
    username: str,
) -> BaselineRun:
    """One chart-style rotation, timed from the mint to the last namespace written."""
    core = client.CoreV1Api(api)
    started = time.perf_counter()
    token = mint_token(crusoe, f"helm-chart-baseline-{int(time.time() * 1000)}")
    data: dict[str, bytes | str] = {".dockerconfigjson": dockerconfig(registry, username, token)}
    created = replaced = 0
    for namespace in namespaces:
        body = client.V1Secret(
            api_version="v1",
            kind="Secret",
            metadata=client.V1ObjectMeta(name=secret_name, namespace=namespace),
            type=DOCKERCONFIG_TYPE,
            data=data,
        )
        try:
            core.read_namespaced_secret(secret_name, namespace)
        except ApiException as exc:
            if exc.status != HTTPStatus.NOT_FOUND:
                raise
            core.create_namespaced_secret(namespace, body)
            created += 1
        else:
            core.replace_namespaced_secret(secret_name, namespace, body)
            replaced += 1
    return BaselineRun(seconds=time.perf_counter() - started, created=created, replaced=replaced)
