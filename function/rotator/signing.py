"""Crusoe API request signing, version 1.0 (HMAC-SHA256), as the official Go client computes it.

Pure functions: the same inputs always give the same signature, which the unit tests check against the
published vectors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import quote_plus, unquote_plus

SIGNATURE_VERSION = "1.0"


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 UTC with a ``Z`` suffix and whole seconds, as the official Go client sends it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_query(params: Iterable[tuple[str, str]]) -> str:
    """Encode ``params`` sorted by key, form-encoded: the only order the API accepts in a URL."""
    return canonical_query("&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in params))


def canonical_query(raw_query: str) -> str:
    """The canonical form of a raw query string that goes into the signed message.

    Raises:
        ValueError: if the query uses ``;`` as a separator, which the API rejects.
    """
    if ";" in raw_query:
        raise ValueError("a query string may not contain ';'")
    grouped: dict[str, list[str]] = {}
    for piece in raw_query.split("&"):
        if not piece:
            continue
        key, _, value = piece.partition("=")
        grouped.setdefault(unquote_plus(key), []).append(unquote_plus(value))
    # quote_plus escapes '/' too (its ``safe`` is empty), and code-point order is UTF-8 byte order: the API's
    # bytewise key sort.
    return "&".join(f"{quote_plus(key)}={quote_plus(value)}" for key in sorted(grouped) for value in grouped[key])


def signing_message(path: str, raw_query: str, method: str, timestamp: str) -> str:
    """The four lines that are signed: path, canonical query, method, timestamp, each ending in a newline."""
    return f"{path}\n{canonical_query(raw_query)}\n{method.upper()}\n{timestamp}\n"


def sign(secret_key: str, message: str) -> str:
    """HMAC-SHA256 of ``message`` keyed by the decoded secret key, as unpadded URL-safe base64."""
    key = base64.urlsafe_b64decode(secret_key + "=" * (-len(secret_key) % 4))
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorization(access_key_id: str, signature: str) -> str:
    """The ``Authorization`` header value for a signature."""
    return f"Bearer {SIGNATURE_VERSION}:{access_key_id}:{signature}"
