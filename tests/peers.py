"""A peer that misbehaves on purpose, at the socket level: one helper for the tests of every
background thread that talks HTTP (the emulator's push senders and server, the daemon's queue,
token and lookup clients, its push listener and webhook senders).

* ``MisbehavingServer(script, then)``: each accepted connection reads one request (head and
  ``Content-Length`` body) and gets the next ``Act`` of the script; once the script is used up,
  every connection gets ``then``: a fixed ``Answer``, or ``Forward`` to a real server (the
  emulator), so a client meets the misbehaviours first and the real thing afterwards.
  ``wait_connections(n)`` waits on a condition, never on a sleep.
* ``MisbehavingClients(port)``: the same acts from the client's side, for servers.
* ``pump`` / ``close``: byte-for-byte forwarding, shared with ``tests.system``'s ``CutProxy``.
"""

from __future__ import annotations

import contextlib
import enum
import selectors
import socket
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass

CRLF2 = b"\r\n\r\n"


class Act(enum.Enum):
    """One way a peer can misbehave; each ends the connection."""

    CLOSE_MID_ANSWER = "close_mid_answer"  # the head promises a body that never comes whole
    RESET = "reset"  # a TCP RST instead of an answer
    GARBAGE = "garbage"  # bytes that are not HTTP at all
    BAD_BODY = "bad_body"  # a complete HTTP 200 whose body is nonsense for the protocol
    SILENCE = "silence"  # the request is read and never answered: the other side times out


MISBEHAVIOURS: tuple[Act, ...] = tuple(Act)


@dataclass(frozen=True)
class Answer:
    """A well-formed answer (``then`` of a server that behaves after its script)."""

    status: int = 200
    body: bytes = b'{"code":0,"msg":"ok"}'
    content_type: str = "application/json"

    def encode(self) -> bytes:
        head = (
            f"HTTP/1.1 {self.status} Whatever\r\nContent-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n"
        )
        return head.encode("latin-1") + self.body


@dataclass(frozen=True)
class Forward:
    """Forward the connection byte for byte to a real server."""

    host: str
    port: int


@dataclass
class Seen:
    """What one connection carried and which act it got."""

    act: Act | Answer | Forward
    request: bytes = b""


GARBAGE = b"\x16\x03\x01\x00\xa5 this is not HTTP\r\n\x00\xff\r\n\r\n"
NONSENSE = b"<<<\x00 not json, not xml \xff>>>"


