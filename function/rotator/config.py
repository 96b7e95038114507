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
from rotator.selection import NamespaceSelection, parse_globs, parse_namespaces, parse_selector, split_list

DEFAULT_API_ENDPOINT: Final = "https://api.cloud.crusoe.ai/v1alpha5"
DEFAULT_SECRET_MANAGER_ENDPOINT: Final = "https://secretmanager.googleapis.com"
DEFAULT_SECRET_NAME: Final = "crusoe-image-pull-secrets"
DEFAULT_ALIAS_PREFIX: Final = "ccr-rotator"
DEFAULT_TOKEN_HOURS: Final = 12
DEFAULT_KEEP_PREVIOUS: Final = 1
DEFAULT_MAX_PARALLEL_WRITES: Final = 16
DEFAULT_INVOKER_CERTS_URL: Final = "https://www.googleapis.com/oauth2/v1/certs"
#: The kubeconfig's own credential lives for months (90 days from make kubeconfig), so its margin is days, not
#: the registry token's hours: a week leaves a person (or RENEW_KUBECONFIG) many scheduled runs to act.
DEFAULT_CREDENTIAL_WARNING_HOURS: Final = 168
DEFAULT_RENEW_TOKEN_HOURS: Final = 2160  # 90 days, as make kubeconfig
DEFAULT_RENEW_GRACE_HOURS: Final = 24

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
    "ALLOWED_INVOKERS",
    "INVOKER_AUDIENCE",
    "INVOKER_CERTS_URL",
    "TARGET_NAMESPACE_SELECTOR",
    "EXCLUDE_NAMESPACES",
    "PATCH_SERVICE_ACCOUNTS",
    "EXPIRY_WARNING_HOURS",
    "CLUSTER_NAME",
    "CLUSTERS",
    "CLUSTERS_SECRET",
    "MAX_PARALLEL_CLUSTERS",
    "EVENTS",
    "RUN_DEADLINE_SECONDS",
    "ALLOW_INSECURE_SKIP_TLS_VERIFY",
    "CREDENTIAL_WARNING_HOURS",
    "RENEW_KUBECONFIG",
    "RENEW_TOKEN_HOURS",
    "RENEW_GRACE_HOURS",
)
#: The variables that describe the one cluster of the shorthand; CLUSTERS (or CLUSTERS_SECRET) replaces them all.
SINGLE_CLUSTER_VARIABLES: Final = (
    "CLUSTER_NAME",
    "TARGET_NAMESPACES",
    "TARGET_NAMESPACE",
    "TARGET_NAMESPACE_SELECTOR",
    "EXCLUDE_NAMESPACES",
    "PATCH_SERVICE_ACCOUNTS",
    "KUBECONFIG_SECRET",
    "KUBECONFIG",
    "KUBE_CONTEXT",
)
DEFAULT_CLUSTER_NAME: Final = "default"
DEFAULT_MAX_PARALLEL_CLUSTERS: Final = 4
#: The Terraform module sets RUN_DEADLINE_SECONDS to the function's timeout minus 30 s; this matches its default.
DEFAULT_RUN_DEADLINE_SECONDS: Final = 510
#: The fields a CLUSTERS entry may have.
CLUSTER_FIELDS: Final = frozenset(
    {
        "name",
        "kubeconfig_secret",
        "kubeconfig",
        "context",
        "namespaces",
        "namespace_selector",
        "exclude_namespaces",
        "service_accounts",
    }
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
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_CLUSTER_NAME = re.compile(LIMITS["cluster_name"]["pattern"])
_SERVICE_ACCOUNT = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


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


@dataclass(frozen=True)
class InvokerPolicy:
    """Who may call the function when it verifies callers itself (``ALLOWED_INVOKERS``, ``INVOKER_AUDIENCE``)."""

    allowed: frozenset[str]  # lower-case e-mails
    audience: str
    certs_url: str


CredentialsSource = StaticCredentials | SecretManagerRef
KubeconfigSource = SecretManagerRef | LocalFile


@dataclass(frozen=True)
class ServiceAccounts:
    """The service accounts whose ``imagePullSecrets`` get the pull secret: some names, or every one."""

    names: tuple[str, ...] = ()
    every: bool = False

    def __bool__(self) -> bool:
        return self.every or bool(self.names)


@dataclass(frozen=True)
class ClusterConfig:
    """One cluster: how to reach it, which namespaces it has the secret in, which service accounts to patch."""

    name: str
    kubeconfig: KubeconfigSource
    context: str | None
    selection: NamespaceSelection
    service_accounts: ServiceAccounts = ServiceAccounts()


@dataclass(frozen=True)
class Renewal:
    """RENEW_KUBECONFIG=true: renew the kubeconfig's ServiceAccount token inside CREDENTIAL_WARNING_HOURS.

    ``token_lifetime`` is what the TokenRequest asks for (the API server may grant less); older ENABLED
    versions of the kubeconfig secret are disabled once the version in use is ``grace`` old.
    """

    token_lifetime: timedelta
    grace: timedelta


@dataclass(frozen=True)
class Settings:
    """Everything a rotation needs to know, validated.

    ``clusters`` is empty when ``clusters_secret`` names a Secret Manager version holding the list (read and
    checked with :func:`parse_clusters` at call time).
    """

    credentials: CredentialsSource
    api_endpoint: str
    registry: str
    registry_username: str
    secret_name: str
    clusters: tuple[ClusterConfig, ...]
    clusters_secret: SecretManagerRef | None
    token_lifetime: timedelta
    expiry_warning: timedelta
    alias_prefix: str
    keep_previous_tokens: int
    secret_manager_endpoint: str
    max_parallel_writes: int
    max_parallel_clusters: int
    #: The whole run (reads, mint, writes, revocation) ends by then, so the function answers before its timeout.
    run_deadline: timedelta
    #: ALLOW_INSECURE_SKIP_TLS_VERIFY: accept a kubeconfig that turns TLS verification off.
    allow_insecure_tls: bool
    log_level: str
    invokers: InvokerPolicy | None = None  # None: Google's front door (the invoker IAM role) decides
    events: str = "all"
    credential_warning: timedelta = timedelta(hours=DEFAULT_CREDENTIAL_WARNING_HOURS)
    renewal: Renewal | None = None  # None: the kubeconfig is renewed by hand (make kubeconfig)


def load_settings(env: Mapping[str, str]) -> Settings:
    """Parse ``env`` into :class:`Settings`; raise :class:`ConfigError` naming every bad variable."""
    reader = _Reader(env)
    token_hours = reader.limited("TOKEN_EXPIRATION_HOURS", DEFAULT_TOKEN_HOURS)
    clusters, clusters_secret = reader.clusters()
    credential_warning = timedelta(hours=reader.limited("CREDENTIAL_WARNING_HOURS", DEFAULT_CREDENTIAL_WARNING_HOURS))
    settings = Settings(
        credentials=reader.credentials(),
        api_endpoint=reader.api_endpoint(),
        registry=reader.registry(),
        registry_username=reader.required("REGISTRY_USERNAME"),
        secret_name=reader.secret_name(),
        clusters=clusters,
        clusters_secret=clusters_secret,
        token_lifetime=timedelta(hours=token_hours),
        expiry_warning=reader.expiry_warning(token_hours),
        alias_prefix=reader.alias_prefix(),
        keep_previous_tokens=reader.limited("KEEP_PREVIOUS_TOKENS", DEFAULT_KEEP_PREVIOUS),
        secret_manager_endpoint=reader.url(
            "SECRET_MANAGER_ENDPOINT", reader.optional("SECRET_MANAGER_ENDPOINT") or DEFAULT_SECRET_MANAGER_ENDPOINT
        ),
        max_parallel_writes=reader.limited("MAX_PARALLEL_WRITES", DEFAULT_MAX_PARALLEL_WRITES),
        max_parallel_clusters=reader.limited("MAX_PARALLEL_CLUSTERS", DEFAULT_MAX_PARALLEL_CLUSTERS),
        run_deadline=timedelta(seconds=reader.limited("RUN_DEADLINE_SECONDS", DEFAULT_RUN_DEADLINE_SECONDS)),
        allow_insecure_tls=reader.choice("ALLOW_INSECURE_SKIP_TLS_VERIFY", ("false", "true")) == "true",
        log_level=reader.log_level(),
        invokers=reader.invokers(),
        events=reader.choice("EVENTS", tuple(LIMITS["events"])),
        credential_warning=credential_warning,
        renewal=reader.renewal(clusters, credential_warning),
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
        """A whole number within the bounds ``limits.json`` gives for ``name`` (``default`` when unset)."""
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

    def clusters(self) -> tuple[tuple[ClusterConfig, ...], SecretManagerRef | None]:
        """The cluster list: from CLUSTERS, from a Secret Manager version (CLUSTERS_SECRET), or the shorthand."""
        raw, secret = self.optional("CLUSTERS"), self.optional("CLUSTERS_SECRET")
        given = [name for name in ("CLUSTERS", "CLUSTERS_SECRET") if self.optional(name)]
        if not given:
            return (self.single_cluster(),), None
        mixed = [name for name in SINGLE_CLUSTER_VARIABLES if self.optional(name)]
        if len(given) > 1 or mixed:
            also = ", ".join([*given[1:], *mixed])
            self.problems[given[0]] = (
                f"set one of CLUSTERS, CLUSTERS_SECRET or the one-cluster variables (also set: {also})"
            )
        if secret is not None:
            return (), SecretManagerRef(self.secret_version("CLUSTERS_SECRET", secret))
        try:
            return parse_clusters(raw or "", "CLUSTERS"), None
        except ConfigError as exc:
            self.problems.update(exc.problems)
            return (), None

    def single_cluster(self) -> ClusterConfig:
        """The one cluster of the shorthand variables (TARGET_NAMESPACES, KUBECONFIG, ...)."""
        name = self.optional("CLUSTER_NAME") or DEFAULT_CLUSTER_NAME
        if not _CLUSTER_NAME.fullmatch(name):
            self.problems["CLUSTER_NAME"] = f"must be 1 to 40 lower-case letters, digits or '-', got {name!r}"
        found = self.first("TARGET_NAMESPACES", "TARGET_NAMESPACE")
        namespaces_var = found[0] if found else "TARGET_NAMESPACES"
        fields = _ClusterFields(
            namespaces=found[1] if found else None,
            selector=self.optional("TARGET_NAMESPACE_SELECTOR"),
            exclude=self.optional("EXCLUDE_NAMESPACES"),
            service_accounts=self.optional("PATCH_SERVICE_ACCOUNTS"),
        )
        names = _FieldNames(namespaces_var, "TARGET_NAMESPACE_SELECTOR", "EXCLUDE_NAMESPACES", "PATCH_SERVICE_ACCOUNTS")
        selection, accounts = _cluster_fields(fields, names, self.problems)
        return ClusterConfig(name, self.kubeconfig(), self.optional("KUBE_CONTEXT"), selection, accounts)

    def expiry_warning(self, token_hours: int) -> timedelta:
        """EXPIRY_WARNING_HOURS, below the token's lifetime; a quarter of the lifetime by default."""
        hours = self.limited("EXPIRY_WARNING_HOURS", 0)
        if hours == 0:
            return timedelta(hours=token_hours) / 4
        if hours >= token_hours:
            self.problems["EXPIRY_WARNING_HOURS"] = (
                f"must be less than TOKEN_EXPIRATION_HOURS ({token_hours}), or every token would count as at risk"
            )
        return timedelta(hours=hours)

    def renewal(self, clusters: tuple[ClusterConfig, ...], credential_warning: timedelta) -> Renewal | None:
        """RENEW_KUBECONFIG and its two settings; only for kubeconfigs read from Secret Manager as ``latest``."""
        enabled = self.choice("RENEW_KUBECONFIG", ("false", "true")) == "true"
        token_hours = self.limited("RENEW_TOKEN_HOURS", DEFAULT_RENEW_TOKEN_HOURS)
        grace_hours = self.limited("RENEW_GRACE_HOURS", DEFAULT_RENEW_GRACE_HOURS)
        if not enabled:
            for name in ("RENEW_TOKEN_HOURS", "RENEW_GRACE_HOURS"):
                if self.optional(name) is not None:
                    self.problems[name] = "is used only with RENEW_KUBECONFIG=true"
            return None
        if timedelta(hours=token_hours) <= credential_warning:
            self.problems["RENEW_TOKEN_HOURS"] = (
                f"must be more than CREDENTIAL_WARNING_HOURS ({credential_warning.total_seconds() / 3600:g}), "
                "or a renewed token would be at risk at once"
            )
        unrenewable = [c.name for c in clusters if not renewable(c.kubeconfig)]
        if unrenewable:
            self.problems["RENEW_KUBECONFIG"] = (
                "needs every kubeconfig in Secret Manager, read as versions/latest (KUBECONFIG_SECRET or CLUSTERS "
                f"kubeconfig_secret), so the next run reads the renewed one; not so: {', '.join(unrenewable)}"
            )
        return Renewal(timedelta(hours=token_hours), timedelta(hours=grace_hours))

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
        """KUBECONFIG_SECRET or KUBECONFIG, exactly one."""
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

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        """One of ``allowed`` (lower case), the first being the default."""
        value = (self.optional(name) or allowed[0]).lower()
        if value not in allowed:
            self.problems[name] = f"must be one of {', '.join(allowed)}, got {value!r}"
            return allowed[0]
        return value

    def log_level(self) -> str:
        raw = (self.optional("LOG_LEVEL") or "INFO").upper()
        if raw not in _LOG_LEVELS:
            self.problems["LOG_LEVEL"] = f"must be one of {', '.join(_LOG_LEVELS)}, got {raw!r}"
            return "INFO"
        return raw

    def invokers(self) -> InvokerPolicy | None:
        """``ALLOWED_INVOKERS`` and ``INVOKER_AUDIENCE``: both (verify callers) or neither (the front door does)."""
        emails, audience = self.optional("ALLOWED_INVOKERS"), self.optional("INVOKER_AUDIENCE")
        certs_url = self.optional("INVOKER_CERTS_URL")
        if emails is None and audience is None:
            if certs_url is not None:
                self.problems["INVOKER_CERTS_URL"] = "is used only with ALLOWED_INVOKERS and INVOKER_AUDIENCE"
            return None
        if emails is None or audience is None:
            missing, given = (
                ("ALLOWED_INVOKERS", "INVOKER_AUDIENCE") if emails is None else ("INVOKER_AUDIENCE", "ALLOWED_INVOKERS")
            )
            self.problems[missing] = f"is required when {given} is set (set both to verify callers, or neither)"
            return None
        allowed = [part.strip() for part in emails.split(",") if part.strip()]
        bad = [e for e in allowed if not _EMAIL.fullmatch(e)]
        if bad or not allowed:
            listing = ", ".join(repr(b) for b in bad)
            self.problems["ALLOWED_INVOKERS"] = f"not e-mail addresses: {listing}" if bad else "lists no e-mail"
        try:
            parts = urlsplit(audience)
        except ValueError:  # a malformed IPv6 host such as "https://["
            parts = urlsplit("")
        if parts.scheme != "https" or not parts.hostname:
            self.problems["INVOKER_AUDIENCE"] = f"must be an https URL (the function's URL), got {audience!r}"
        certs = self.url("INVOKER_CERTS_URL", certs_url or DEFAULT_INVOKER_CERTS_URL)
        return InvokerPolicy(frozenset(e.lower() for e in allowed), audience, certs)


def renewable(source: KubeconfigSource) -> bool:
    """A kubeconfig the function can renew: a Secret Manager secret it reads as ``latest``."""
    return isinstance(source, SecretManagerRef) and source.version_name.endswith("/versions/latest")


def check_secret_key(value: str, report: Callable[[str], None]) -> None:
    """Report (without echoing it) a secret key that is not URL-safe base64, as Crusoe issues them."""
    if not _URLSAFE_BASE64.match(value):
        report("is not URL-safe base64; copy the secret key exactly as Crusoe showed it")
        return
    try:
        base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        report("is not valid base64 (wrong length?); copy the secret key exactly as Crusoe showed it")


@dataclass(frozen=True)
class _ClusterFields:
    """A cluster's selection fields as given (strings or lists), before parsing."""

    namespaces: object = None
    selector: object = None
    exclude: object = None
    service_accounts: object = None


@dataclass(frozen=True)
class _FieldNames:
    """How to name each field in a problem: a variable name, or ``CLUSTERS[i].field``."""

    namespaces: str
    selector: str
    exclude: str
    service_accounts: str


def _cluster_fields(
    fields: _ClusterFields, names: _FieldNames, problems: dict[str, str]
) -> tuple[NamespaceSelection, ServiceAccounts]:
    """Parse the selection and service accounts of one cluster, recording every problem under its name."""

    def report(name: str) -> Callable[[str], None]:
        return lambda problem: problems.__setitem__(name, problem)

    names_given, patterns = parse_namespaces(
        _entries(fields.namespaces, names.namespaces, problems), report(names.namespaces)
    )
    selector = None
    if fields.selector is not None:
        if not isinstance(fields.selector, str):
            problems[names.selector] = "must be a label selector string such as team=ml,tier!=dev"
        else:
            try:
                selector = parse_selector(fields.selector)
            except ValueError as exc:
                problems[names.selector] = f"is not a valid label selector: it {exc}"
    if not names_given and not patterns and selector is None and names.namespaces not in problems:
        problems[names.namespaces] = (
            "lists no namespace"
            if fields.namespaces is not None
            else f"is required: comma-separated namespaces or globs ('*' for all), or set {names.selector}"
        )
    exclude = parse_globs(_entries(fields.exclude, names.exclude, problems), report(names.exclude))
    selection = NamespaceSelection(names_given, patterns, selector, exclude)
    return selection, _service_accounts(fields.service_accounts, names.service_accounts, problems)


def _entries(raw: object, name: str, problems: dict[str, str]) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str) or (isinstance(raw, list) and all(isinstance(item, str) for item in raw)):
        return split_list(raw)
    problems[name] = "must be a comma-separated string or a list of strings"
    return []


def _service_accounts(raw: object, name: str, problems: dict[str, str]) -> ServiceAccounts:
    entries = _entries(raw, name, problems)
    if entries == ["*"]:
        return ServiceAccounts(every=True)
    bad = [e for e in entries if len(e) > _SECRET_NAME_MAX or not _SERVICE_ACCOUNT.fullmatch(e)]
    if bad:
        problems[name] = f"not valid service account names (or '*' alone): {', '.join(repr(b) for b in bad)}"
    limit = LIMITS["service_account_count"]["max"]
    if len(entries) > limit:
        problems[name] = f"names more than {limit} service accounts: use '*' for every one"
    return ServiceAccounts(names=tuple(dict.fromkeys(e for e in entries if e not in bad)))


def parse_clusters(text: str, where: str) -> tuple[ClusterConfig, ...]:
    """The ``CLUSTERS`` JSON list (from the environment or a Secret Manager payload), every problem named.

    Raises:
        ConfigError: the text is not a list of cluster objects, or any entry is invalid.
    """
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise ConfigError({where: "is not valid JSON (a list of cluster objects)"}) from None
    limit = LIMITS["cluster_count"]["max"]
    if not isinstance(document, list) or not document or not all(isinstance(e, dict) for e in document):
        raise ConfigError(
            {where: 'must be a non-empty JSON list of objects like {"name": ..., "kubeconfig_secret": ...}'}
        )
    if len(document) > limit:
        raise ConfigError({where: f"lists more than {limit} clusters: split them into groups"})
    problems: dict[str, str] = {}
    clusters = [_cluster(entry, f"{where}[{index}]", problems) for index, entry in enumerate(document)]
    names = [cluster.name for cluster in clusters]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems[where] = f"names clusters more than once: {', '.join(duplicates)}"
    if problems:
        raise ConfigError(problems)
    return tuple(clusters)


def _cluster(entry: dict[str, Any], where: str, problems: dict[str, str]) -> ClusterConfig:
    unknown = sorted(set(entry) - CLUSTER_FIELDS)
    if unknown:
        problems[where] = f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(CLUSTER_FIELDS))}"
    name = entry.get("name")
    if not isinstance(name, str) or not _CLUSTER_NAME.fullmatch(name):
        problems[f"{where}.name"] = (
            "must be 1 to 40 lower-case letters, digits or '-', starting and ending alphanumeric"
        )
        name = str(name)
    secret, path = entry.get("kubeconfig_secret"), entry.get("kubeconfig")
    kubeconfig: KubeconfigSource = LocalFile(Path())
    if (secret is None) == (path is None):
        problems[f"{where}.kubeconfig_secret"] = "set exactly one of kubeconfig_secret (Secret Manager) or kubeconfig"
    elif isinstance(secret, str) and _SECRET_VERSION.match(secret):
        kubeconfig = SecretManagerRef(secret)
    elif isinstance(path, str) and path and ":" not in path:
        kubeconfig = LocalFile(Path(path).expanduser())
    else:
        problems[f"{where}.kubeconfig_secret"] = (
            "must be a Secret Manager version name (projects/P/secrets/S/versions/latest), or kubeconfig one local file"
        )
    context = entry.get("context")
    if context is not None and not isinstance(context, str):
        problems[f"{where}.context"] = "must be a string"
        context = None
    fields = _ClusterFields(
        entry.get("namespaces"),
        entry.get("namespace_selector"),
        entry.get("exclude_namespaces"),
        entry.get("service_accounts"),
    )
    field_names = _FieldNames(
        *(f"{where}.{f}" for f in ("namespaces", "namespace_selector", "exclude_namespaces", "service_accounts"))
    )
    selection, accounts = _cluster_fields(fields, field_names, problems)
    return ClusterConfig(name, kubeconfig, context or None, selection, accounts)
