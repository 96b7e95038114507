"""Turning kubeconfig text into what an unattended HTTPS client needs, without writing secrets to disk.

Supported: client certificates (Crusoe Managed Kubernetes ``admin_cert`` kubeconfigs), bearer tokens
(ServiceAccount kubeconfigs), CA data. Exec plugins and auth providers need a person or a helper binary
at hand and are refused with an explanation. File references (``client-certificate``, ``tokenFile``, ...)
are honoured only for local kubeconfig files, relative to the file, as kubectl does.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import yaml

from rotator.errors import KubeconfigError
from rotator.secret import SecretStr

MAX_KUBECONFIG_BYTES: Final = 1024 * 1024
_SECTIONS: Final = ("clusters", "users", "contexts")
#: The kubeconfig user fields that make a client act as someone else.
_IMPERSONATION: Final = ("as", "as-uid", "as-groups", "as-user-extra")


@dataclass(frozen=True)
class ClusterAccess:
    """Where the API server is and how to prove who we are to it."""

    server: str
    ca_pem: bytes | None
    insecure_skip_tls_verify: bool
    tls_server_name: str | None
    client_cert_pem: SecretStr | None
    client_key_pem: SecretStr | None
    token: SecretStr | None


def parse_kubeconfig(
    text: SecretStr, *, context: str | None, base_dir: Path | None, allow_insecure: bool = False
) -> ClusterAccess:
    """Select ``context`` (or the current one) and resolve its cluster and user.

    Args:
        text: the kubeconfig document.
        context: the context to use; the kubeconfig's ``current-context`` when None.
        base_dir: directory of a local kubeconfig file, for relative file references; None forbids them.
        allow_insecure: ALLOW_INSECURE_SKIP_TLS_VERIFY: accept ``insecure-skip-tls-verify: true``.
    """
    document = _load(text)
    name = context or document.get("current-context")
    if not name:
        raise KubeconfigError("the kubeconfig has no current-context: set KUBE_CONTEXT to one of its contexts")
    ctx = _named(document, "contexts", "context", str(name))
    cluster_name, user_name = str(ctx.get("cluster", "")), str(ctx.get("user", ""))
    cluster = _named(document, "clusters", "cluster", cluster_name)
    user = _named(document, "users", "user", user_name)
    reader = _Files(base_dir)
    server = _server(cluster, cluster_name)
    _check_user(user, user_name)

    token_text = user.get("token") or reader.text(user.get("tokenFile"), "tokenFile")
    cert = reader.pem(user, "client-certificate")
    key = reader.pem(user, "client-key")
    if (cert is None) != (key is None):
        raise KubeconfigError(f"user {user_name!r} has a client certificate without its key, or a key alone")
    if not token_text and cert is None:
        raise KubeconfigError(f"user {user_name!r} has neither a token nor a client certificate")
    if key is not None and _ENCRYPTED_KEY.search(key.reveal()):
        raise KubeconfigError(
            f"the client key of user {user_name!r} is encrypted with a pass phrase, which an unattended function "
            "cannot type: store an unencrypted key (the Secret Manager secret protects it)"
        )
    ca = reader.pem(cluster, "certificate-authority")
    server_name = cluster.get("tls-server-name")
    return ClusterAccess(
        server=server,
        ca_pem=ca.reveal().encode() if ca else None,
        insecure_skip_tls_verify=_insecure(cluster, cluster_name, allow=allow_insecure),
        tls_server_name=str(server_name) if server_name else None,
        client_cert_pem=cert,
        client_key_pem=key,
        token=SecretStr(str(token_text).strip()) if token_text else None,
    )


def with_token(text: SecretStr, *, context: str | None, token: SecretStr) -> SecretStr:
    """The same kubeconfig with the chosen context's user authenticating with ``token`` (a renewed one).

    Everything else (clusters, CA, other users and contexts) is kept; a ``tokenFile`` of that user is dropped,
    since the token is now embedded.
    """
    document = _load(text)
    name = context or document.get("current-context")
    if not name:
        raise KubeconfigError("the kubeconfig has no current-context: set KUBE_CONTEXT to one of its contexts")
    user_name = str(_named(document, "contexts", "context", str(name)).get("user", ""))
    _named(document, "users", "user", user_name)  # raises naming the user when it is not there
    for entry in document["users"]:
        if isinstance(entry, dict) and entry.get("name") == user_name and isinstance(entry.get("user"), dict):
            kept = {key: value for key, value in entry["user"].items() if key != "tokenFile"}
            entry["user"] = kept | {"token": token.reveal()}
            break
    return SecretStr(yaml.safe_dump(document, sort_keys=False))


_ENCRYPTED_KEY: Final = re.compile(r"BEGIN ENCRYPTED PRIVATE KEY|Proc-Type:\s*4,\s*ENCRYPTED")


def _server(cluster: dict[str, Any], cluster_name: str) -> str:
    """The https base URL of the API server; never echoed when it is refused (it may hold a password)."""
    server = str(cluster.get("server", ""))
    try:
        parts = urlsplit(server)
        valid = parts.scheme == "https" and bool(parts.hostname) and parts.port != 0
    except ValueError:
        valid = False
    if not valid:
        raise KubeconfigError(f"cluster {cluster_name!r} must have an https server URL (https://host[:port])")
    if parts.username is not None or parts.password is not None:
        raise KubeconfigError(
            f"the server URL of cluster {cluster_name!r} holds a user name or password (user:password@host): "
            "remove it; credentials belong in the kubeconfig's user entry"
        )
    return server.rstrip("/")


def _check_user(user: dict[str, Any], user_name: str) -> None:
    """Refuse the ways of authenticating that need a person, a helper binary or a dead API."""
    for unsupported in ("exec", "auth-provider"):
        if user.get(unsupported):
            raise KubeconfigError(
                f"user {user_name!r} authenticates with {unsupported}, which needs an interactive login or "
                "a helper binary that a function does not have: use a ServiceAccount token kubeconfig "
                "(make kubeconfig) or a Crusoe Managed Kubernetes admin_cert kubeconfig"
            )
    if user.get("username") or user.get("password"):
        raise KubeconfigError("basic authentication (username/password) is not supported by Kubernetes any more")
    impersonation = sorted(field for field in _IMPERSONATION if field in user)
    if impersonation:
        raise KubeconfigError(
            f"user {user_name!r} impersonates another identity ({', '.join(impersonation)}), which the rotator does "
            "not do: bind the RBAC to the kubeconfig's own identity instead"
        )


def _insecure(cluster: dict[str, Any], cluster_name: str, *, allow: bool) -> bool:
    """``insecure-skip-tls-verify``: a YAML boolean only, and ``true`` only when the deployment says so.

    The text "false" must not turn verification off; and a kubeconfig that turns it off sends the cluster
    credential to whoever answers, so it is refused unless ALLOW_INSECURE_SKIP_TLS_VERIFY is set.
    """
    if cluster.get("proxy-url"):
        raise KubeconfigError(
            f"cluster {cluster_name!r} sets proxy-url, which the rotator does not use: set HTTPS_PROXY in the "
            "function's environment instead (the cluster's CA, client certificate and tls-server-name still apply)"
        )
    value = cluster.get("insecure-skip-tls-verify", False)
    if not isinstance(value, bool):
        raise KubeconfigError(
            f"insecure-skip-tls-verify of cluster {cluster_name!r} must be true or false (a YAML boolean, "
            "not text in quotes)"
        )
    if value and not allow:
        raise KubeconfigError(
            f"cluster {cluster_name!r} turns TLS verification off (insecure-skip-tls-verify): add the cluster's "
            "certificate-authority-data instead, or set ALLOW_INSECURE_SKIP_TLS_VERIFY=true to accept the risk"
        )
    return value


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors or aliases, and with dates kept as text.

    An alias repeats a node without repeating its text, so a few hundred bytes can expand into gigabytes
    (a 558-byte kubeconfig took 18 s and 217 MB); kubeconfigs written by kubectl or a cloud console never
    use them. client-go reads every kubeconfig field as a string, so a date-like value stays text here too
    (an impossible date such as 2026-02-30 is then no crash).
    """

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call] # unannotated in types-pyyaml
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            line = event.start_mark.line + 1 if event.start_mark else 0
            raise KubeconfigError(
                f"the kubeconfig uses a YAML anchor or alias (&name / *name) at line {line}, which is refused: "
                "write it out in full (kubectl config view --raw --flatten does)"
            )
        return super().compose_node(parent, index)


