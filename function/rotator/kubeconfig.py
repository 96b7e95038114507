"""Turning kubeconfig text into what an unattended HTTPS client needs, without writing secrets to disk.

Supported: client certificates (Crusoe Managed Kubernetes ``admin_cert`` kubeconfigs), bearer tokens
(ServiceAccount kubeconfigs), CA data. Exec plugins and auth providers need a person or a helper binary
at hand and are refused with an explanation. File references (``client-certificate``, ``tokenFile``, ...)
are honoured only for local kubeconfig files, relative to the file, as kubectl does.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from rotator.errors import KubeconfigError
from rotator.secret import SecretStr


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
    context: str


def parse_kubeconfig(text: SecretStr, *, context: str | None, base_dir: Path | None) -> ClusterAccess:
    """Select ``context`` (or the current one) and resolve its cluster and user.

    Args:
        text: the kubeconfig document.
        context: the context to use; the kubeconfig's ``current-context`` when None.
        base_dir: directory of a local kubeconfig file, for relative file references; None forbids them.
    """
    document = _load(text)
    name = context or document.get("current-context")
    if not name:
        raise KubeconfigError("the kubeconfig has no current-context: set KUBE_CONTEXT to one of its contexts")
    ctx = _named(document, "contexts", "context", str(name))
    cluster = _named(document, "clusters", "cluster", str(ctx.get("cluster", "")))
    user = _named(document, "users", "user", str(ctx.get("user", "")))
    reader = _Files(base_dir)

    server = str(cluster.get("server", ""))
    parts = urlsplit(server)
    if parts.scheme != "https" or not parts.hostname:
        raise KubeconfigError(f"cluster {ctx.get('cluster')!r} must have an https server URL")
    for unsupported in ("exec", "auth-provider"):
        if user.get(unsupported):
            raise KubeconfigError(
                f"user {ctx.get('user')!r} authenticates with {unsupported}, which needs an interactive login or "
                "a helper binary that a function does not have: use a ServiceAccount token kubeconfig "
                "(make kubeconfig) or a Crusoe Managed Kubernetes admin_cert kubeconfig"
            )
    if user.get("username") or user.get("password"):
        raise KubeconfigError("basic authentication (username/password) is not supported by Kubernetes any more")

    token_text = user.get("token") or reader.text(user.get("tokenFile"), "tokenFile")
    cert = reader.pem(user, "client-certificate")
    key = reader.pem(user, "client-key")
    if (cert is None) != (key is None):
        raise KubeconfigError(f"user {ctx.get('user')!r} has a client certificate without its key, or a key alone")
    if not token_text and cert is None:
        raise KubeconfigError(f"user {ctx.get('user')!r} has neither a token nor a client certificate")
    ca = reader.pem(cluster, "certificate-authority")
    return ClusterAccess(
        server=server.rstrip("/"),
        ca_pem=ca.reveal().encode() if ca else None,
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=cluster.get("tls-server-name") or None,
        client_cert_pem=cert,
        client_key_pem=key,
        token=SecretStr(str(token_text).strip()) if token_text else None,
        context=str(name),
    )


def _load(text: SecretStr) -> dict[str, Any]:
    try:
        document = yaml.safe_load(text.reveal())
    except yaml.YAMLError as exc:
        # The parser's own message quotes the offending line, which may hold a key: report the place only.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise KubeconfigError(f"the kubeconfig is not valid YAML{where}") from None
    if not isinstance(document, dict):
        raise KubeconfigError("the kubeconfig is not a YAML mapping (is it the right secret?)")
    return document


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
