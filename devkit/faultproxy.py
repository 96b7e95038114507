"""The project's fault proxy: what sits between the function (or the bench) and kube-apiserver on loopback.

Two layers, one module:

**Network delay** (``python -m devkit.faultproxy --upstream-port P --rtt-ms R``, what ``make bench --rtt-ms``
runs). A TCP proxy that adds a round-trip time. Why a proxy and not ``tc netem``: the bench machine's kernel
is built without the ``netem`` and ``prio`` queueing disciplines (``CONFIG_NET_SCH_NETEM`` and
``CONFIG_NET_SCH_PRIO`` are not set, and there are no modules to load), so ``tc qdisc add ... netem`` answers
"Specified qdisc kind is unknown". NFQUEUE is built in, but no ``iptables``/``nft`` exists to steer packets to
it. A user-space proxy needs none of that. Every chunk read from one side is written to the other side half an
RTT later, in order, and chunks in flight do not wait for each other (the delay is latency, not a bandwidth
limit). A new connection's first bytes also wait one extra RTT, the TCP handshake a real network would cost.
It runs as its own process, so that its CPU does not compete for the bench driver's GIL and can be reported
on its own line; it binds 127.0.0.1 only, prints ``{"port": N}`` once listening, and runs until SIGTERM.

**Request faults** (:class:`FaultProxy`, in-process, for the fault tests and the soak). It terminates TLS with
a certificate of its own throwaway CA (the function's kubeconfig trusts that CA, see :meth:`FaultProxy.
kubeconfig`) and forwards each request as a client that verifies the apiserver's CA, so it sees every request
and can count them: "the apiserver stopped after K of N writes" is exact (``cut_after``), never timed. It can
also answer a status with ``Retry-After`` instead of forwarding, hold an answer (forwarded or not) until the
test releases it or a time passes, and run a test's callback just before a request is forwarded (a namespace
deleted mid-run). The bearer token passes through unchanged, so RBAC is the apiserver's, as without it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import http.client
import ipaddress
import json
import os
import re
import selectors
import signal
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import yaml

from devkit.loopback import LOOPBACK, BackgroundServer, Gate, JsonHandler, RequestRecord
from devkit.pki import write_loopback_server

_CLOSE = object()  # marker: the sending side closed, so close the other side once its data is delivered
_PR_SET_PDEATHSIG = 1


class _Direction:
    """One direction of one connection: each chunk leaves ``delay`` seconds after it arrived, in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, not_before: float) -> None:
        self._loop = loop
        self._delay = delay
        self._last = not_before  # strictly increasing due times keep the timer heap from reordering chunks
        self._target: asyncio.Transport | None = None
        self._early: list[object] = []  # due before the upstream connection was up (only with a tiny delay)

    def send(self, item: object) -> None:
        """Schedule ``item`` (bytes, or ``_CLOSE``) for delivery half an RTT from now."""
        due = max(self._loop.time() + self._delay, self._last + 1e-6)
        self._last = due
        self._loop.call_at(due, self._deliver, item)

    def connect(self, target: asyncio.Transport) -> None:
        """The receiving side is connected: deliver what was already due."""
        self._target = target
        for item in self._early:
            self._write(item)
        self._early.clear()

    def _deliver(self, item: object) -> None:
        if self._target is None:
            self._early.append(item)
        else:
            self._write(item)

    def _write(self, item: object) -> None:
        assert self._target is not None  # only called once connected
        if self._target.is_closing():
            return
        if item is _CLOSE:
            self._target.close()  # flushes what is buffered first
        else:
            self._target.write(item)  # type: ignore[arg-type]  # bytes: the only other item


class _Side(asyncio.Protocol):
    """Either end of a proxied connection: what it receives goes out through ``outgoing``."""

    def __init__(self, outgoing: _Direction) -> None:
        self.outgoing = outgoing

    def data_received(self, data: bytes) -> None:
        self.outgoing.send(data)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - asyncio's signature
        self.outgoing.send(_CLOSE)


