"""Caller verification: Google-style identity tokens signed by a local key, certificates served by a fake transport."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import flask
import pytest
from rotator.config import DEFAULT_INVOKER_CERTS_URL, InvokerPolicy, load_settings
from rotator.errors import BadRequestError, ConfigError, RotatorError, http_status
from rotator.handler import Handler
from rotator.invokers import CERTS_TTL_SECONDS, CachingRequest, CallerVerifier, bearer_token
from rotator.requests_guard import RequestGuard

from devkit.oidc import TokenIssuer
from tests.unit.test_handler import ENV, Connector

AUDIENCE = "https://rotator-abc123-ew.a.run.app"
SCHEDULER = "scheduler@demo-project.iam.gserviceaccount.com"
CERTS_URL = "https://certs.invalid/oauth2/v1/certs"
POLICY = InvokerPolicy(frozenset({SCHEDULER}), AUDIENCE, CERTS_URL)


@pytest.fixture(scope="module")
def issuer():
    return TokenIssuer("key-1")


@pytest.fixture(scope="module")
def stranger():
    """Another key that claims the same key id: a forged token."""
    return TokenIssuer("key-1")


@dataclass
class Response:
    status: int
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)


class FakeTransport:
    """google-auth's transport, answering the certificates URL from memory and counting the calls."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self.document = issuer.certs()
        self.status = 200
        self.calls: list[str] = []

    def __call__(self, url, **_):
        self.calls.append(url)
        return Response(self.status, json.dumps(self.document).encode())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def transport(issuer):
    return FakeTransport(issuer)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def verifier(transport, clock):
    return CallerVerifier(CachingRequest(transport, clock=clock))


def test_verifier_accepts_an_allowed_caller(verifier, issuer):
    token = issuer.identity_token(SCHEDULER.upper(), AUDIENCE)
    assert verifier.verify(f"Bearer {token}", POLICY) == SCHEDULER.upper()


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "bearer" + " x" * 3000, "Bearer tökén"]
)
def test_bearer_token_refuses_missing_or_impossible_tokens_with_401(authorization):
    with pytest.raises(BadRequestError) as caught:
        bearer_token(authorization)
    assert caught.value.status == 401
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        ({"aud": "https://someone-else.example"}, "not valid"),
        ({"exp": 1_000_000, "iat": 999_000}, "not valid"),  # expired long ago
        ({"iss": "https://evil.example"}, "not issued by Google"),
        ({"email_verified": False}, "no verified e-mail"),
        ({"email_verified": "true"}, "no verified e-mail"),
        ({"email_verified": None}, "no verified e-mail"),
        ({"email": None}, "no verified e-mail"),
    ],
)
def test_verifier_refuses_bad_claims_with_401(verifier, issuer, claims, match):
    claims = dict(claims)  # the parameter is shared between runs in one process (mutmut runs the tier twice)
    email = claims.pop("email", SCHEDULER)
    token = issuer.identity_token(email, AUDIENCE, **claims)
    with pytest.raises(BadRequestError, match=match) as caught:
        verifier.verify(f"Bearer {token}", POLICY)
    assert caught.value.status == 401


def test_verifier_refuses_a_forged_signature_and_an_unsigned_token_with_401(verifier, stranger, issuer, caplog):
    forged = stranger.identity_token(SCHEDULER, AUDIENCE)
    header, payload, _ = issuer.identity_token(SCHEDULER, AUDIENCE).split(".")
    unsigned = f"{header}.{payload}."
    for token in (forged, unsigned, "not-a-jwt", "a.b.c"):
        with caplog.at_level(logging.DEBUG), pytest.raises(BadRequestError) as caught:
            verifier.verify(f"Bearer {token}", POLICY)
        assert caught.value.status == 401
        assert token not in caught.value.message
        assert token not in caplog.text


def test_verifier_refuses_a_valid_token_of_another_caller_with_403(verifier, issuer):
    token = issuer.identity_token("intruder@demo-project.iam.gserviceaccount.com", AUDIENCE)
    with pytest.raises(BadRequestError, match=r"intruder@demo-project\.iam\.gserviceaccount\.com is not in") as caught:
        verifier.verify(f"Bearer {token}", POLICY)
    assert caught.value.status == 403
    assert http_status(caught.value) == 403


def test_verifier_cannot_fetch_certificates_is_a_retryable_failure(verifier, transport, issuer):
    transport.status = 503
    with pytest.raises(RotatorError, match="certificates could not be fetched") as caught:
        verifier.verify(f"Bearer {issuer.identity_token(SCHEDULER, AUDIENCE)}", POLICY)
    assert not isinstance(caught.value, BadRequestError)
    assert http_status(caught.value) == 503


