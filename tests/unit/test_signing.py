import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest
from rotator.signing import authorization, canonical_query, encode_query, format_timestamp, sign, signing_message

from devkit.signing_vectors import CANONICAL_QUERIES, SECRET_KEY, VECTORS


@pytest.mark.parametrize(("method", "path", "query", "timestamp", "expected"), VECTORS)
def test_sign_matches_published_vectors(method, path, query, timestamp, expected):
    assert sign(SECRET_KEY, signing_message(path, query, method, timestamp)) == expected


def test_canonical_query_sorts_keys_and_keeps_value_order():
    assert canonical_query("b=2&a=hello world&a=1") == "a=hello+world&a=1&b=2"


@pytest.mark.parametrize(("raw", "canonical"), CANONICAL_QUERIES)
def test_canonical_query_escaping(raw, canonical):
    assert canonical_query(raw) == canonical


def test_canonical_query_rejects_semicolons():
    with pytest.raises(ValueError, match=r"^a query string may not contain ';'$"):
        canonical_query("a=1;b=2")


def test_encode_query_sorts_and_escapes_key_ids_with_plus_and_slash():
    query = encode_query([("z", "1"), ("key_id", "Hm11C1coQZm2+Aihn9ofYg/x")])
    assert query == "key_id=Hm11C1coQZm2%2BAihn9ofYg%2Fx&z=1"
    assert canonical_query(query) == query


def test_signing_message_has_four_newline_terminated_lines():
    assert signing_message("/v1alpha5/p", "", "get", "T") == "/v1alpha5/p\n\nGET\nT\n"


def test_authorization_header_format():
    assert authorization("id", "sig") == "Bearer 1.0:id:sig"


def test_timestamp_is_utc_whole_seconds_whatever_the_machines_time_zone(local_time_zone_ahead_of_utc):
    moment = datetime(2025, 10, 1, 21, 0, 5, 999_000, tzinfo=timezone(timedelta(hours=9)))
    assert format_timestamp(moment) == "2025-10-01T12:00:05Z"
    assert format_timestamp(moment.astimezone(UTC)) == "2025-10-01T12:00:05Z"


@pytest.mark.parametrize("key_bytes", [16, 20, 21, 22, 32])
def test_sign_decodes_unpadded_secret_keys_of_any_length(key_bytes):
    key = bytes(range(7, 7 + key_bytes))
    secret_key = base64.urlsafe_b64encode(key).rstrip(b"=").decode()
    digest = hmac.new(key, b"message", hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(sign(secret_key, "message") + "=") == digest
