"""Answers from servers the rotator does not control, bounded: size, total time, redirects, error text.

A socket timeout bounds each read, not a call: a server that drips one byte per second holds a call with
a 2 s read timeout for as long as it likes. So every call runs under a :class:`CallDeadline` whose
watchdog shuts the call's sockets down when its total time is up, which ends any read in progress; the
pools of both HTTP stacks (``requests`` here, the Kubernetes client's urllib3) hand their connections to
the running deadline (:func:`watch_pools`). Bodies are read up to a byte cap, redirects are never followed
(a 308 would re-send a body that holds a token, possibly over plain HTTP), and text copied from an answer
into an error is cut to printable ASCII of bounded length.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Final, Self

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from rotator.errors import ApiError, DeadlineError

CHUNK_BYTES: Final = 64 * 1024
#: Longest text copied from an answer (an error message, a reason phrase) into an error.
MAX_TEXT: Final = 200
_CURRENT = threading.local()
#: When the whole run must be over (``time.monotonic()``), for every call made on its behalf, in any thread.
_RUN_ENDS: contextvars.ContextVar[float | None] = contextvars.ContextVar("run_ends", default=None)


@contextlib.contextmanager
def run_deadline(seconds: float) -> Iterator[None]:
    """Bound everything done inside (and in worker threads started with its context) to ``seconds`` in total."""
    token = _RUN_ENDS.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _RUN_ENDS.reset(token)


def run_ends() -> float | None:
    """The run's end as a ``time.monotonic()`` value, or None outside a bounded run."""
    return _RUN_ENDS.get()


def check_deadline(what: str) -> None:
    """Raise :class:`DeadlineError` naming ``what`` if the run's time is up (so it is not started)."""
    ends = _RUN_ENDS.get()
    if ends is not None and time.monotonic() >= ends:
        raise DeadlineError(what)


