"""Hostile and mistaken HTTP input: every refusal is a JSON 4xx, and nothing is built, read or written."""

from __future__ import annotations

import io
import json

import flask
import pytest
from rotator.errors import BadRequestError
from rotator.handler import Handler
from rotator.requests_guard import MAX_BODY_BYTES, MAX_JSON_DEPTH, check_body, check_route, json_depth, read_capped
from werkzeug.test import EnvironBuilder

from tests.unit.test_handler import ENV, Connector


class CountingStream(io.RawIOBase):
    """A request body of ``size`` bytes that counts how many were read, as a socket would deliver them."""

    def __init__(self, size: int, byte: bytes = b" ") -> None:
        self.remaining = size
        self.byte = byte
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = min(len(buffer), self.remaining, 4096)
        buffer[:size] = self.byte * size
        self.remaining -= size
        self.read_bytes += size
        return size


@pytest.fixture
def connector():
    return Connector()


@pytest.fixture
def handler(connector):
    return Handler(ENV, connector=connector)


def call(handler, method="POST", path="/", data=b"", headers=None, environ=None):
    builder = EnvironBuilder(path=path, method=method, data=data, headers=headers or {})
    env = {**builder.get_environ(), **(environ or {})}
    with flask.Flask(__name__).request_context(env):
        return handler(flask.request)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/", None), ("POST", "/", None), ("POST", "/rotate", 404), ("GET", "//", 404), ("PUT", "/", 405)],
)
def test_check_route_allows_get_and_post_on_root_only(method, path, status):
    if status is None:
        check_route(method, path)
        return
    with pytest.raises(BadRequestError) as caught:
        check_route(method, path)
    assert caught.value.status == status


@pytest.mark.parametrize("size", [0, 1, MAX_BODY_BYTES])
def test_read_capped_reads_bodies_up_to_the_cap(size):
    assert read_capped(io.BufferedReader(CountingStream(size)), None) == b" " * size


def test_read_capped_refuses_a_chunked_body_after_one_byte_past_the_cap():
    stream = CountingStream(50 * MAX_BODY_BYTES)
    with pytest.raises(BadRequestError) as caught:
        read_capped(stream, None)
    assert caught.value.status == 413
    assert stream.read_bytes == MAX_BODY_BYTES + 1


def test_read_capped_refuses_a_large_content_length_without_reading():
    stream = CountingStream(MAX_BODY_BYTES + 1)
    with pytest.raises(BadRequestError, match="larger than 65536 bytes") as caught:
        read_capped(stream, MAX_BODY_BYTES + 1)
    assert caught.value.status == 413
    assert stream.read_bytes == 0


@pytest.mark.parametrize(
    ("raw", "depth"),
    [(b"{}", 1), (b'{"a": [1, {"b": []}]}', 4), (b'{"a": "[[[[{{{"}', 1), (b'{"a": "\\"[["}', 1), (b"[" * 99, 99)],
)
def test_json_depth_counts_nesting_outside_strings(raw, depth):
    assert json_depth(raw) == depth


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "application/octet-stream",
        "text/plain",
        "multipart/form-data",
    ],
)
def test_check_body_accepts_an_empty_body_with_any_or_no_type(content_type):
    check_body(b"", content_type)
    check_body(b"  \n", content_type)


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "Application/JSON; charset=utf-8", "application/octet-stream"]
)
def test_check_body_accepts_json_sent_as_json_octets_or_untyped(content_type):
    check_body(b'{"dry_run": true}', content_type)


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "match"),
    [
        (b'{"dry_run": true}', "application/x-www-form-urlencoded", 415, "--json"),
        (b'{"dry_run": true}', "text/plain; charset=utf-8", 415, "application/json"),
        (b'{"dry_run": true}', "multipart/form-data; boundary=x", 415, "not multipart/form-data"),
        (b"dry_run=true", None, 400, "not valid JSON"),
        (b"\xff\xfe\x00", "application/json", 400, "not valid JSON"),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), None, 400, "nests deeper"),
        (b"[" * MAX_BODY_BYTES, None, 400, "nests deeper"),  # json.loads alone raises RecursionError
    ],
)
def test_check_body_refuses(raw, content_type, status, match):
    with pytest.raises(BadRequestError, match=match) as caught:
        check_body(raw, content_type)
    assert caught.value.status == status