class _Downstream(_Side):
    """The client's connection to the proxy; it opens the upstream connection when accepted."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._upstream_port = upstream_port
        self._delay = delay
        # The first client bytes wait one extra RTT (2 x delay): the handshake a real network would cost.
        super().__init__(_Direction(self._loop, delay, not_before=self._loop.time() + 2 * delay))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        back = _Direction(self._loop, self._delay, not_before=0.0)
        back.connect(transport)  # type: ignore[arg-type]  # a TCP transport
        self._task = self._loop.create_task(self._open(back, transport))

    async def _open(self, back: _Direction, client: asyncio.BaseTransport) -> None:
        try:
            transport, _ = await self._loop.create_connection(lambda: _Side(back), LOOPBACK, self._upstream_port)
        except OSError:
            client.close()
            return
        self.outgoing.connect(transport)


async def serve(upstream_port: int, rtt_ms: float, port: int) -> None:
    """Listen on 127.0.0.1 and proxy to 127.0.0.1:``upstream_port`` until SIGTERM or SIGINT."""
    delay = rtt_ms / 2000.0
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(lambda: _Downstream(upstream_port, delay), LOOPBACK, port, backlog=1024)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)  # noqa: T201 - readiness line
    await stop.wait()
    server.close()


# --- request faults -------------------------------------------------------------------------------

#: The pull secret's path: what a rotation reads (GET) and writes (PATCH, server-side apply).
SECRET_PATH = r"^/api/v1/namespaces/[^/]+/secrets/[^/]+$"
#: Status of a request the proxy cut: no answer was sent.
CUT = 0
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "proxy-connection", "upgrade", "te"}
)
_UPSTREAM_TIMEOUT_S = 60.0


@dataclass
class Rule:
    """One fault: which requests it matches, how many pass first, how many it affects, and what it does.

    ``action`` is ``cut`` (close with a TCP reset, nothing forwarded), ``answer`` (send ``status`` instead of
    forwarding), ``hold`` (wait on ``gate``, after forwarding when ``forward_first``) or ``call`` (run
    ``callback`` and then forward).
    """

    action: str
    method: str
    path: re.Pattern[str]
    skip: int = 0
    times: int | None = None
    status: int = 503
    retry_after: str | None = None
    gate: Gate = field(default_factory=Gate)
    forward_first: bool = True
    seconds: float | None = None
    callback: Callable[[str, str], None] | None = None
    seen: int = 0

    def fires(self, method: str, path: str) -> bool:
        """Count a matching request; true when it is past ``skip`` and within ``times`` (call under the lock)."""
        if self.method not in ("*", method) or not self.path.match(path):
            return False
        self.seen += 1
        past = self.seen - self.skip
        return past > 0 and (self.times is None or past <= self.times)


class _ProxyHandler(JsonHandler):
    """One downstream connection: each request is faulted or forwarded over its own upstream connection."""

    server_version = "faultproxy/1.0"
    _upstream: http.client.HTTPSConnection | None = None

    def setup(self) -> None:
        """Finish the TLS handshake in this connection's thread (the listener does not wait for it)."""
        with contextlib.suppress(OSError):
            self.request.do_handshake()
        super().setup()

    def finish(self) -> None:
        """Close the upstream connection with the downstream one."""
        if self._upstream is not None:
            self._upstream.close()
        super().finish()

    def handle_any(self, method: str) -> None:
        proxy = self.server.owner
        assert isinstance(proxy, FaultProxy)  # narrows the type for mypy
        path, query = self.raw_path, self.raw_query
        body = self.read_body()
        rule = proxy.match(method, path)
        try:
            status = self._apply(proxy, rule, method, body)
        except OSError:  # the client gave up (its timeout) while the answer was held: nobody to answer
            self.close_connection = True
            status = CUT
        proxy.record(RequestRecord(method, path, query, status))

    def _apply(self, proxy: FaultProxy, rule: Rule | None, method: str, body: bytes) -> int:
        if rule is not None and rule.action == "cut":
            self.reset_connection()
            return CUT
        if rule is not None and rule.action == "answer":
            status = rule.status
            headers = {"Retry-After": rule.retry_after} if rule.retry_after is not None else {}
            self.send_json(status, _status_body(status), headers)
            return status
        if rule is not None and rule.action == "call" and rule.callback is not None:
            rule.callback(method, self.raw_path)
        if rule is not None and rule.action == "hold" and not rule.forward_first:
            rule.gate.wait(rule.seconds)
        answer = self._forward(proxy, method, body)
        if answer is None:
            self.reset_connection()
            return CUT
        if rule is not None and rule.action == "hold" and rule.forward_first:
            rule.gate.wait(rule.seconds)
        status, headers, data = answer
        self.send_bytes(status, data, headers.pop("content-type", ""), headers)
        return status

    def _forward(self, proxy: FaultProxy, method: str, body: bytes) -> tuple[int, dict[str, str], bytes] | None:
        """Send the request upstream as it came (minus hop-by-hop headers); None when upstream failed."""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        for attempt in range(2):  # an idle keep-alive connection closed by the server is reopened once
            if self._upstream is None:
                self._upstream = proxy.upstream_connection()
            try:
                self._upstream.request(method, self.path, body=body or None, headers=headers)
                response = self._upstream.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                self._upstream.close()
                self._upstream = None
                if attempt == 1 or body:
                    return None
                continue
            kept = {k.lower(): v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
            return response.status, kept, data
        return None  # pragma: no cover - the loop returns


def _status_body(status: int) -> dict[str, Any]:
    """A Kubernetes ``Status`` object, as the apiserver (or a gateway in front of it) answers an error."""
    reasons = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "injected by the fault proxy",
        "reason": reasons.get(status, ""),
        "code": status,
    }


