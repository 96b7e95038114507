"""Building the pull secret: pure functions from (existing secret, new token) to the manifest to apply."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from rotator.errors import SecretConflictError
from rotator.secret import SecretStr
from rotator.signing import format_timestamp

DOCKERCONFIG_TYPE: Final = "kubernetes.io/dockerconfigjson"
DOCKERCONFIG_KEY: Final = ".dockerconfigjson"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "ccr-pull-secret-rotator"
ANNOTATION_PREFIX: Final = "ccr-pull-secret-rotator/"
ROTATED_AT: Final = ANNOTATION_PREFIX + "rotated-at"
TOKEN_ALIAS: Final = ANNOTATION_PREFIX + "token-alias"
EXPIRES_AT: Final = ANNOTATION_PREFIX + "expires-at"
REGISTRY: Final = ANNOTATION_PREFIX + "registry"
#: A Secret holds at most 1 MiB; a docker config larger than that was not written by anything we know.
MAX_DOCKERCONFIG_BYTES: Final = 1024 * 1024
#: A docker config is three or four levels deep; far deeper is hostile (Python's parser recurses per level).
MAX_DOCKERCONFIG_DEPTH: Final = 32
_JSON_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET: Final = re.compile(r"[\[\]{}]")


@dataclass(frozen=True)
class RegistryLogin:
    """The entry the rotator owns inside ``.dockerconfigjson``.

    The password stays a :class:`SecretStr` (so ``repr``, logs and exceptions cannot show it) until
    :func:`merged_dockerconfig` builds the bytes that are sent to the cluster.
    """

    registry: str
    username: str
    password: SecretStr
    alias: str
    expires_at: datetime


def require_compatible(existing: dict[str, Any] | None) -> dict[str, Any]:
    """The docker config inside ``existing`` (empty if there is none yet).

    Raises:
        SecretConflictError: the existing secret is of another type, or its content is not a docker config.
    """
    if existing is None:
        return {}
    kind = existing.get("type")
    if kind != DOCKERCONFIG_TYPE:
        raise SecretConflictError(
            f"a secret of type {kind!r} already has this name; the rotator only writes {DOCKERCONFIG_TYPE} "
            "secrets and will not replace it: rename or delete it, or set TARGET_SECRET_NAME"
        )
    config = parse_dockerconfig(existing)
    if not isinstance(config.get("auths", {}), dict):
        raise SecretConflictError(f"the existing {DOCKERCONFIG_KEY} is not a docker config object")
    return config


def parse_dockerconfig(secret: dict[str, Any]) -> dict[str, Any]:
    """The decoded ``.dockerconfigjson`` of ``secret`` (empty when it has none), size and depth checked first.

    Anyone who may write the pull secret in one namespace controls these bytes, so they are bounded before
    the parser sees them: a document nested thousands of levels deep would make ``json.loads`` raise
    ``RecursionError``, which must stay one namespace's problem, named as such.

    Raises:
        SecretConflictError: the content is not base64, too large, too deeply nested, or not a JSON object.
    """
    data = secret.get("data")
    encoded = data.get(DOCKERCONFIG_KEY) if isinstance(data, dict) else None
    if not encoded:
        return {}
    try:
        raw = base64.b64decode(encoded, validate=True)
        text = raw.decode()
    except (binascii.Error, ValueError, TypeError):
        raise SecretConflictError(f"the existing {DOCKERCONFIG_KEY} is not valid JSON") from None
    if len(raw) > MAX_DOCKERCONFIG_BYTES:
        raise SecretConflictError(
            f"the existing {DOCKERCONFIG_KEY} is larger than 1 MiB; the rotator will not parse it: delete the "
            "secret or set TARGET_SECRET_NAME"
        )
    if _nesting_depth(text) > MAX_DOCKERCONFIG_DEPTH:
        raise SecretConflictError(
            f"the existing {DOCKERCONFIG_KEY} is nested deeper than {MAX_DOCKERCONFIG_DEPTH} levels; the rotator "
            "will not parse it: delete the secret or set TARGET_SECRET_NAME"
        )
    try:
        config = json.loads(text)
    except (ValueError, RecursionError):
        raise SecretConflictError(f"the existing {DOCKERCONFIG_KEY} is not valid JSON") from None
    if not isinstance(config, dict) or not isinstance(config.get("auths", {}), dict):
        raise SecretConflictError(f"the existing {DOCKERCONFIG_KEY} is not a docker config object")
    return config


def _nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON ``text``, brackets inside strings not counted."""
    depth = deepest = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in {"[", "{"} else -1
        deepest = max(deepest, depth)
    return deepest


def merged_dockerconfig(existing: dict[str, Any] | None, login: RegistryLogin) -> bytes:
    """``.dockerconfigjson`` with the rotator's registry entry set and everything else kept as it was.

    Raises:
        SecretConflictError: the existing secret is of another type, or its content is not a docker config.
    """
    config = require_compatible(existing)
    password = login.password.reveal()
    # Wrapped too, so the log formatter redacts it: it is the token, base64-encoded once more.
    auth = SecretStr(base64.b64encode(f"{login.username}:{password}".encode()).decode())
    auths = dict(config.get("auths", {}))
    auths[login.registry] = {"username": login.username, "password": password, "auth": auth.reveal()}
    return json.dumps({**config, "auths": auths}, separators=(",", ":"), sort_keys=True).encode()


def apply_manifest(
    *,
    namespace: str,
    name: str,
    dockerconfig: bytes,
    login: RegistryLogin,
    rotated_at: datetime,
    resource_version: str | None,
) -> dict[str, Any]:
    """The server-side apply body: only the fields the rotator owns, plus a precondition when updating."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY},
        "annotations": {
            ROTATED_AT: format_timestamp(rotated_at),
            TOKEN_ALIAS: login.alias,
            EXPIRES_AT: format_timestamp(login.expires_at),
            REGISTRY: login.registry,
        },
    }
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": DOCKERCONFIG_TYPE,
        "data": {DOCKERCONFIG_KEY: base64.b64encode(dockerconfig).decode()},
    }


def describe(secret: dict[str, Any] | None, registry: str) -> dict[str, Any]:
    """What ``GET`` reports about a secret: existence, type, the rotator's annotations; never its data."""
    if secret is None:
        return {"exists": False}
    metadata = secret.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    entry_present = False
    if secret.get("type") == DOCKERCONFIG_TYPE:
        with contextlib.suppress(SecretConflictError):  # unreadable content holds no entry of ours
            auths = parse_dockerconfig(secret).get("auths")
            entry_present = isinstance(auths, dict) and registry in auths
    return {
        "exists": True,
        "type": secret.get("type"),
        "managed": (metadata.get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY,
        "registry_entry": entry_present,
        "rotated_at": annotations.get(ROTATED_AT),
        "token_alias": annotations.get(TOKEN_ALIAS),
        "expires_at": annotations.get(EXPIRES_AT),
    }


def _annotation(secret: dict[str, Any] | None, key: str) -> str | None:
    annotations = ((secret or {}).get("metadata") or {}).get("annotations") or {}
    value = annotations.get(key) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) else None


def token_alias_of(secret: dict[str, Any] | None) -> str | None:
    """The alias of the token a pull secret holds (from the rotator's annotation)."""
    return _annotation(secret, TOKEN_ALIAS)


def expires_at_of(secret: dict[str, Any] | None) -> datetime | None:
    """When the token a pull secret holds expires (from the rotator's annotation), if it says so readably."""
    value = _annotation(secret, EXPIRES_AT)
    try:
        parsed = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return parsed.replace(tzinfo=parsed.tzinfo or UTC) if parsed else None
