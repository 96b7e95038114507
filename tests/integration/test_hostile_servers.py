"""The three HTTP clients against hostile servers on loopback: dripping, huge, redirecting answers.

Each client must end a call at its total deadline however slowly the server sends, read no more than its
cap, copy no more than a short printable excerpt of an answer into an error, and never follow a redirect.
"""

from __future__ import annotations

import contextlib
import json
import socketserver
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from rotator import kube, secretstore
from rotator.config import StaticCredentials
from rotator.crusoe import CrusoeClient
from rotator.errors import CrusoeApiError, KubeError, SecretStoreError
from rotator.kube import KubeClient
from rotator.kubeconfig import ClusterAccess
from rotator.retry import Backoff
from rotator.secret import SecretStr
from rotator.secretstore import SecretManager

pytestmark = pytest.mark.integration

ONCE = Backoff(attempts=1)
TIMEOUT = (1.0, 1.5)  # each read may wait 1.5 s (longer than the drip's 1 s), the whole call 2.5 s
DEADLINE = sum(TIMEOUT)


class HostileServer(socketserver.ThreadingTCPServer):
    """Answers every request with ``behaviour(connection)``; records each request it read."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, behaviour):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour
        self.requests = []
        self.stopped = threading.Event()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(socketserver.StreamRequestHandler):
    def handle(self):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            head += chunk
        header, _, body = head.partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in header.split(b"\r\n") if line.lower().startswith(b"content-length")),
            0,
        )
        while len(body) < length:
            body += self.request.recv(65536)
        self.server.requests.append((header.split(b"\r\n")[0].decode(), body))
        with contextlib.suppress(OSError):  # the client gave up: that is the point
            self.server.behaviour(self.request, self.server.stopped)


def drip(data):
    def behaviour(sock, stopped):
        for byte in data:
            sock.sendall(bytes([byte]))
            if stopped.wait(1.0):  # one byte per second: every read gets something before its timeout
                return

    return behaviour


BODY_DRIP = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n" + b" " * 200
HEADER_DRIP = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 200


def fixed(status_line, headers, body):
    raw = f"HTTP/1.1 {status_line}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n".encode()
    raw += "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode() + b"\r\n" + body

    def behaviour(sock, _stopped):
        sock.sendall(raw)

    return behaviour


@pytest.fixture
def serve():
    servers = []

    def start(behaviour):
        server = HostileServer(behaviour)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stopped.set()
        server.shutdown()
        server.server_close()


def crusoe(url):
    credentials = StaticCredentials("key-id", SecretStr("c2VjcmV0LWtleS0wMTIzNDU2Nzg5"))
    return CrusoeClient(url, credentials, requests.Session(), backoff=ONCE, timeout=TIMEOUT)


def cluster(url):
    access = ClusterAccess(
        url,
        None,
        insecure_skip_tls_verify=False,
        tls_server_name=None,
        client_cert_pem=None,
        client_key_pem=None,
        token=SecretStr("kube-token-0123456789"),
    )
    return KubeClient(access, pool_size=1, backoff=ONCE)


@pytest.fixture
def short_timeouts(monkeypatch):
    monkeypatch.setattr(secretstore, "TIMEOUT", TIMEOUT)
    monkeypatch.setattr(kube, "TIMEOUT", TIMEOUT)


CALLS = {
    "crusoe": (lambda url: crusoe(url).list_registry_tokens(), CrusoeApiError),
    "secret manager": (
        lambda url: SecretManager(url, requests.Session(), backoff=ONCE).access("projects/p/secrets/s/versions/1"),
        SecretStoreError,
    ),
    "kube": (lambda url: cluster(url).read_secret("ns", "pull"), KubeError),
}


@pytest.mark.parametrize("answer", [BODY_DRIP, HEADER_DRIP], ids=["body", "headers"])
@pytest.mark.parametrize("client", CALLS)
def test_a_dripping_server_cannot_hold_a_call_past_its_deadline(serve, short_timeouts, client, answer):
    call, error = CALLS[client]
    server = serve(drip(answer))
    started = time.monotonic()
    with pytest.raises(error) as caught:
        call(server.url)
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + 1, f"held for {elapsed:.1f} s"
    assert elapsed >= DEADLINE - 0.1
    if client != "kube":  # the kube client names the cut-off answer, not the deadline
        assert "no complete answer within 2.5 s" in caught.value.message


@pytest.mark.parametrize("client", CALLS)
def test_an_answer_over_the_size_cap_is_refused_without_copying_it(serve, short_timeouts, client):
    call, error = CALLS[client]
    message = "x" * (20 * 1024 * 1024)
    server = serve(fixed("500 Internal Server Error", {}, json.dumps({"message": message}).encode()))
    with pytest.raises(error) as caught:
        call(server.url)
    assert len(caught.value.message) < 400
    assert "larger than" in caught.value.message


def test_a_crusoe_error_message_is_cut_to_printable_ascii(serve):
    message = "bad \x1b[31mthing\u202e " + "y" * 5000
    server = serve(fixed("400 Bad Request", {}, json.dumps({"code": "bad_request", "message": message}).encode()))
    with pytest.raises(CrusoeApiError) as caught:
        crusoe(server.url).list_registry_tokens()
    detail = caught.value.message.split("HTTP 400: ", 1)[1]
    assert detail.startswith("bad_request: bad ?[31mthing? yyy")
    assert len(detail) <= len("bad_request: ") + 200
    assert detail.endswith("...")
    assert all(" " <= char <= "~" for char in caught.value.message)


def test_a_308_is_never_followed_so_the_body_is_never_sent_again(serve):
    target = serve(fixed("200 OK", {}, b'{"token": "stolen"}'))
    redirecting = serve(fixed("308 Permanent Redirect", {"Location": target.url + "/ccr/tokens"}, b""))
    with pytest.raises(CrusoeApiError) as caught:
        crusoe(redirecting.url).create_registry_token("ccr-rotator-20261128T000000Z-abcdef", time_now())
    assert caught.value.status == 308
    assert "HTTP 308" in caught.value.message
    assert "redirect, which is never followed" in caught.value.message
    assert target.requests == []
    assert [line for line, _ in redirecting.requests] == ["POST /ccr/tokens HTTP/1.1"]


@pytest.mark.parametrize("client", ["secret manager", "kube"])
def test_the_other_clients_do_not_follow_redirects_either(serve, short_timeouts, client):
    call, error = CALLS[client]
    target = serve(fixed("200 OK", {}, b"{}"))
    redirecting = serve(fixed("307 Temporary Redirect", {"Location": target.url + "/"}, b""))
    with pytest.raises(error) as caught:
        call(redirecting.url)
    assert "307" in caught.value.message
    assert target.requests == []


def time_now():
    return datetime.now(UTC) + timedelta(hours=1)
