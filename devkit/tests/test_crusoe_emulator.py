"""The Crusoe API emulator: its signature oracle, its Swagger-driven routing and validation, its faults.

These tests start the emulator on loopback (allowed in the unit tier for harness tests). They sign
requests with a minimal signer written here from crusoe_api/README.md, independent of both the emulator's own
verifier and the product's signer, and pin both to the published vectors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests

from devkit.crusoe_emulator import (
    AuthError,
    CrusoeEmulator,
    canonical_query,
    compute_signature,
    verify_request,
)
from devkit.signing_vectors import CANONICAL_QUERIES, SECRET_KEY, VECTORS
from devkit.swagger import load_specs

REPO = Path(__file__).resolve().parents[2]
SECRET = SECRET_KEY
ACCESS_KEY = "AKIDtest0123"
VECTOR_TIME = datetime(2025, 10, 1, 12, 0, tzinfo=UTC)


# -- a minimal, independent signer (crusoe_api/README.md, written again on purpose) ---------------------


def _sign(secret: str, method: str, path: str, canonical: str, timestamp: str) -> str:
    key = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    message = f"{path}\n{canonical}\n{method}\n{timestamp}\n".encode()
    return base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode().rstrip("=")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _headers(method, url, *, secret=SECRET, key=ACCESS_KEY, timestamp=None, canonical=None):
    """Sign ``url`` as sent; ``canonical`` defaults to the raw query (callers send sorted queries)."""
    parts = urlsplit(url)
    timestamp = timestamp or _now()
    signature = _sign(secret, method, parts.path, parts.query if canonical is None else canonical, timestamp)
    return {"X-Crusoe-Timestamp": timestamp, "Authorization": f"Bearer 1.0:{key}:{signature}"}


def _call(session, method, url, **kwargs):
    sign_opts = {k: kwargs.pop(k) for k in ("secret", "key", "timestamp", "canonical") if k in kwargs}
    headers = _headers(method, url, **sign_opts)
    return session.request(method, url, headers=headers, timeout=kwargs.pop("timeout", 5), **kwargs)


def _assert_error_body(response, status, message):
    body = response.json()
    assert set(body) == {"code", "message", "reason", "error_id"}
    assert body["code"] == str(status)
    assert body["message"] == message


@pytest.fixture
def api():
    with CrusoeEmulator() as emulator:
        emulator.add_api_key(ACCESS_KEY, SECRET)
        yield emulator
        assert emulator.contract_violations == []


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def _mint(http, api, alias="rot-1", base=None):
    expires = (datetime.now(UTC) + timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _call(http, "POST", (base or api.base_url) + "/ccr/tokens", json={"alias": alias, "expires_at": expires})


def _list(http, api, base=None):
    return _call(http, "GET", (base or api.base_url) + "/users/limited-usage-api-key")


# -- the oracle, offline --------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "query", "timestamp", "expected"), VECTORS)
def test_compute_signature_matches_every_published_vector(method, path, query, timestamp, expected):
    assert compute_signature(SECRET, path, query, method, timestamp) == expected
    # The test's own signer agrees, so the server tests below sign correctly.
    assert _sign(SECRET, method, path, canonical_query(query), timestamp) == expected


def test_canonical_query_of_the_published_example():
    assert canonical_query("b=2&a=hello world&a=1") == "a=hello+world&a=1&b=2"


@pytest.mark.parametrize(("raw", "canonical"), CANONICAL_QUERIES)
def test_canonical_query_reencodes_as_form_encoding(raw, canonical):
    assert canonical_query(raw) == canonical


def _verify(method, path, query, timestamp, signature, *, now=VECTOR_TIME):
    return verify_request(
        method=method,
        path=path,
        raw_query=query,
        authorization=f"Bearer 1.0:{ACCESS_KEY}:{signature}",
        timestamp=timestamp,
        secret_for={ACCESS_KEY: SECRET}.get,
        now=now,
    )


@pytest.mark.parametrize(("method", "path", "query", "timestamp", "expected"), VECTORS[:5])
def test_verify_request_accepts_the_sorted_vectors(method, path, query, timestamp, expected):
    assert _verify(method, path, query, timestamp, expected) == ACCESS_KEY


def test_verify_request_rejects_the_unsorted_vector_but_accepts_it_sent_sorted():
    _, path, raw, timestamp, signature = VECTORS[5]
    with pytest.raises(AuthError, match="not sorted"):
        _verify("GET", path, raw, timestamp, signature)
    assert _verify("GET", path, "a=hello+world&a=1&b=2", timestamp, signature) == ACCESS_KEY


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"method": "GET"}, "signature mismatch"),
        ({"path": "/v1/ccr/tokens"}, "signature mismatch"),
        ({"timestamp": "2025-10-01T12:00:01Z"}, "signature mismatch"),
        ({"signature": "uY_z7R2GzWzu5M-qrp2N_BoYo_HUTwCl7EMn4KsI8h4="}, "signature mismatch"),
        ({"timestamp": "2025-10-01 12:00:00Z"}, "RFC 3339"),
        ({"timestamp": "2025-10-01T12:00:00"}, "RFC 3339"),
        ({"query": "a=1;b=2"}, "';'"),
        ({"query": "a=%zz"}, "escape"),
        ({"now": VECTOR_TIME + timedelta(minutes=5, seconds=1)}, "too far"),
        ({"now": VECTOR_TIME - timedelta(minutes=5, seconds=1)}, "too far"),
    ],
)
def test_verify_request_rejects(change, reason):
    args = {
        "method": "POST",
        "path": "/v1alpha5/ccr/tokens",
        "query": "",
        "timestamp": "2025-10-01T12:00:00Z",
        "signature": VECTORS[0][4],
        "now": VECTOR_TIME,
    } | change
    now = args.pop("now")
    with pytest.raises(AuthError, match=reason):
        _verify(*args.values(), now=now)


def test_verify_request_tolerates_skew_up_to_five_minutes():
    late = VECTOR_TIME + timedelta(minutes=4, seconds=59)
    assert _verify("POST", "/v1alpha5/ccr/tokens", "", VECTORS[0][3], VECTORS[0][4], now=late) == ACCESS_KEY


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Basic abc",
        "Bearer 2.0:AKIDtest0123:sig",
        "Bearer 1.0:sig",
        f"Bearer 1.0:someone-else:{VECTORS[0][4]}",
    ],
)
def test_verify_request_rejects_malformed_or_unknown_authorization(authorization):
    with pytest.raises(AuthError):
        verify_request(
            method="POST",
            path="/v1alpha5/ccr/tokens",
            raw_query="",
            authorization=authorization,
            timestamp="2025-10-01T12:00:00Z",
            secret_for={ACCESS_KEY: SECRET}.get,
            now=VECTOR_TIME,
        )


# -- the Swagger contract -----------------------------------------------------------------


def test_swagger_provides_the_three_operations_on_both_prefixes():
    specs = load_specs()
    assert set(specs) == {"/v1alpha5", "/v1"}
    for spec in specs.values():
        assert spec.operations["createCcrToken"].method == "POST"
        assert spec.operations["createCcrToken"].path == "/ccr/tokens"
        assert spec.operations["getLimitedUsageAPIKeys"].path == "/users/limited-usage-api-key"
        delete = spec.operations["deleteLimitedUsageAPIKey"]
        assert [(p.name, p.location, p.required) for p in delete.parameters] == [("key_id", "query", True)]


def test_swagger_validator_accepts_registry_usage_and_rejects_bad_shapes():
    spec = load_specs()["/v1alpha5"]
    schema = spec.operations["getLimitedUsageAPIKeys"].response_schema(200)
    item = {
        "alias": "a",
        "key_id": "k+/",
        "created_at": "2026-01-01T00:00:00Z",
        "expires_at": "2026-01-02T00:00:00Z",
        "last_used": "",
        "usage": "registry",
    }
    assert spec.validate(schema, {"items": [item]}) == []
    assert spec.validate(schema, {}) == ["$: missing required 'items'"]
    assert spec.validate(schema, {"items": [item | {"usage": "mining"}]}) != []
    assert spec.validate(schema, {"items": [{k: v for k, v in item.items() if k != "key_id"}]}) != []
    body = spec.operations["createCcrToken"].body_schema
    assert spec.validate(body, {"alias": "x", "expires_at": "2026-01-01T00:00:00Z"}) == []
    assert spec.validate(body, {"alias": 3}) == ["$.alias: expected string, got int"]


# -- the server ----------------------------------------------------------------------------


def test_emulator_mints_lists_and_deletes_a_token(api, http):
    minted = _mint(http, api, "rot-20261128-abc")
    assert minted.status_code == 200
    assert set(minted.json()) == {"token"}
    token = minted.json()["token"]
    listed = _list(http, api)
    assert listed.status_code == 200
    (item,) = listed.json()["items"]
    assert item["alias"] == "rot-20261128-abc"
    assert item["usage"] == "registry"
    assert "token" not in item
    assert token not in listed.text
    assert api.tokens()[0].token == token
    url = f"{api.base_url}/users/limited-usage-api-key?key_id={quote(item['key_id'], safe='')}"
    deleted = _call(http, "DELETE", url)
    assert deleted.status_code == 200
    assert deleted.content == b""
    assert api.tokens() == []
    assert [k.key_id for k in api.deleted()] == [item["key_id"]]


def test_emulator_serves_the_v1_prefix_too(api, http):
    assert _mint(http, api, base=api.base_url_v1).status_code == 200
    assert len(_list(http, api, base=api.base_url_v1).json()["items"]) == 1
    assert api.base_url.endswith("/v1alpha5")


def test_emulator_key_ids_exercise_escaping_and_tokens_are_unique(api, http):
    for n in range(6):
        assert _mint(http, api, f"rot-{n}").status_code == 200
    keys = api.tokens()
    assert any("+" in k.key_id and "/" in k.key_id for k in keys)
    assert len({k.token for k in keys}) == 6
    assert all(len(k.token) >= 40 for k in keys)


def test_emulator_delete_with_an_unescaped_plus_misses_the_key(api, http):
    key = api.seed_token("rot-old", key_id="Hm11C1coQZm2+Aihn9ofYg")
    raw = f"{api.base_url}/users/limited-usage-api-key?key_id={key.key_id}"
    response = _call(http, "DELETE", raw)
    assert response.status_code == 404
    _assert_error_body(response, 404, "not_found")
    assert [k.key_id for k in api.tokens()] == [key.key_id]


def test_emulator_rejects_a_bad_signature_with_the_api_error_body(api, http):
    response = _call(http, "POST", api.base_url + "/ccr/tokens", json={}, secret="AAAAAAAAAAAAAAAAAAAAAA")
    assert response.status_code == 401
    _assert_error_body(response, 401, "bad_credential")
    assert api.tokens() == []


def test_emulator_rejects_an_unknown_access_key(api, http):
    response = _call(http, "GET", api.base_url + "/users/limited-usage-api-key", key="nobody")
    assert response.status_code == 401
    _assert_error_body(response, 401, "bad_credential")


def test_emulator_rejects_unsigned_requests(api, http):
    response = http.get(api.base_url + "/users/limited-usage-api-key", timeout=5)
    assert response.status_code == 401
    _assert_error_body(response, 401, "bad_credential")


@pytest.mark.parametrize("minutes", [6, -6])
def test_emulator_rejects_stale_or_future_timestamps(api, http, minutes):
    stamp = (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = _call(http, "GET", api.base_url + "/users/limited-usage-api-key", timestamp=stamp)
    assert response.status_code == 401
    _assert_error_body(response, 401, "bad_credential")


def test_emulator_accepts_a_plus_zero_offset_timestamp(api, http):
    stamp = datetime.now(UTC).replace(microsecond=0).isoformat()
    assert stamp.endswith("+00:00")
    assert _call(http, "GET", api.base_url + "/users/limited-usage-api-key", timestamp=stamp).status_code == 200


def test_emulator_rejects_an_unsorted_query_even_when_correctly_signed(api, http):
    key = api.seed_token("rot-old")
    escaped = quote(key.key_id, safe="")
    unsorted = f"{api.base_url}/users/limited-usage-api-key?key_id={escaped}&alpha=1"
    canonical = f"alpha=1&key_id={escaped}"
    response = _call(http, "DELETE", unsorted, canonical=canonical)
    assert response.status_code == 401
    _assert_error_body(response, 401, "bad_credential")
    assert "not sorted" in response.json()["reason"]
    sorted_url = f"{api.base_url}/users/limited-usage-api-key?{canonical}"
    assert _call(http, "DELETE", sorted_url).status_code == 200


def test_emulator_answers_404_405_and_501_from_the_swagger_routes(api, http):
    unknown = _call(http, "GET", api.base_url + "/no/such/thing")
    assert unknown.status_code == 404
    _assert_error_body(unknown, 404, "not_found")
    outside = http.get(api.origin + "/v2/ccr/tokens", timeout=5)
    assert outside.status_code == 404
    _assert_error_body(outside, 404, "not_found")
    wrong_method = _call(http, "PUT", api.base_url + "/ccr/tokens")
    assert wrong_method.status_code == 405
    documented = _call(http, "GET", api.base_url + "/compute/images/some-image-id")
    assert documented.status_code == 501
    _assert_error_body(documented, 501, "not_implemented")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"alias": 5}', "expected string"),
        (b'{"alias": "a", "expires_at": "tomorrow"}', "RFC 3339"),
        (b'{"alias": "a", "expires_at": "2020-01-01T00:00:00Z"}', "past"),
        (b"{not json", "not JSON"),
        (b'["alias"]', "expected object"),
    ],
)
def test_emulator_validates_the_create_body_against_the_swagger(api, http, body, reason):
    response = http.post(
        api.base_url + "/ccr/tokens",
        data=body,
        headers=_headers("POST", api.base_url + "/ccr/tokens") | {"Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 400
    _assert_error_body(response, 400, "bad_request")
    assert reason in response.json()["reason"]
    assert api.tokens() == []


def test_emulator_requires_the_key_id_parameter(api, http):
    response = _call(http, "DELETE", api.base_url + "/users/limited-usage-api-key")
    assert response.status_code == 400
    assert "key_id" in response.json()["reason"]


def test_emulator_create_without_expiry_gets_about_three_months(api, http):
    assert _call(http, "POST", api.base_url + "/ccr/tokens", json={"alias": "x"}).status_code == 200
    expires = datetime.fromisoformat(api.tokens()[0].expires_at)
    assert timedelta(days=85) < expires - datetime.now(UTC) < timedelta(days=95)


def test_emulator_injects_a_503_once(api, http):
    api.inject("createCcrToken", status=503)
    failed = _mint(http, api)
    assert failed.status_code == 503
    _assert_error_body(failed, 503, "service_unavailable")
    assert api.tokens() == []
    assert _mint(http, api).status_code == 200


def test_emulator_injects_429_with_retry_after_by_method_and_path(api, http):
    api.inject("GET /users/limited-usage-api-key", status=429, times=2, retry_after=3)
    for _ in range(2):
        response = _list(http, api)
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "3"
        _assert_error_body(response, 429, "too_many_requests")
    assert _list(http, api).status_code == 200


def test_emulator_faults_never_mask_a_bad_signature(api, http):
    api.inject("*", status=503)
    assert _call(http, "GET", api.base_url + "/users/limited-usage-api-key", secret="A" * 22).status_code == 401
    assert _list(http, api).status_code == 503


def test_emulator_malformed_json_still_mints(api, http):
    api.inject("createCcrToken", status=None, malformed=True)
    response = _mint(http, api)
    assert response.status_code == 200
    with pytest.raises(ValueError, match=r".*"):
        json.loads(response.content)
    assert len(api.tokens()) == 1


def test_emulator_delay_outlasts_a_client_timeout_and_the_post_still_mints(api, http):
    api.inject("createCcrToken", status=None, delay=2.0)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        _call(http, "POST", api.base_url + "/ccr/tokens", json={"alias": "slow"}, timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert [k.alias for k in api.tokens()] == ["slow"]


def test_emulator_handles_concurrent_clients(api):
    def work(n):
        with requests.Session() as session:
            return _mint(session, api, f"rot-{n}").status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert list(pool.map(work, range(48))) == [200] * 48
    assert len({k.key_id for k in api.tokens()}) == 48


def test_emulator_seed_tokens_and_request_log_hold_no_credentials(api, http):
    old = api.seed_token("rot-old", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    foreign = api.seed_token("someone-else", usage="inference", created_at="2025-06-01T00:00:00Z")
    items = {i["alias"]: i for i in _list(http, api).json()["items"]}
    assert items["rot-old"]["created_at"] == "2026-01-01T00:00:00Z"
    assert items["someone-else"]["usage"] == "inference"
    assert [k.alias for k in api.tokens()] == ["someone-else", "rot-old"]
    _call(http, "GET", api.base_url + "/users/limited-usage-api-key", secret="A" * 22)
    log = repr(api.requests)
    assert api.requests[0] == ("GET", "/v1alpha5/users/limited-usage-api-key", "", 200)
    assert api.requests[1].status == 401
    for secret in (SECRET, "Bearer", "1.0:", old.token, foreign.token):
        assert secret not in log


def test_emulator_reset_forgets_state_but_keeps_credentials(api, http):
    api.seed_token("x")
    api.inject("*", status=500, times=5)
    api.reset()
    assert api.tokens() == []
    assert api.requests == []
    assert _list(http, api).status_code == 200


def test_emulator_control_surface(api, http):
    api.seed_token("seeded")
    tokens = http.get(api.control_url + "/tokens", timeout=5).json()["items"]
    assert [t["alias"] for t in tokens] == ["seeded"]
    assert tokens[0]["token"].startswith("ccr_")
    assert http.post(api.control_url + "/inject", json={"target": "createCcrToken", "status": 500}, timeout=5).ok
    assert _mint(http, api).status_code == 500
    requests_log = http.get(api.control_url + "/requests", timeout=5).json()["items"]
    assert requests_log == [{"method": "POST", "path": "/v1alpha5/ccr/tokens", "query": "", "status": 500}]
    assert http.post(api.control_url + "/reset", timeout=5).ok
    assert http.get(api.control_url + "/tokens", timeout=5).json() == {"items": []}


def test_emulator_binds_loopback_only():
    with pytest.raises(ValueError, match="loopback"):
        CrusoeEmulator(host="0.0.0.0")  # noqa: S104 - the point of the test


def test_emulator_cli_prints_its_url_and_stops_on_sigterm():
    env = os.environ | {"CRUSOE_SECRET_KEY": SECRET}
    process = subprocess.Popen(
        [sys.executable, "-m", "devkit.crusoe_emulator", "--port", "0", "--access-key-id", ACCESS_KEY],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = json.loads(process.stdout.readline())
        assert ready["base_url"].startswith("http://127.0.0.1:")
        assert ready["base_url"].endswith("/v1alpha5")
        assert SECRET not in json.dumps(ready)
        with requests.Session() as session:
            assert _call(session, "GET", ready["base_url"] + "/users/limited-usage-api-key").json() == {"items": []}
            assert session.get(ready["control_url"] + "/requests", timeout=5).json()["items"][0]["status"] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        process.stdout.close()


def test_every_swagger_operation_is_routable():
    for spec in load_specs().values():
        assert len(spec.operations) > 100
        for operation in spec.operations.values():
            concrete = re.sub(r"\{[^}]+\}", "some-id", operation.path)
            found, _ = spec.match(operation.method, concrete)
            assert found is not None
            assert (found.method, found.path) == (operation.method, operation.path)


def test_emulator_turns_its_own_errors_into_a_500_and_a_violation(monkeypatch):
    with CrusoeEmulator() as emulator, requests.Session() as session:
        emulator.add_api_key(ACCESS_KEY, SECRET)

        def broken(*_args):
            raise RuntimeError("boom")

        monkeypatch.setattr(emulator, "_perform", broken)
        response = _call(session, "GET", emulator.base_url + "/users/limited-usage-api-key")
        assert response.status_code == 500
        _assert_error_body(response, 500, "internal_error")
        assert "boom" in emulator.contract_violations[0]


# -- interleavings and the registry's login check (issue 9) -----------------------------------------------


def test_emulator_hold_performs_the_mint_and_holds_its_answer_until_released(api, http):
    gate = api.hold("createCcrToken")
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(_mint, http, api, "held")
        assert gate.arrived.wait(10)
        assert [key.alias for key in api.tokens()] == ["held"]  # minted while the answer is in flight
        assert not pending.done()
        gate.release()
        assert pending.result(timeout=10).status_code == 200
    assert _mint(http, api, "next").status_code == 200  # the hold took one request only


@pytest.mark.parametrize(("reset", "minted"), [("before", []), ("after", ["lost"])])
def test_emulator_reset_drops_the_connection_before_or_after_minting(api, http, reset, minted):
    api.inject("createCcrToken", reset=reset)
    with pytest.raises(requests.ConnectionError):
        _mint(http, api, "lost")
    assert [key.alias for key in api.tokens()] == minted
    assert api.requests[-1].status == 0


def test_emulator_login_check_knows_live_revoked_and_expired_tokens(api, http):
    assert _mint(http, api, "live").status_code == 200
    live = api.tokens()[0]
    expired = api.seed_token("old", created_at=datetime.now(UTC) - timedelta(days=2), expires_at=datetime.now(UTC))
    revoked = api.seed_token("revoked")
    api.delete_key(revoked.key_id)
    assert api.is_live(live.token)
    assert not api.is_live(expired.token)
    assert not api.is_live(revoked.token)
    assert not api.is_live("ccr_never-issued")
    basic = base64.b64encode(f"someone:{live.token}".encode()).decode()
    assert (
        http.get(api.registry_url + "/v2/", headers={"Authorization": f"Basic {basic}"}, timeout=5).status_code == 200
    )
    assert http.get(api.registry_url + "/v2/", timeout=5).status_code == 401
    pull = http.post(api.control_url + "/pull", json={"token": revoked.token}, timeout=5)
    assert pull.json() == {"live": False}
    assert api.login_checks == 6  # the request without credentials never reaches the check


def test_emulator_control_surface_holds_and_releases(api, http):
    assert http.post(api.control_url + "/hold", json={"target": "createCcrToken"}, timeout=5).json() == {"hold": 0}
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(_mint, http, api, "held")
        while not http.get(api.control_url + "/holds", timeout=5).json()["items"][0]["arrived"]:
            time.sleep(0.01)
        http.post(api.control_url + "/release", json={}, timeout=5)
        assert pending.result(timeout=10).status_code == 200