class FaultProxy(BackgroundServer):
    """A TLS-terminating HTTP proxy in front of kube-apiserver with exact, counted faults (thread-safe).

    Usage::

        with FaultProxy(handle.server, handle.credentials.ca_cert) as proxy:
            kubeconfig = proxy.kubeconfig(account.kubeconfig)   # give this to the function
            proxy.cut_after(2, method="PATCH")                  # the 3rd write and later: connection reset
    """

    handler_class = _ProxyHandler

    def __init__(self, upstream: str, upstream_ca: bytes) -> None:
        """Prepare a proxy to ``upstream`` (``https://127.0.0.1:port``) that trusts ``upstream_ca``.

        Raises:
            ValueError: the upstream is not an https URL on a loopback address.
        """
        parts = urlsplit(upstream)
        if parts.scheme != "https" or parts.hostname is None or not ipaddress.ip_address(parts.hostname).is_loopback:
            raise ValueError("the fault proxy forwards to an https loopback apiserver only")
        super().__init__(LOOPBACK, 0)
        self._upstream_host, self._upstream_port = parts.hostname, parts.port or 443
        self._upstream_context = ssl.create_default_context(cadata=upstream_ca.decode())
        self._dir = tempfile.TemporaryDirectory(prefix="faultproxy-")
        self.ca_cert = write_loopback_server(Path(self._dir.name), "faultproxy")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(Path(self._dir.name, "server.crt"), Path(self._dir.name, "server.key"))
        self.ssl_context = context
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._requests: list[RequestRecord] = []

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>``: the server address the function's kubeconfig gets."""
        return f"https://{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        """Release every hold, stop serving and remove the certificate files."""
        self.clear()
        super().stop()
        self._dir.cleanup()

    def upstream_connection(self) -> http.client.HTTPSConnection:
        """A new verified connection to the apiserver."""
        return http.client.HTTPSConnection(
            self._upstream_host, self._upstream_port, context=self._upstream_context, timeout=_UPSTREAM_TIMEOUT_S
        )

    def kubeconfig(self, kubeconfig: str) -> str:
        """The same kubeconfig (same user and credentials), pointed at this proxy and trusting its CA."""
        document = yaml.safe_load(kubeconfig)
        for entry in document["clusters"]:
            entry["cluster"]["server"] = self.url
            entry["cluster"]["certificate-authority-data"] = base64.b64encode(self.ca_cert).decode()
        return yaml.safe_dump(document, sort_keys=False)

    # -- faults ---------------------------------------------------------------------------------

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def cut_after(self, passed: int, *, method: str = "PATCH", path: str = SECRET_PATH) -> Rule:
        """Forward the first ``passed`` matching requests, then reset the connection of every later one."""
        return self._add(Rule("cut", method, re.compile(path), skip=passed))

    def answer(
        self,
        status: int,
        *,
        times: int | None = 1,
        retry_after: str | None = None,
        method: str = "PATCH",
        path: str = SECRET_PATH,
        skip: int = 0,
    ) -> Rule:
        """Answer ``status`` (a Kubernetes Status body, ``Retry-After`` if given) instead of forwarding."""
        return self._add(
            Rule("answer", method, re.compile(path), skip=skip, times=times, status=status, retry_after=retry_after)
        )

    def hold(
        self,
        *,
        times: int | None = None,
        forward_first: bool = True,
        seconds: float | None = None,
        method: str = "PATCH",
        path: str = SECRET_PATH,
    ) -> Gate:
        """Hold matching requests until the returned gate is released (or ``seconds`` passed).

        With ``forward_first`` the apiserver has already done the work: only its answer is late, as when a
        response is slower than the client's timeout.
        """
        rule = Rule("hold", method, re.compile(path), times=times, forward_first=forward_first, seconds=seconds)
        return self._add(rule).gate

    def before(
        self, callback: Callable[[str, str], None], *, times: int = 1, method: str = "PATCH", path: str = SECRET_PATH
    ) -> Rule:
        """Run ``callback(method, path)`` just before the next ``times`` matching requests are forwarded."""
        return self._add(Rule("call", method, re.compile(path), times=times, callback=callback))

    def clear(self) -> None:
        """Remove every rule and release every held request."""
        with self._lock:
            rules, self._rules = self._rules, []
        for rule in rules:
            rule.gate.release()

    def match(self, method: str, path: str) -> Rule | None:
        """The rule that acts on this request (every rule counts it; the first one that fires wins)."""
        with self._lock:
            fired = [rule for rule in self._rules if rule.fires(method, path)]
        return fired[0] if fired else None

    def record(self, record: RequestRecord) -> None:
        """Append to the request log (no headers, no bodies)."""
        with self._lock:
            self._requests.append(record)

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of what passed through: ``(method, path, query, status)``, status 0 when cut."""
        with self._lock:
            return list(self._requests)

    def __enter__(self) -> Self:
        """Start on entering the context."""
        return self.start()


