"""Loopback plumbing: free ports, and the threaded HTTP server and CLI loop the fake services share.

Both fake services (the Crusoe API emulator and the Secret Manager server) need the same
things: bind to loopback only, answer concurrent keep-alive clients, stop promptly even
while a handler sleeps for an injected delay, and, when run as a program, print one JSON
line once ready and run until SIGTERM. Keeping that here leaves each server module about
its protocol.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import socket
import ssl
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Self
from urllib.parse import urlsplit

#: The only address the platform binds or calls.
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port that is free on loopback right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


#: The longest a gate holds a request when nobody releases it (a test that forgets cannot hang the run).
MAX_HOLD_SECONDS = 300.0


class Gate:
    """A held answer in a fake server: ``arrived`` is set once a request waits here, ``release`` lets all go.

    Tests use it to make an interleaving happen for sure ("the second call runs while the first call's answer
    is held") instead of hoping a sleep is long enough.
    """

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._count = 0

    @property
    def count(self) -> int:
        """How many requests have reached the gate."""
        with self._lock:
            return self._count

    @property
    def released(self) -> bool:
        """Whether ``release`` was called."""
        return self._released.is_set()

    def release(self) -> None:
        """Let the held requests (and any later ones) continue."""
        self._released.set()

    def wait(self, seconds: float | None = None) -> None:
        """Hold the calling handler until released, or ``seconds`` (default: ``MAX_HOLD_SECONDS``) passed."""
        with self._lock:
            self._count += 1
        self.arrived.set()
        self._released.wait(MAX_HOLD_SECONDS if seconds is None else seconds)


class RequestRecord(NamedTuple):
    """One handled request: no headers, no body (so never a credential)."""

    method: str
    path: str
    query: str
    status: int


def check_loopback(host: str) -> None:
    """Refuse to bind anything but a loopback address: these servers hold fake credentials.

    Raises:
        ValueError: ``host`` is not a loopback address.
    """
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"harness servers bind loopback only, not {host!r}")


class _Server(ThreadingHTTPServer):
    """One thread per connection; never wait for handler threads on close."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[JsonHandler], owner: BackgroundServer) -> None:
        super().__init__(address, handler)
        #: The object holding the fake service's state; handlers reach it as ``self.server.owner``.
        self.owner = owner


class JsonHandler(BaseHTTPRequestHandler):
    """Base request handler: HTTP/1.1 keep-alive, quiet, JSON helpers.

    Subclasses implement ``handle_any(method)``; every verb routes there.
    """

    server: _Server

    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections are dropped after this many seconds.
    timeout = 30
    server_version = "harness/1.0"
    # Send each response in one segment with no Nagle delay: headers and body written
    # separately on a keep-alive connection otherwise cost ~40 ms per call (delayed ACK).
    disable_nagle_algorithm = True
    wbufsize = -1
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Stay quiet: the servers keep their own request log, without headers."""

    def handle_any(self, method: str) -> None:
        """Answer one request (implemented by each server)."""
        raise NotImplementedError

    def do_GET(self) -> None:
        """Route GET."""
        self.handle_any("GET")

    def do_POST(self) -> None:
        """Route POST."""
        self.handle_any("POST")

    def do_DELETE(self) -> None:
        """Route DELETE."""
        self.handle_any("DELETE")

    def do_PUT(self) -> None:
        """Route PUT."""
        self.handle_any("PUT")

    def do_PATCH(self) -> None:
        """Route PATCH."""
        self.handle_any("PATCH")

    def do_HEAD(self) -> None:
        """Route HEAD."""
        self.handle_any("HEAD")

    @property
    def raw_path(self) -> str:
        """The request path exactly as sent, without the query."""
        return urlsplit(self.path).path

    @property
    def raw_query(self) -> str:
        """The query string exactly as sent (no decoding, no reordering)."""
        return urlsplit(self.path).query

    def read_body(self) -> bytes:
        """Read the request body (Content-Length framed; chunked bodies are not used by clients here)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Write a complete response with Content-Length so the connection can be reused."""
        self.send_response(status)
        if body or content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        """Write ``payload`` as a JSON response."""
        self.send_bytes(status, json.dumps(payload).encode(), headers=headers)

    def reset_connection(self) -> None:
        """Drop the connection with a TCP reset and no answer, as a crashed server or a cut network would.

        ``SO_LINGER`` with a zero timeout makes the close send RST instead of FIN; the close itself happens
        when the handler's own files are closed right after this request.
        """
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


class BackgroundServer:
    """Run a handler class on a loopback port in a daemon thread.

    Subclasses set ``handler_class``; handlers reach the subclass instance (the fake
    service's state) as ``self.server.owner``.
    """

    handler_class: type[JsonHandler]

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Remember where to bind; nothing happens until ``start``."""
        check_loopback(host)
        self.host = host
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        #: Set on stop so handlers sleeping for an injected delay wake up at once.
        self.stopping = threading.Event()
        #: Serve HTTPS with this context when set before ``start`` (the fault proxy terminates TLS).
        self.ssl_context: ssl.SSLContext | None = None

    @property
    def port(self) -> int:
        """The bound port (raises before ``start``)."""
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.server_address[1])

    @property
    def origin(self) -> str:
        """``http://host:port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        """Bind and serve in a daemon thread; returns self for chaining."""
        if self._server is not None:
            return self
        self.stopping.clear()
        self._server = _Server((self.host, self._requested_port), self.handler_class, self)
        if self.ssl_context is not None:
            # The handshake runs in the connection's own handler thread, not in the accepting one.
            self._server.socket = self.ssl_context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent."""
        self.stopping.set()
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        """Start on entering the context."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop on leaving the context."""
        self.stop()


def serve_until_signal(server: BackgroundServer, ready: dict[str, Any]) -> int:
    """Run a started server until SIGTERM or SIGINT, after printing ``ready`` as one JSON line.

    The single line on stdout is the readiness protocol for the demo and benchmark:
    a parent process reads it and then talks to the URLs it holds.

    Returns:
        The process exit code (0).
    """
    done = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
    return 0
