"""The Crusoe client against the emulator (a local server, no mocks): signing, escaping, retries, errors."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta

import pytest
import requests
from rotator.config import StaticCredentials
from rotator.crusoe import CrusoeClient, classify, retryable_status
from rotator.errors import CrusoeApiError, RotatorError
from rotator.retry import Backoff
from rotator.secret import SecretStr

from devkit.crusoe_emulator import CrusoeEmulator

pytestmark = pytest.mark.integration

KEY_ID = "Hm11C1coQZm2+Aihn9ofYg"
SECRET_KEY = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def server():
    with CrusoeEmulator() as emulator:
        emulator.add_api_key(KEY_ID, SECRET_KEY)
        yield emulator


@pytest.fixture
def emulator(server):
    server.reset()
    return server


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def crusoe(emulator, sleeps):
    return CrusoeClient(
        emulator.base_url,
        StaticCredentials(KEY_ID, SecretStr(SECRET_KEY)),
        requests.Session(),
        backoff=Backoff(attempts=3, base_seconds=0.01),
        sleep=sleeps.append,
    )


def test_mint_list_and_delete_round_trip(crusoe, emulator):
    expires = datetime.now(UTC) + timedelta(hours=12)
    token = crusoe.create_registry_token("ccr-rotator-20261128T000000Z-abcdef", expires)
    keys = crusoe.list_registry_tokens()
    assert [k.alias for k in keys] == ["ccr-rotator-20261128T000000Z-abcdef"]
    assert token.reveal() == emulator.tokens()[0].token
    assert keys[0].expires_at is not None
    assert abs((keys[0].expires_at - expires).total_seconds()) < 2
    crusoe.delete_key(keys[0].key_id)  # key ids hold '+' and '/': the query must escape them
    assert crusoe.list_registry_tokens() == []


def test_list_keeps_only_registry_tokens(crusoe, emulator):
    emulator.seed_token("inference-key", usage="inference")
    emulator.seed_token("registry-key")
    assert [k.alias for k in crusoe.list_registry_tokens()] == ["registry-key"]


def test_get_is_retried_on_503_and_429_with_retry_after(crusoe, emulator, sleeps):
    emulator.inject("getLimitedUsageAPIKeys", status=503)
    emulator.inject("getLimitedUsageAPIKeys", status=429, retry_after=3)
    assert crusoe.list_registry_tokens() == []
    assert len(sleeps) == 2
    assert sleeps[1] == 3


def test_get_gives_up_after_the_last_attempt_with_the_api_error(crusoe, emulator):
    emulator.inject("getLimitedUsageAPIKeys", status=500, times=5)
    with pytest.raises(CrusoeApiError) as caught:
        crusoe.list_registry_tokens()
    assert caught.value.retryable
    assert caught.value.status == 500
    assert "error_id" in str(caught.value)


def test_post_is_never_retried(crusoe, emulator):
    emulator.inject("createCcrToken", status=503)
    with pytest.raises(CrusoeApiError) as caught:
        crusoe.create_registry_token("a-20261128T000000Z-abcdef", datetime.now(UTC) + timedelta(hours=1))
    assert caught.value.retryable
    assert len([r for r in emulator.requests if r.method == "POST"]) == 1


def test_not_implemented_is_not_retried(crusoe, emulator, sleeps):
    emulator.inject("getLimitedUsageAPIKeys", status=501)
    with pytest.raises(CrusoeApiError) as caught:
        crusoe.list_registry_tokens()
    assert not caught.value.retryable
    assert sleeps == []


def test_bad_credentials_say_what_to_check_and_hold_no_secret(emulator):
    wrong = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
    client = CrusoeClient(emulator.base_url, StaticCredentials(KEY_ID, SecretStr(wrong)), requests.Session())
    with pytest.raises(CrusoeApiError) as caught:
        client.create_registry_token("a-20261128T000000Z-abcdef", datetime.now(UTC) + timedelta(hours=1))
    message = str(caught.value)
    assert "401" in message
    assert "bad_credential" in message
    assert "clock" in message
    assert wrong not in message
    assert SECRET_KEY not in message
    assert not caught.value.retryable


def test_a_skewed_clock_is_refused(emulator):
    client = CrusoeClient(
        emulator.base_url,
        StaticCredentials(KEY_ID, SecretStr(SECRET_KEY)),
        requests.Session(),
        clock=lambda: datetime.now(UTC) - timedelta(minutes=30),
    )
    with pytest.raises(CrusoeApiError, match="401"):
        client.list_registry_tokens()


def test_malformed_answers_are_retryable_errors(crusoe, emulator):
    emulator.inject("createCcrToken", status=None, malformed=True)
    with pytest.raises(CrusoeApiError, match="not a JSON object") as caught:
        crusoe.create_registry_token("a-20261128T000000Z-abcdef", datetime.now(UTC) + timedelta(hours=1))
    assert caught.value.retryable


def test_the_v1_prefix_signs_its_own_path(emulator):
    client = CrusoeClient(emulator.base_url_v1, StaticCredentials(KEY_ID, SecretStr(SECRET_KEY)), requests.Session())
    assert client.list_registry_tokens() == []


def test_unreachable_api_is_a_retryable_error(sleeps):
    client = CrusoeClient(
        "http://127.0.0.1:9/v1alpha5",
        StaticCredentials(KEY_ID, SecretStr(SECRET_KEY)),
        requests.Session(),
        backoff=Backoff(attempts=2, base_seconds=0.01),
        sleep=sleeps.append,
    )
    with pytest.raises(CrusoeApiError, match="no response") as caught:
        client.list_registry_tokens()
    assert caught.value.retryable
    assert len(sleeps) == 1


def fast_timeout_client(emulator, sleeps):
    return CrusoeClient(
        emulator.base_url,
        StaticCredentials(KEY_ID, SecretStr(SECRET_KEY)),
        requests.Session(),
        backoff=Backoff(attempts=3, base_seconds=0.01),
        timeout=(1.0, 0.3),
        sleep=sleeps.append,
    )


def test_a_timed_out_get_is_retried(emulator, sleeps):
    emulator.inject("getLimitedUsageAPIKeys", status=None, delay=0.6)
    assert fast_timeout_client(emulator, sleeps).list_registry_tokens() == []
    assert len(sleeps) == 1


def test_a_timed_out_post_may_have_minted_and_is_reported_retryable_without_a_retry(emulator, sleeps):
    emulator.inject("createCcrToken", status=None, delay=0.6)
    with pytest.raises(CrusoeApiError, match="no response") as caught:
        fast_timeout_client(emulator, sleeps).create_registry_token(
            "a-20261128T000000Z-abcdef", datetime.now(UTC) + timedelta(hours=1)
        )
    assert caught.value.retryable
    assert caught.value.status is None
    assert sleeps == []
    assert [k.alias for k in emulator.tokens()] == ["a-20261128T000000Z-abcdef"]  # the stray the rotation revokes


def test_delete_of_an_already_gone_key_counts_as_revoked(crusoe, emulator, sleeps):
    crusoe.delete_key("no-such-key+id/")
    assert [r.status for r in emulator.requests] == [404]
    assert sleeps == []


def test_an_error_carries_the_servers_retry_after(crusoe, emulator):
    emulator.inject("getLimitedUsageAPIKeys", status=429, retry_after=7, times=5)
    with pytest.raises(CrusoeApiError) as caught:
        crusoe.list_registry_tokens()
    assert caught.value.retry_after == 7


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        *[(None, True), (429, True), (500, True), (502, True), (503, True), (504, True)],
        *[(501, False), (400, False), (401, False), (403, False), (404, False), (409, False)],
    ],
)
def test_classify_retries_only_temporary_failures(status, retried):
    error = CrusoeApiError("getLimitedUsageAPIKeys", status=status, detail="x", retryable=retryable_status(status))
    assert classify(error) is retried
    assert error.retryable is retried


def test_classify_ignores_errors_of_other_clients():
    assert not classify(RotatorError("not an API answer", retryable=True))
