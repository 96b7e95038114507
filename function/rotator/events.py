"""Kubernetes Events (``events.k8s.io/v1``) about the pull secret, so ``kubectl describe secret`` tells the story.

One Event per namespace and outcome: ``Normal``/``Rotated`` or ``Warning``/``RotationFailed``. The note holds
the token's alias and the outcome's message, never a token. Recording is best effort: a refused or failed
Event is logged and never fails a rotation.
"""

from __future__ import annotations

import logging
import secrets
import socket
from datetime import datetime
from typing import Any, Final

from rotator.fleet import Cluster, NamespaceResult

log = logging.getLogger(__name__)

CONTROLLER: Final = "ccr-pull-secret-rotator"
_NOTE_MAX: Final = 1024  # the API server's limit on an Event's note
_NAME_ROOM: Final = 200  # an Event name is a DNS subdomain (253); leave room for the random suffix


def event(result: NamespaceResult, secret_name: str, alias: str | None, now: datetime) -> dict[str, Any]:
    """The Event for one namespace's outcome."""
    ok = result.result != "failed"
    note = f"pull secret rotated to registry token {alias}" if ok else f"rotation failed: {result.error}"
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": f"{secret_name[:_NAME_ROOM]}.{secrets.token_hex(8)}", "namespace": result.namespace},
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "reportingController": CONTROLLER,
        "reportingInstance": f"{CONTROLLER}@{socket.gethostname()}"[:128],
        "action": "Rotate",
        "reason": "Rotated" if ok else "RotationFailed",
        "type": "Normal" if ok else "Warning",
        "regarding": {"apiVersion": "v1", "kind": "Secret", "namespace": result.namespace, "name": secret_name},
        "note": note[:_NOTE_MAX],
    }


def record(cluster: Cluster, result: NamespaceResult, secret_name: str, alias: str | None, now: datetime) -> None:
    """Record the Event; any failure is a log line, never the rotation's failure."""
    try:
        cluster.create_event(result.namespace, event(result, secret_name, alias, now))
    except Exception as exc:  # noqa: BLE001 - an Event is worth less than the rotation it describes
        detail = getattr(exc, "message", type(exc).__name__)
        log.warning("namespace %s: the event was not recorded: %s", result.namespace, detail)