def _die_with_parent() -> None:
    """If the bench is killed outright, take the proxy with it (Linux ``PR_SET_PDEATHSIG``)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """Parse ``--upstream-port`` and ``--rtt-ms``, then serve."""
    parser = argparse.ArgumentParser(
        prog="python -m devkit.faultproxy", description="Add a round-trip time between loopback clients and a server."
    )
    parser.add_argument("--upstream-port", type=int, required=True, help="kube-apiserver's port on 127.0.0.1")
    parser.add_argument("--rtt-ms", type=float, required=True, help="round-trip time to add, in milliseconds")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free one)")
    args = parser.parse_args(argv)
    if args.rtt_ms < 0:
        parser.error("--rtt-ms must be at least 0")
    assert ipaddress.ip_address(LOOPBACK).is_loopback  # the one address this ever uses
    _die_with_parent()
    # The emulated network should not queue behind the processes it carries traffic for (they saturate
    # both cores): a slightly higher priority keeps the added delay close to the one asked for.
    with contextlib.suppress(OSError):
        os.nice(-5)
    # select(2) takes its timeout in microseconds; epoll and poll round it up to whole milliseconds,
    # which would add up to 1 ms to each direction. The proxy holds about a hundred sockets at most.
    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selectors.SelectSelector())) as runner:
        runner.run(serve(args.upstream_port, args.rtt_ms, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