def test_caching_request_fetches_certificates_once_per_ttl(verifier, transport, clock, issuer):
    token = f"Bearer {issuer.identity_token(SCHEDULER, AUDIENCE)}"
    for _ in range(5):
        verifier.verify(token, POLICY)
    assert transport.calls == [CERTS_URL]
    clock.now += CERTS_TTL_SECONDS + 1
    verifier.verify(token, POLICY)
    assert transport.calls == [CERTS_URL, CERTS_URL]


def test_caching_request_keeps_no_failed_fetch(verifier, transport, issuer):
    token = f"Bearer {issuer.identity_token(SCHEDULER, AUDIENCE)}"
    transport.status = 500
    with pytest.raises(RotatorError):
        verifier.verify(token, POLICY)
    transport.status = 200
    verifier.verify(token, POLICY)
    assert len(transport.calls) == 2


def screen(guard, settings, authorization=None, method="POST"):
    headers = {"Authorization": authorization} if authorization else {}
    with flask.Flask(__name__).test_request_context("/", method=method, headers=headers):
        guard.screen(flask.request, lambda: settings)


def test_guard_checks_the_caller_only_when_configured(verifier, issuer):
    guard = RequestGuard(verifier)
    screen(guard, load_settings(ENV))  # no policy: Google's front door decides
    settings = load_settings({**ENV, "ALLOWED_INVOKERS": SCHEDULER, "INVOKER_AUDIENCE": AUDIENCE})
    with pytest.raises(BadRequestError) as caught:
        screen(guard, settings)
    assert caught.value.status == 401


def test_guard_checks_the_route_before_the_caller(verifier):
    settings = load_settings({**ENV, "ALLOWED_INVOKERS": SCHEDULER, "INVOKER_AUDIENCE": AUDIENCE})
    with pytest.raises(BadRequestError) as caught:
        screen(RequestGuard(verifier), settings, method="DELETE")
    assert caught.value.status == 405


def test_handler_answers_401_without_a_token_and_builds_nothing():
    connector = Connector()
    handler = Handler({**ENV, "ALLOWED_INVOKERS": SCHEDULER, "INVOKER_AUDIENCE": AUDIENCE}, connector=connector)
    with flask.Flask(__name__).test_request_context("/", method="POST"):
        response = handler(flask.request)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="ccr-pull-secret-rotator"'
    assert response.get_json()["status"] == "failed"
    assert connector.asked == []


def test_load_settings_reads_the_invoker_policy():
    env = {**ENV, "ALLOWED_INVOKERS": f" {SCHEDULER}, Ops@Example.com ,", "INVOKER_AUDIENCE": AUDIENCE}
    policy = load_settings(env).invokers
    assert policy == InvokerPolicy(frozenset({SCHEDULER, "ops@example.com"}), AUDIENCE, DEFAULT_INVOKER_CERTS_URL)
    assert load_settings(ENV).invokers is None
    local = load_settings({**env, "INVOKER_CERTS_URL": "http://127.0.0.1:9999/oauth2/v1/certs"}).invokers
    assert local is not None
    assert local.certs_url == "http://127.0.0.1:9999/oauth2/v1/certs"


@pytest.mark.parametrize(
    ("extra", "variable", "match"),
    [
        ({"ALLOWED_INVOKERS": SCHEDULER}, "INVOKER_AUDIENCE", "required when ALLOWED_INVOKERS is set"),
        ({"INVOKER_AUDIENCE": AUDIENCE}, "ALLOWED_INVOKERS", "required when INVOKER_AUDIENCE is set"),
        ({"ALLOWED_INVOKERS": "scheduler, x@y.z", "INVOKER_AUDIENCE": AUDIENCE}, "ALLOWED_INVOKERS", "'scheduler'"),
        ({"ALLOWED_INVOKERS": ",", "INVOKER_AUDIENCE": AUDIENCE}, "ALLOWED_INVOKERS", "lists no e-mail"),
        ({"ALLOWED_INVOKERS": SCHEDULER, "INVOKER_AUDIENCE": "http://rotator.example"}, "INVOKER_AUDIENCE", "https"),
        ({"ALLOWED_INVOKERS": SCHEDULER, "INVOKER_AUDIENCE": "rotator"}, "INVOKER_AUDIENCE", "https"),
        (
            {"ALLOWED_INVOKERS": SCHEDULER, "INVOKER_AUDIENCE": AUDIENCE, "INVOKER_CERTS_URL": "http://certs.example"},
            "INVOKER_CERTS_URL",
            "loopback",
        ),
        ({"INVOKER_CERTS_URL": "https://certs.example"}, "INVOKER_CERTS_URL", "only with ALLOWED_INVOKERS"),
    ],
)
def test_load_settings_refuses_a_half_or_bad_invoker_policy(extra, variable, match):
    with pytest.raises(ConfigError) as caught:
        load_settings({**ENV, **extra})
    assert match in caught.value.problems[variable]