def misbehaviour_bytes(act: Act) -> bytes:
    """What a misbehaving server sends before it closes (nothing for RESET and SILENCE)."""
    if act is Act.CLOSE_MID_ANSWER:  # the head promises 34 bytes, 1 comes
        return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 34\r\n\r\n{"
    if act is Act.GARBAGE:
        return GARBAGE
    if act is Act.BAD_BODY:
        return Answer(200, NONSENSE, "text/xml").encode()
    return b""


class MisbehavingServer:
    """``with MisbehavingServer([Act.RESET, ...], then=Answer()) as peer: peer.url``."""

    def __init__(self, script: Sequence[Act], then: Answer | Forward = Answer()) -> None:
        self._script = list(script)
        self._then = then
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._open: set[socket.socket] = set()
        self.seen: list[Seen] = []
        self._thread = threading.Thread(target=self._accept_loop, name="peer", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MisbehavingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(2)
        with self._cond:
            victims, self._open = self._open, set()
        for s in victims:
            close(s)

    def wait_connections(self, count: int, timeout: float = 30.0) -> list[Seen]:
        """Wait until ``count`` connections got their act; AssertionError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.seen) >= count, timeout):
                raise AssertionError(f"{len(self.seen)} connections, not {count}, in {timeout} s")
            return list(self.seen)

    def requests(self) -> list[bytes]:
        """The request bytes every connection carried (forwarded ones: the first request)."""
        with self._cond:
            return [s.request for s in self.seen]

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:  # the 0.2 s accept timeout, or closed by close()
                continue
            with self._cond:
                act = self._script.pop(0) if self._script else self._then
                self._open.add(conn)
            threading.Thread(target=self._serve, args=(conn, act), daemon=True).start()

    def _serve(self, conn: socket.socket, act: Act | Answer | Forward) -> None:
        upstream: socket.socket | None = None
        try:
            request = read_request(conn)
            with self._cond:
                self.seen.append(Seen(act, request))
                self._cond.notify_all()
            if isinstance(act, Forward):
                upstream = socket.create_connection((act.host, act.port), timeout=5)
                upstream.settimeout(None)
                with self._cond:
                    self._open.add(upstream)
                upstream.sendall(request)
                pump(conn, upstream)
            elif isinstance(act, Answer):
                conn.sendall(act.encode())
            else:
                self._misbehave(conn, act)
        except OSError:  # the client went away first, or close() pulled the socket
            pass
        finally:
            with self._cond:
                self._open.discard(conn)
            close(conn)
            if upstream is not None:  # pump closes it, but not when sendall failed first
                close(upstream)

    def _misbehave(self, conn: socket.socket, act: Act) -> None:
        if act is Act.RESET:
            reset(conn)
        elif act is Act.SILENCE:
            conn.settimeout(0.2)
            while not self._stop.is_set() and _still_open(conn):
                pass  # hold the connection until the client gives up (or close())
        else:
            conn.sendall(misbehaviour_bytes(act))


class MisbehavingClients:
    """``with MisbehavingClients(port, path) as clients: clients.act(Act.RESET)``: misbehave
    as a server's client, with POSTs to ``path``. A SILENCE connection stays open, idle, until
    the block ends (the server's own timeout may close it first)."""

    def __init__(self, port: int, path: str = "/", host: str = "127.0.0.1") -> None:
        self._address = (host, port)
        self._path = path
        self._idle: list[socket.socket] = []

    def __enter__(self) -> MisbehavingClients:
        return self

    def __exit__(self, *exc: object) -> None:
        while self._idle:
            close(self._idle.pop())

    def act(self, act: Act) -> bytes:
        """Misbehave once; returns whatever the server answered before it closed."""
        sock = socket.create_connection(self._address, timeout=5)
        if act is Act.SILENCE:
            self._idle.append(sock)
            return b""
        try:
            if act is Act.RESET:  # the head promises 100 bytes, 1 comes, then a RST
                sock.sendall(self._head(100) + b"{")
                reset(sock)
                return b""
            if act is Act.CLOSE_MID_ANSWER:  # the head promises 200 bytes, 9 come, then EOF
                sock.sendall(self._head(200) + b'{"code":0')
                sock.shutdown(socket.SHUT_WR)
            elif act is Act.GARBAGE:
                sock.sendall(GARBAGE)
            else:  # BAD_BODY: a whole request whose body is nonsense
                sock.sendall(self._head(len(NONSENSE)) + NONSENSE)
            return _read_to_end(sock)
        finally:
            close(sock)

    def _head(self, length: int) -> bytes:
        return (
            f"POST {self._path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            f"\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        ).encode()


def _read_to_end(sock: socket.socket) -> bytes:
    answer = b""
    with contextlib.suppress(OSError):  # a reset or a timeout ends it as well
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def read_request(conn: socket.socket) -> bytes:
    """One request's head and ``Content-Length`` body (what arrived before an EOF)."""
    data = b""
    while CRLF2 not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head = data.partition(CRLF2)[0]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(data) < len(head) + len(CRLF2) + length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _still_open(conn: socket.socket) -> bool:
    try:
        return bool(conn.recv(65536))  # more request bytes: ignore them
    except TimeoutError:
        return True


def close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()


def pump(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes; never raises on a closed socket."""
    sel = selectors.DefaultSelector()
    try:
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        while True:
            for key, _ in sel.select(timeout=1.0):
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                data = src.recv(65536)
                if not data:
                    return
                key.data.sendall(data)
    except (OSError, ValueError):  # closed elsewhere: a closed socket has fileno -1
        return
    finally:
        sel.close()
        close(a)
        close(b)
