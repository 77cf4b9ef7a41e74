"""What one client can hold of an HTTP listener (the push port faces the internet).

waitress reads a whole request in its event loop before a worker thread sees it, so an idle
or slow client costs a socket and a channel, never a thread. What waitress leaves open:

* at ``connection_limit`` it stops accepting: a few hundred half-requests silence it;
* its idle timeout restarts with every byte: a client trickling a byte a second is never idle;
* nothing bounds the connections of one source;
* ``select()`` fails beyond FD_SETSIZE (1024) descriptors.

``GuardedServer`` (a waitress server) closes those: ``poll()`` instead of ``select()``; at
most ``per_source`` connections from one address (IPv6: one /64), checked at accept time;
deadlines for a request's headers (from its first byte, or from the connect for a
connection's first request) and for its body (from the end of the headers), besides the idle
timeout (no byte for that long); and, at ``max_connections``, the connections that have
waited longest are closed to admit the new one, so a fresh request is always read. Up to 64
connections are accepted per wake-up: the loop visits every connection once per wake-up, so
accepting one at a time is quadratic.
"""

from __future__ import annotations

import errno
import heapq
import ipaddress
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer

from receiptd import metrics
from receiptd.config.values import IPNetwork, in_networks
from receiptd.logs import get_logger

log = get_logger(__name__)

ACCEPT_BATCH = 64  # connections accepted per wake-up of the event loop
SHED_FRACTION = 32  # at the limit, this fraction of it is shed at once
IPV6_SOURCE_PREFIX = 64  # one IPv6 source is a /64: one host commonly holds the whole /64
_OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


@dataclass(frozen=True)
class Limits:
    """Bounds of one listener; times in seconds."""

    max_connections: int = 1024
    per_source: int = 32  # 0: no per-source bound
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 30.0  # no byte for this long: between requests, or a stalled one
    exempt: tuple[IPNetwork, ...] = ()  # sources without a per-source bound (proxies)

    def timeout(self, reason: str) -> float:
        return {
            "header_timeout": self.header_timeout,
            "body_timeout": self.body_timeout,
            "idle_timeout": self.idle_timeout,
        }[reason]


class Request(Protocol):
    """What is read of waitress's request parser."""

    headers_finished: bool