HOSTILE = [
    pytest.param({"method": "HEAD"}, 405, {"Allow": "GET, POST"}, id="HEAD"),
    pytest.param({"method": "OPTIONS"}, 405, {"Allow": "GET, POST"}, id="OPTIONS"),
    pytest.param({"method": "DELETE"}, 405, {"Allow": "GET, POST"}, id="DELETE"),
    pytest.param({"method": "TRACE"}, 405, {"Allow": "GET, POST"}, id="TRACE"),
    pytest.param({"path": "/admin"}, 404, {}, id="other-path"),
    pytest.param({"method": "GET", "path": "/robots.txt"}, 404, {}, id="GET-other-path"),
    pytest.param({"data": b"x" * (MAX_BODY_BYTES + 1)}, 413, {}, id="too-large"),
    pytest.param({"method": "GET", "data": b"x" * (MAX_BODY_BYTES + 1)}, 413, {}, id="GET-too-large"),
    pytest.param({"data": b"<xml/>"}, 400, {}, id="not-json"),
    pytest.param({"data": b"[" * 5000}, 400, {}, id="deep-json"),
    pytest.param({"data": b'{"force": true}'}, 400, {}, id="unknown-field"),
    pytest.param(
        {"data": b'{"dry_run": true}', "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        415,
        {},
        id="json-as-form",
    ),
]


@pytest.mark.parametrize(("request_args", "status", "headers"), HOSTILE)
def test_handler_refuses_hostile_input_with_json_and_no_side_effect(handler, connector, request_args, status, headers):
    response = call(handler, **request_args)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    for name, value in headers.items():
        assert response.headers[name] == value
    if request_args.get("method") != "HEAD":  # the server drops a HEAD answer's body; its headers still say JSON
        body = json.loads(response.get_data())
        assert body["status"] == "failed"
        assert body["error"]
        assert "Traceback" not in body["error"]
    assert connector.asked == []  # no client built, so no secret read, no token minted, nothing written
    assert connector.cluster.journal.entries == []


def test_handler_caps_a_chunked_body_and_reads_no_further(handler, connector):
    stream = CountingStream(20 * MAX_BODY_BYTES, b"{")
    response = call(handler, environ={"wsgi.input": stream, "wsgi.input_terminated": True})
    assert response.status_code == 413
    assert stream.read_bytes == MAX_BODY_BYTES + 1
    assert connector.asked == []


def test_handler_reads_a_chunked_dry_run_body(handler, connector):
    body = b'{"dry_run": true}'
    stream = io.BufferedReader(io.BytesIO(body))  # type: ignore[arg-type]
    response = call(handler, environ={"wsgi.input": stream, "wsgi.input_terminated": True})
    assert response.status_code == 200
    assert response.get_json()["dry_run"] is True
    assert connector.asked == [True]  # a dry run proves the Crusoe key with a signed read


@pytest.mark.parametrize(
    "content_type", [None, "application/octet-stream", "application/x-www-form-urlencoded", "text/plain"]
)
def test_handler_rotates_on_an_empty_body_of_any_type(handler, connector, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = call(handler, headers=headers)
    assert response.status_code == 200, response.get_data()
    assert connector.asked == [True]


def test_handler_plans_on_a_json_body_sent_as_octets(handler, connector):
    response = call(handler, data=b'{"dry_run": true}', headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 200
    assert response.get_json()["dry_run"] is True
    assert connector.asked == [True]  # a dry run proves the Crusoe key with a signed read


def test_handler_refuses_methods_before_reading_the_configuration(connector):
    handler = Handler({**ENV, "REGISTRY_URL": ""}, connector=connector)
    assert call(handler, "PUT").status_code == 405
    assert call(handler, "POST").status_code == 500  # the configuration error, naming the variable