class _Watchdog:
    """One thread that expires every call's deadline in time order.

    A ``threading.Timer`` per call started a thread per Kubernetes request: about an eighth of a large
    rotation's Python time. Deadlines of calls that finished stay queued until their time and are skipped.
    """

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._queue: list[tuple[float, int, CallDeadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, ends: float, deadline: CallDeadline) -> None:
        """Expire ``deadline`` at ``ends`` (``time.monotonic()``) unless its call is over by then."""
        with self._ready:
            heapq.heappush(self._queue, (ends, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
                self._thread = threading.Thread(target=self._run, name="call-deadlines", daemon=True)
                self._thread.start()
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                ends, _, deadline = self._queue[0]
                wait = ends - time.monotonic()
                if wait > 0:
                    self._ready.wait(wait)
                    continue
                heapq.heappop(self._queue)
            deadline.expire()


_WATCHDOG: Final = _Watchdog()


class CallDeadline:
    """Shuts down the sockets a call uses once ``seconds`` have passed (use as a context manager).

    Inside a bounded run (:func:`run_deadline`) the call also ends with the run, whichever comes first.
    """

    def __init__(self, seconds: float) -> None:
        ends = _RUN_ENDS.get()
        if ends is not None:
            seconds = min(seconds, max(ends - time.monotonic(), 0.0))
        self.seconds = seconds
        self.expired = False
        self._over = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._outer: CallDeadline | None = None

    def __enter__(self) -> Self:
        check_deadline("this call")
        self._outer = getattr(_CURRENT, "deadline", None)
        _CURRENT.deadline = self
        _WATCHDOG.add(time.monotonic() + self.seconds, self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        with self._lock:
            self._over = True
        _CURRENT.deadline = self._outer

    def watch(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down when the deadline passes (at once if it already has)."""
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        """The time is up: shut down the call's sockets (nothing, if the call is already over)."""
        with self._lock:
            if self._over:
                return
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also for a TLS socket: it ends a read blocked in another thread
    # without touching the TLS object that read is using.
    with contextlib.suppress(OSError):  # already closed: nothing left to stop
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watch_current(sock: socket.socket | None) -> None:
    deadline: CallDeadline | None = getattr(_CURRENT, "deadline", None)
    if deadline is not None:
        deadline.watch(sock)


class _WatchedConnection(HTTPConnection):
    """A connection that puts its socket under the running :class:`CallDeadline` for every request."""

    def connect(self) -> None:
        super().connect()
        _watch_current(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - passes urllib3's arguments on
        _watch_current(self.sock)  # a reused connection: connect() is not called again
        super().request(*args, **kwargs)


class _WatchedTlsConnection(HTTPSConnection):
    """The TLS twin of :class:`_WatchedConnection`."""

    def connect(self) -> None:
        super().connect()
        _watch_current(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - passes urllib3's arguments on
        _watch_current(self.sock)
        super().request(*args, **kwargs)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedTlsConnection


def watch_pools(manager: urllib3.PoolManager) -> None:
    """Make every pool ``manager`` creates (direct or through a proxy) use watched connections."""
    manager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}


class _WatchedAdapter(HTTPAdapter):
    """A ``requests`` adapter whose pools, proxy pools included, use watched connections."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - requests' arguments
        super().init_poolmanager(*args, **kwargs)
        watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> urllib3.ProxyManager:  # noqa: ANN401
        manager: urllib3.ProxyManager = super().proxy_manager_for(proxy, **kwargs)
        watch_pools(manager)
        return manager


def bounded_session(session: requests.Session) -> requests.Session:
    """``session`` with watched connections for http and https (see :class:`CallDeadline`)."""
    adapter = _WatchedAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


@dataclass(frozen=True)
class Answer:
    """A whole HTTP answer, read within the caps."""

    status: int
    reason: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def ok(self) -> bool:
        """A 2xx status (a 3xx is never followed, so it is not a success either)."""
        return HTTPStatus.OK <= self.status < HTTPStatus.MULTIPLE_CHOICES

    def json(self) -> object:
        """The decoded body, or None when it is not JSON (or nested too deep to decode)."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            return None


def read_capped(read: Callable[[int], bytes], limit: int) -> bytes | None:
    """Up to ``limit`` bytes from ``read(amount)`` (empty at the end), or None if the body is longer."""
    chunks: list[bytes] = []
    size = 0
    while chunk := read(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def send(  # noqa: PLR0913 - one request's every bound is a keyword
    session: requests.Session,
    method: str,
    url: str,
    *,
    timeout: tuple[float, float],
    total: float,
    limit: int,
    headers: Mapping[str, str] | None = None,
    json_body: object = None,
) -> Answer:
    """One request: no redirects, at most ``total`` seconds in all, at most ``limit`` bytes of body.

    Raises:
        ApiError: no whole answer (``status`` None, retryable), an answer over the cap, or a redirect; the
            message says which, for the caller to prefix with what it was doing.
    """
    deadline = CallDeadline(total)
    try:
        with deadline:
            response = session.request(
                method,
                url,
                headers={"Accept-Encoding": "identity", **(headers or {})},
                json=json_body,
                timeout=timeout,
                stream=True,
                allow_redirects=False,
            )
            with response:
                body = read_capped(lambda amount: response.raw.read(amount, decode_content=True), limit)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        cause = f"no complete answer within {total:g} s" if deadline.expired else type(exc).__name__
        raise ApiError(cause, status=None, retryable=True) from None
    status = response.status_code
    if body is None:
        raise ApiError(f"the answer is larger than {limit} bytes", status=status, retryable=False)
    if HTTPStatus.MULTIPLE_CHOICES <= status < HTTPStatus.BAD_REQUEST:
        raise ApiError(
            f"HTTP {status}: the server answered with a redirect, which is never followed: "
            "check the endpoint URL (https, exact host and path)",
            status=status,
            retryable=False,
        )
    return Answer(status, clip(response.reason or ""), response.headers, body)


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` as printable ASCII (anything else becomes ``?``), cut to ``limit`` characters."""
    printable = "".join(char if " " <= char <= "~" else "?" for char in text[: limit + 1])
    return printable if len(printable) <= limit else printable[: limit - 3] + "..."
