"""Configuration: read once from the environment into a frozen dataclass, with every problem named.

Variable names follow the Helm chart this replaces (so its users can migrate) and the official Crusoe
tools (so their users feel at home). Nothing here does I/O: secrets named by the configuration are
fetched per call by :mod:`rotator.clients`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from rotator.errors import ConfigError
from rotator.secret import SecretStr

DEFAULT_API_ENDPOINT: Final = "https://api.cloud.crusoe.ai/v1alpha5"
DEFAULT_SECRET_MANAGER_ENDPOINT: Final = "https://secretmanager.googleapis.com"
DEFAULT_SECRET_NAME: Final = "crusoe-image-pull-secrets"
DEFAULT_ALIAS_PREFIX: Final = "ccr-rotator"
DEFAULT_TOKEN_HOURS: Final = 12
DEFAULT_KEEP_PREVIOUS: Final = 1
DEFAULT_MAX_PARALLEL_WRITES: Final = 16

#: Every environment variable the function reads, so tests and tools can clear a developer's shell of them.
VARIABLES: Final = (
    "CRUSOE_ACCESS_KEY",
    "CRUSOE_ACCESS_KEY_ID",
    "CRUSOE_SECRET_KEY",
    "CRUSOE_CREDENTIALS_SECRET",
    "CRUSOE_API_ENDPOINT",
    "CRUSOE_BASE_ENDPOINT",
    "REGISTRY_URL",
    "REGISTRY_USERNAME",
    "TARGET_SECRET_NAME",
    "TARGET_NAMESPACES",
    "TARGET_NAMESPACE",
    "TOKEN_EXPIRATION_HOURS",
    "TOKEN_ALIAS_PREFIX",
    "TOKEN_ALIAS",
    "KEEP_PREVIOUS_TOKENS",
    "KUBECONFIG_SECRET",
    "KUBECONFIG",
    "KUBE_CONTEXT",
    "SECRET_MANAGER_ENDPOINT",
    "MAX_PARALLEL_WRITES",
    "LOG_LEVEL",
)

#: The limits the Terraform module checks too (``infra/modules/rotator/variables.tf`` reads the same file).
LIMITS: Final[dict[str, Any]] = json.loads(Path(__file__).with_name("limits.json").read_text(encoding="utf-8"))

_DNS_LABEL = re.compile(LIMITS["namespace"]["pattern"])
_DNS_SUBDOMAIN = re.compile(LIMITS["secret_name"]["pattern"])
_SECRET_NAME_MAX: Final[int] = LIMITS["secret_name"]["max_length"]
_ALIAS_PREFIX = re.compile(LIMITS["token_alias_prefix"]["pattern"])
_SECRET_VERSION = re.compile(r"^projects/[^/\s]+/secrets/[A-Za-z0-9_-]{1,255}/versions/(latest|[1-9][0-9]*)$")
_REGISTRY_HOST = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?$")
_URLSAFE_BASE64 = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_LOG_LEVELS: Final = tuple(LIMITS["log_levels"])


@dataclass(frozen=True)
class StaticCredentials:
    """Crusoe API credentials given directly in the environment (local runs, migration from the chart)."""

    access_key_id: str
    secret_key: SecretStr


@dataclass(frozen=True)
class SecretManagerRef:
    """A Secret Manager secret version, read at call time with the function's own identity."""

    version_name: str


@dataclass(frozen=True)
class LocalFile:
    """A file on the local disk, as ``kubectl`` reads ``KUBECONFIG`` (local runs only)."""

    path: Path


CredentialsSource = StaticCredentials | SecretManagerRef
KubeconfigSource = SecretManagerRef | LocalFile


@dataclass(frozen=True)
class Settings:
    """Everything a rotation needs to know, validated."""

    credentials: CredentialsSource
    api_endpoint: str
    registry: str
    registry_username: str
    secret_name: str
    namespaces: tuple[str, ...]
    token_lifetime: timedelta
    alias_prefix: str
    keep_previous_tokens: int
    kubeconfig: KubeconfigSource
    kube_context: str | None
    secret_manager_endpoint: str
    max_parallel_writes: int
    log_level: str


