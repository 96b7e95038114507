"""A loopback TCP proxy that adds a round-trip time between the bench's clients and kube-apiserver.

Why a proxy and not ``tc netem``: the bench machine's kernel is built without the ``netem`` and ``prio``
queueing disciplines (``CONFIG_NET_SCH_NETEM`` and ``CONFIG_NET_SCH_PRIO`` are not set, and there are no
modules to load), so ``tc qdisc add ... netem`` answers "Specified qdisc kind is unknown". NFQUEUE is
built in, but no ``iptables``/``nft`` exists to steer packets to it. A user-space proxy needs none of that.

What it emulates: every chunk read from one side is written to the other side half an RTT later, in
order, and chunks in flight do not wait for each other (the delay is latency, not a bandwidth limit). A
new connection's first bytes also wait one extra RTT, the TCP handshake a real network would cost. Only
the connections made to this proxy are delayed: kube-apiserver still talks to etcd directly, and the
function, the emulator and the admin client used for setup and counting do not go through it.

It binds 127.0.0.1 only, connects to a loopback upstream only, prints ``{"port": N}`` once listening,
and runs until SIGTERM or SIGINT. It runs as its own process (``python -m bench.delay_proxy``), so that
its CPU does not compete for the bench driver's GIL and can be reported on its own line, and imports
only the platform's loopback address from the project.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ipaddress
import json
import os
import selectors
import signal
import sys

from devkit.loopback import LOOPBACK

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
        assert self._target is not None  # noqa: S101 - only called once connected
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
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await stop.wait()
    server.close()


def _die_with_parent() -> None:
    """If the bench is killed outright, take the proxy with it (Linux ``PR_SET_PDEATHSIG``)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """Parse ``--upstream-port`` and ``--rtt-ms``, then serve."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--upstream-port", type=int, required=True, help="kube-apiserver's port on 127.0.0.1")
    parser.add_argument("--rtt-ms", type=float, required=True, help="round-trip time to add, in milliseconds")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free one)")
    args = parser.parse_args(argv)
    if args.rtt_ms < 0:
        parser.error("--rtt-ms must be at least 0")
    assert ipaddress.ip_address(LOOPBACK).is_loopback  # noqa: S101 - the one address this ever uses
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