def _timestamp_as_text(loader: _Loader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node)) if isinstance(node, yaml.ScalarNode) else ""


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def _load(text: SecretStr) -> dict[str, Any]:
    raw = text.reveal()
    if len(raw) > MAX_KUBECONFIG_BYTES:
        raise KubeconfigError("the kubeconfig is larger than 1 MiB (is it the right secret?)")
    loader = _Loader(raw)
    try:
        document = loader.get_single_data()
    except yaml.YAMLError as exc:
        # The parser's own message quotes the offending line, which may hold a key: report the place only.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise KubeconfigError(f"the kubeconfig is not valid YAML{where}") from None
    except (ValueError, TypeError, RecursionError):
        raise KubeconfigError(
            "the kubeconfig is not valid YAML (a value cannot be read, or it nests too deep)"
        ) from None
    finally:
        loader.dispose()
    if not isinstance(document, dict):
        raise KubeconfigError("the kubeconfig is not a YAML mapping (is it the right secret?)")
    _check_unique_names(document)
    return document


def _check_unique_names(document: dict[str, Any]) -> None:
    """Two entries with one name are an error, as in kubectl, not a silent first-one-wins."""
    for section in _SECTIONS:
        entries = document.get(section) or []
        seen: set[str] = set()
        for entry in entries if isinstance(entries, list) else []:
            name = str(entry.get("name")) if isinstance(entry, dict) else None
            if name in seen:
                raise KubeconfigError(f"the kubeconfig has two {section} named {name!r}: rename or remove one")
            if name is not None:
                seen.add(name)