def load_settings(env: Mapping[str, str]) -> Settings:
    """Parse ``env`` into :class:`Settings`; raise :class:`ConfigError` naming every bad variable."""
    reader = _Reader(env)
    settings = Settings(
        credentials=reader.credentials(),
        api_endpoint=reader.api_endpoint(),
        registry=reader.registry(),
        registry_username=reader.required("REGISTRY_USERNAME"),
        secret_name=reader.secret_name(),
        namespaces=reader.namespaces(),
        token_lifetime=timedelta(hours=reader.limited("TOKEN_EXPIRATION_HOURS", DEFAULT_TOKEN_HOURS)),
        alias_prefix=reader.alias_prefix(),
        keep_previous_tokens=reader.limited("KEEP_PREVIOUS_TOKENS", DEFAULT_KEEP_PREVIOUS),
        kubeconfig=reader.kubeconfig(),
        kube_context=reader.optional("KUBE_CONTEXT"),
        secret_manager_endpoint=reader.url(
            "SECRET_MANAGER_ENDPOINT", reader.optional("SECRET_MANAGER_ENDPOINT") or DEFAULT_SECRET_MANAGER_ENDPOINT
        ),
        max_parallel_writes=reader.limited("MAX_PARALLEL_WRITES", DEFAULT_MAX_PARALLEL_WRITES),
        log_level=reader.log_level(),
    )
    if reader.problems:
        raise ConfigError(reader.problems)
    return settings


