"""Secret Manager reads through a fake session: what is retried, what is not, and what the caller sees."""

from __future__ import annotations

import base64
import json

import google_crc32c
import pytest
import requests
from rotator.errors import ApiError, RotatorError, SecretStoreError
from rotator.retry import Backoff
from rotator.secretstore import SecretManager, classify

VERSION = "projects/p/secrets/kubeconfig/versions/latest"
PAYLOAD = b"apiVersion: v1\nkind: Config\n"


class RawBody:
    """The part of urllib3's response that bounded reads use."""

    def __init__(self, data):
        self.data = data

    def read(self, amount, decode_content):
        assert decode_content
        chunk, self.data = self.data[:amount], self.data[amount:]
        return chunk

    def close(self):
        pass


def answer(status, body=None, headers=None, raw=None):
    response = requests.Response()
    response.status_code = status
    response.raw = RawBody(raw if raw is not None else json.dumps(body if body is not None else {}).encode())
    response.headers.update(headers or {})
    return response


def good():
    data = base64.b64encode(PAYLOAD).decode()
    return answer(200, {"name": VERSION, "payload": {"data": data, "dataCrc32c": str(google_crc32c.value(PAYLOAD))}})


class FakeSession:
    """Plays back answers (or raises transport errors) in order and records what was asked."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.urls = []

    def mount(self, prefix, adapter):
        pass

    def request(self, method, url, *, timeout, stream, allow_redirects, headers, json):
        assert (method, stream, allow_redirects, json) == ("GET", True, False, None)
        assert headers["Accept-Encoding"] == "identity"
        assert timeout
        self.urls.append(url)
        next_answer = self.answers.pop(0)
        if isinstance(next_answer, Exception):
            raise next_answer
        return next_answer


def manager(session, sleeps, attempts=3):
    return SecretManager(
        "http://127.0.0.1:1", session, backoff=Backoff(attempts=attempts, base_seconds=0.01), sleep=sleeps.append
    )


@pytest.mark.parametrize(
    "failure",
    [answer(500), answer(503), answer(429, headers={"Retry-After": "2"}), requests.ConnectionError("refused")],
)
def test_secret_manager_read_is_retried_on_5xx_429_and_transport_errors(failure):
    sleeps = []
    session = FakeSession(failure, good())
    assert manager(session, sleeps).access(VERSION) == PAYLOAD
    assert len(session.urls) == 2
    assert session.urls[0] == f"http://127.0.0.1:1/v1/{VERSION}:access"
    assert len(sleeps) == 1


def test_secret_manager_honours_retry_after():
    sleeps = []
    manager(FakeSession(answer(429, headers={"Retry-After": "2"}), good()), sleeps).access(VERSION)
    assert sleeps == [2.0]


def test_secret_manager_gives_up_with_a_retryable_secret_store_error():
    sleeps = []
    session = FakeSession(answer(503), answer(503), answer(503))
    with pytest.raises(SecretStoreError, match="HTTP 503") as caught:
        manager(session, sleeps).access(VERSION)
    assert caught.value.retryable
    assert len(session.urls) == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize(("status", "match"), [(403, "secretAccessor"), (401, "secretAccessor"), (404, "does not")])
def test_secret_manager_permanent_answers_are_not_retried(status, match):
    sleeps = []
    session = FakeSession(answer(status))
    with pytest.raises(SecretStoreError, match=match) as caught:
        manager(session, sleeps).access(VERSION)
    assert not caught.value.retryable
    assert sleeps == []


def test_secret_manager_refuses_a_payload_that_fails_its_checksum():
    body = {"payload": {"data": base64.b64encode(PAYLOAD).decode(), "dataCrc32c": "1"}}
    with pytest.raises(SecretStoreError, match="CRC32C"):
        manager(FakeSession(answer(200, body)), []).access(VERSION)


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ApiError("x", status=None, retryable=True), True),
        (ApiError("x", status=429, retryable=True), True),
        (ApiError("x", status=500, retryable=True), True),
        (ApiError("x", status=501, retryable=True), True),
        (ApiError("x", status=403, retryable=False), False),
        (SecretStoreError("malformed", retryable=True), False),
        (RotatorError("x", retryable=True), False),
    ],
)
def test_secret_manager_classify(error, retried):
    assert classify(error) is retried