def _named(document: dict[str, Any], section: str, field: str, name: str) -> dict[str, Any]:
    entries = document.get(section) or []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("name") == name and isinstance(entry.get(field), dict):
            return dict(entry[field])
    known = [e.get("name") for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
    raise KubeconfigError(f"the kubeconfig has no {field} named {name!r} (it has: {', '.join(map(str, known))})")


class _Files:
    """Reads ``*-data`` fields, or the files they may name instead when the kubeconfig is local."""

    def __init__(self, base_dir: Path | None) -> None:
        self._base_dir = base_dir

    def pem(self, entry: dict[str, Any], field: str) -> SecretStr | None:
        data = entry.get(f"{field}-data")
        if data:
            try:
                return SecretStr(base64.b64decode(str(data), validate=True).decode())
            except (binascii.Error, ValueError):
                raise KubeconfigError(f"{field}-data in the kubeconfig is not valid base64") from None
        text = self.text(entry.get(field), field)
        return SecretStr(text) if text else None

    def text(self, reference: object, field: str) -> str | None:
        if not reference:
            return None
        if self._base_dir is None:
            raise KubeconfigError(
                f"the kubeconfig refers to a file for {field}; a kubeconfig kept in Secret Manager must embed "
                f"it as {field}-data (kubectl config view --raw --minify --flatten does that)"
            )
        path = self._base_dir / str(reference)
        try:
            return path.read_text()
        except OSError as exc:
            raise KubeconfigError(f"cannot read {field} file {path}: {exc.strerror}") from None