def source_key(host: str) -> str:
    """The per-source bucket of a peer address: the IPv4 address, the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/{IPV6_SOURCE_PREFIX}", strict=False))
    return str(ip)


@dataclass(slots=True)
class Stamps:
    """Monotonic times of one connection, written by its event loop (and its worker)."""

    opened: float
    answered: float  # the end of its last answer (``opened`` before the first)
    last_byte: float  # when bytes last arrived (``opened`` before any)
    first_byte: float | None = None  # of the request being read
    headers_done: float | None = None  # of the request being read
    reused: bool = False  # answered at least once (kept alive)


def waiting(serving: bool, request: Request | None, stamps: Stamps) -> tuple[str, float] | None:
    """What a connection waits for, as (the timeout that bounds it, since when), or None
    while a worker serves it. A connection's first request has its headers' deadline from
    the connect; a later one from its first byte."""
    if serving:
        return None
    if request is None:
        if stamps.reused:
            return ("idle_timeout", stamps.answered)
        return ("header_timeout", stamps.opened)
    if not request.headers_finished:
        began = stamps.first_byte if stamps.reused else None
        return ("header_timeout", stamps.opened if began is None else began)
    done = stamps.headers_done
    return ("body_timeout", stamps.opened if done is None else done)


def overdue(
    wait: tuple[str, float] | None, stamps: Stamps, now: float, limits: Limits
) -> str | None:
    """The timeout a connection has overrun, or None: its wait's own deadline, or the idle
    timeout when no byte has come for that long (a stalled body with a long deadline)."""
    if wait is None:
        return None
    reason, since = wait
    if now - since > limits.timeout(reason):
        return reason
    if now - max(stamps.last_byte, stamps.answered) > limits.idle_timeout:
        return "idle_timeout"
    return None


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (systemd's default soft limit is 1024);
    the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # the soft limit stays as it was
    return int(soft)


class GuardedChannel(HTTPChannel):  # type: ignore[misc]  # waitress ships no types
    """A waitress channel that stamps when its request began and counts its source."""

    server: GuardedServer
    request: Any  # waitress's parser of the request being read, None between requests

    def __init__(self, server: GuardedServer, sock: Any, addr: Any, adj: Any, map: Any) -> None:
        now = server.clock()
        self.stamps = Stamps(opened=now, answered=now, last_byte=now)
        self._tracked: object = None
        self.source: str | None = None
        self.overran = False  # past a deadline: closing on the loop's next pass (maintenance)
        super().__init__(server, sock, addr, adj, map=map)
        self.source = server.admitted(addr[0])

    def received(self, data: bytes) -> bool:
        stamps, now = self.stamps, self.server.clock()
        result: bool = super().received(data)
        stamps.last_byte = now
        request = self.request
        if request is not self._tracked:  # a request began (or the last one completed)
            self._tracked, stamps.first_byte, stamps.headers_done = request, now, None
        if request is not None and request.headers_finished and stamps.headers_done is None:
            stamps.headers_done = now
        return result

    def service(self) -> None:
        # Stamped before too: between waitress popping the request and the end of service()
        # the loop may look at this connection, which must not look like a fresh one then.
        self.stamps.reused, self.stamps.answered = True, self.server.clock()
        super().service()
        self.stamps.answered = self.server.clock()

    def waiting(self) -> tuple[str, float] | None:
        if self.will_close or self.close_when_flushed:
            return None
        return waiting(bool(self.requests), self.request, self.stamps)

    def overdue(self, now: float) -> str | None:
        return overdue(self.waiting(), self.stamps, now, self.server.limits)

    def handle_close(self) -> None:
        """waitress's close, which frees the answers' buffers, then the request being read:
        waitress leaves its body buffer, a temporary file once the body passed
        ``inbuf_overflow``, for the garbage collector (an unclosed file then). A request
        already queued is closed by the worker that serves it (or ``cancel``)."""
        super().handle_close()
        with self.requests_lock:
            request, self.request = self.request, None
        if request is not None:
            request.close()

    def cancel(self) -> None:
        """At shutdown, for a request queued but never served: waitress forgets the queued
        requests without closing their body buffers (temporary files past ``inbuf_overflow``)."""
        with self.requests_lock:
            queued = list(self.requests)
        super().cancel()
        for request in queued:
            request.close()

    def del_channel(self, map: Any = None) -> None:
        super().del_channel(map)
        if self.source is not None:
            self.server.released(self.source)
            self.source = None


class GuardedServer(TcpWSGIServer):  # type: ignore[misc]  # waitress ships no types
    """A waitress TCP server bounded by ``Limits`` (module docstring)."""

    channel_class = GuardedChannel
    next_channel_cleanup = 0.0  # monotonic time of the next maintenance (waitress's name)

    def __init__(
        self,
        app: Callable[..., Any],
        limits: Limits,
        name: str,
        clock: Callable[[], float] = time.monotonic,
        **settings: Any,
    ) -> None:
        self.limits, self.name, self.clock = limits, name, clock
        self.sources: Counter[str] = Counter()
        self._paused_until = 0.0
        adj = Adjustments(
            **settings,
            channel_timeout=limits.idle_timeout,  # unused: maintenance() replaces waitress's
            cleanup_interval=1,  # maintenance() enforces the deadlines once a second
            asyncore_use_poll=True,
        )
        super().__init__(app, map={}, adj=adj)

    def readable(self) -> bool:
        """Run maintenance when due; accept unless paused (out of file descriptors). The
        schedule is a duration, hence monotonic (``maintenance`` reads ``self.clock``)."""
        now = time.monotonic()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        return bool(self.accepting) and self.clock() >= self._paused_until

    def maintenance(self, now: float) -> None:
        """Close every connection that overran its deadline (waitress's idle check included)."""
        mono = self.clock()
        for channel in list(self.active_channels.values()):
            reason = channel.overdue(mono)
            if reason is not None:
                # Not closed here: this runs while asyncore walks the channel map (readable()).
                channel.will_close = channel.overran = True
                metrics.HTTP_CONNECTIONS_CLOSED.labels(self.name, reason).inc()

    def handle_accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if not self._accept_one():
                return

    def _accept_one(self) -> bool:
        """Accept one pending connection; False when none is pending (or none can be)."""
        try:
            pair = self.accept()
        except OSError as exc:
            self._out_of_files(exc)
            return False
        if pair is None:
            return False
        conn, addr = pair
        if not self._room_for(str(addr[0])):
            conn.close()
            return True
        try:
            self.set_socket_options(conn)
            self.channel_class(self, conn, addr, self.adj, map=self._map)
        except OSError:  # the peer left before we got to it
            conn.close()
        return True

    def _room_for(self, host: str) -> bool:
        """Whether a connection from ``host`` may be held, closing the longest-waiting ones
        when the listener is full."""
        limits = self.limits
        key = source_key(host)
        if (
            limits.per_source
            and self.sources[key] >= limits.per_source
            and not in_networks(host, limits.exempt)
        ):
            metrics.HTTP_CONNECTIONS_CLOSED.labels(self.name, "source_limit").inc()
            return False
        if len(self.active_channels) >= limits.max_connections and not self._shed():
            metrics.HTTP_CONNECTIONS_CLOSED.labels(self.name, "full").inc()
            return False
        return True

    def _shed(self) -> bool:
        """Close the connections that have waited longest, never one a worker serves: a
        32nd of the limit at once, so a flood costs one scan per 32 connections, not each.

        Connections that already overran a deadline go first, and then no other: the check
        marked them to close on the loop's next pass (and counted them), and a connection
        accepted before that pass would otherwise cost live ones their place."""
        overran = [c for c in self.active_channels.values() if c.overran]
        for channel in overran:
            channel.handle_close()
        if overran:
            return True
        waits = [(w[1], c) for c in self.active_channels.values() if (w := c.waiting())]
        count = max(1, self.limits.max_connections // SHED_FRACTION)
        for _, victim in heapq.nsmallest(count, waits, key=lambda pair: pair[0]):
            victim.handle_close()
            metrics.HTTP_CONNECTIONS_CLOSED.labels(self.name, "shed").inc()
        return bool(waits)

    def _out_of_files(self, exc: OSError) -> None:
        """accept() failed. For want of descriptors: shed one, or pause accepting a second
        (the pending connection would otherwise wake the loop at once, forever). Never
        raised: an exception here would close the listening socket (wasyncore)."""
        log.warning("http_accept_failed", listener=self.name, error=str(exc))
        if exc.errno in _OUT_OF_FILES and not self._shed():
            self._paused_until = self.clock() + 1.0

    def admitted(self, host: str) -> str:
        key = source_key(host)
        self.sources[key] += 1
        metrics.HTTP_CONNECTIONS.labels(self.name).inc()
        return key

    def released(self, key: str) -> None:
        self.sources[key] -= 1
        if self.sources[key] <= 0:
            del self.sources[key]
        metrics.HTTP_CONNECTIONS.labels(self.name).dec()