def log_level_from(env: Mapping[str, str]) -> str:
    """The log level alone, so logging can start before the rest of the configuration is checked."""
    value = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
    return value if value in _LOG_LEVELS else "INFO"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Reader:
    """Reads variables and collects problems, so one error lists everything that needs fixing."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.problems: dict[str, str] = {}

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def first(self, *names: str) -> tuple[str, str] | None:
        """The first of ``names`` that is set, with its name (aliases for chart and CLI compatibility)."""
        for name in names:
            value = self.optional(name)
            if value is not None:
                return name, value
        return None

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            self.problems[name] = "is required"
            return ""
        return value

    def limited(self, name: str, default: int) -> int:
        """A whole number within the bounds ``limits.json`` gives for ``name``."""
        low, high = LIMITS[name.lower()]["min"], LIMITS[name.lower()]["max"]
        raw = self.optional(name)
        if raw is None:
            return default
        if not raw.isascii() or not raw.isdigit():
            self.problems[name] = f"must be a whole number from {low} to {high}, got {raw!r}"
            return default
        value = int(raw)
        if not low <= value <= high:
            self.problems[name] = f"must be from {low} to {high}, got {value}"
            return default
        return value

    def url(self, name: str, value: str) -> str:
        try:
            parts = urlsplit(value)  # raises ValueError for a malformed IPv6 host such as "https://["
        except ValueError:
            parts = urlsplit("")
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            self.problems[name] = f"must be an http(s) URL, got {value!r}"
            return value
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            self.problems[name] = "must use https (plain http is accepted only for loopback test servers)"
        if parts.query or parts.fragment:
            self.problems[name] = "must not have a query or fragment"
        return value.rstrip("/")

    def credentials(self) -> CredentialsSource:
        key_id = self.first("CRUSOE_ACCESS_KEY", "CRUSOE_ACCESS_KEY_ID")
        secret_key = self.optional("CRUSOE_SECRET_KEY")
        secret_ref = self.optional("CRUSOE_CREDENTIALS_SECRET")
        if secret_ref is not None:
            if key_id is not None or secret_key is not None:
                self.problems["CRUSOE_CREDENTIALS_SECRET"] = (
                    "set either CRUSOE_CREDENTIALS_SECRET or CRUSOE_ACCESS_KEY and CRUSOE_SECRET_KEY, not both"
                )
            return SecretManagerRef(self.secret_version("CRUSOE_CREDENTIALS_SECRET", secret_ref))
        if key_id is None or secret_key is None:
            missing = [n for n, v in (("CRUSOE_ACCESS_KEY", key_id), ("CRUSOE_SECRET_KEY", secret_key)) if v is None]
            for name in missing:
                self.problems[name] = "is required (or set CRUSOE_CREDENTIALS_SECRET to read both from Secret Manager)"
            return StaticCredentials("", SecretStr(""))
        check_secret_key(secret_key, lambda problem: self.problems.__setitem__("CRUSOE_SECRET_KEY", problem))
        return StaticCredentials(key_id[1], SecretStr(secret_key))

    def secret_version(self, name: str, value: str) -> str:
        if not _SECRET_VERSION.match(value):
            self.problems[name] = (
                "must be a Secret Manager version name like projects/PROJECT/secrets/SECRET/versions/latest"
            )
        return value

    def api_endpoint(self) -> str:
        endpoint = self.optional("CRUSOE_API_ENDPOINT")
        if endpoint is not None:
            return self.url("CRUSOE_API_ENDPOINT", endpoint)
        host = self.optional("CRUSOE_BASE_ENDPOINT")
        if host is not None:
            return self.url("CRUSOE_BASE_ENDPOINT", host.rstrip("/") + "/v1alpha5")
        return DEFAULT_API_ENDPOINT

    def registry(self) -> str:
        raw = self.required("REGISTRY_URL")
        host = re.sub(r"^https?://", "", raw).rstrip("/")
        if raw and not _REGISTRY_HOST.match(host):
            self.problems["REGISTRY_URL"] = (
                f"must be a registry host such as registry.us-east1-a.ccr.crusoecloudcompute.com, got {raw!r}"
            )
        return host

    def secret_name(self) -> str:
        name = self.optional("TARGET_SECRET_NAME") or DEFAULT_SECRET_NAME
        if len(name) > _SECRET_NAME_MAX or not _DNS_SUBDOMAIN.fullmatch(name):
            self.problems["TARGET_SECRET_NAME"] = f"must be a valid Kubernetes object name, got {name!r}"
        return name

    def namespaces(self) -> tuple[str, ...]:
        found = self.first("TARGET_NAMESPACES", "TARGET_NAMESPACE")
        if found is None:
            self.problems["TARGET_NAMESPACES"] = "is required: a comma-separated list of namespaces"
            return ()
        name, raw = found
        names = [part.strip() for part in raw.split(",") if part.strip()]
        bad = [n for n in names if not _DNS_LABEL.fullmatch(n)]
        if bad:
            self.problems[name] = f"not valid namespace names: {', '.join(repr(b) for b in bad)}"
        if not names:
            self.problems[name] = "lists no namespace"
        return tuple(dict.fromkeys(names))

    def alias_prefix(self) -> str:
        found = self.first("TOKEN_ALIAS_PREFIX", "TOKEN_ALIAS")
        if found is None:
            return DEFAULT_ALIAS_PREFIX
        name, prefix = found
        if not _ALIAS_PREFIX.fullmatch(prefix):
            self.problems[name] = (
                f"must be 1 to 40 lower-case letters, digits or '-', starting and ending alphanumeric; got {prefix!r}"
            )
        return prefix

    def kubeconfig(self) -> KubeconfigSource:
        secret_ref = self.optional("KUBECONFIG_SECRET")
        path = self.optional("KUBECONFIG")
        if secret_ref is not None and path is not None:
            self.problems["KUBECONFIG_SECRET"] = "set either KUBECONFIG_SECRET or KUBECONFIG, not both"
        if secret_ref is not None:
            return SecretManagerRef(self.secret_version("KUBECONFIG_SECRET", secret_ref))
        if path is None:
            self.problems["KUBECONFIG_SECRET"] = (
                "is required (a Secret Manager version name), or set KUBECONFIG to a local file for local runs"
            )
            return LocalFile(Path())
        if ":" in path:
            self.problems["KUBECONFIG"] = "must name one file (a list of files is not supported)"
        try:
            return LocalFile(Path(path).expanduser())
        except RuntimeError:  # "~name" of a user this machine does not know
            self.problems["KUBECONFIG"] = f"names the home directory of an unknown user: {path!r}"
            return LocalFile(Path())

    def log_level(self) -> str:
        raw = (self.optional("LOG_LEVEL") or "INFO").upper()
        if raw not in _LOG_LEVELS:
            self.problems["LOG_LEVEL"] = f"must be one of {', '.join(_LOG_LEVELS)}, got {raw!r}"
            return "INFO"
        return raw


def check_secret_key(value: str, report: Callable[[str], None]) -> None:
    """Report (without echoing it) a secret key that is not URL-safe base64, as Crusoe issues them."""
    if not _URLSAFE_BASE64.match(value):
        report("is not URL-safe base64; copy the secret key exactly as Crusoe showed it")
        return
    try:
        base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        report("is not valid base64 (wrong length?); copy the secret key exactly as Crusoe showed it")
