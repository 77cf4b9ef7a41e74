"""MNS queue semantics, free of HTTP: visibility timeouts, receipt handles, delays, long polling.

Costs: send, receive and delete are O(1) per message (a dict, a deque of visible messages and a
heap of timed transitions whose stale entries are dropped lazily by generation number).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from receiptd_emulator.mns_handles import HandleCodec

VISIBLE, INFLIGHT, DELAYED = 0, 1, 2


class MnsError(Exception):
    """An MNS error answer (the MNS API reference's error responses)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status = status
        self.code = code
        self.message = message


def handle_error() -> MnsError:
    return MnsError(400, "ReceiptHandleError", "The receipt handle you provide is not valid.")


def message_not_exist() -> MnsError:
    return MnsError(404, "MessageNotExist", "Message not exist.")


@dataclass(frozen=True, slots=True)
class QueueMeta:
    visibility_timeout: int = 30
    maximum_message_size: int = 65536
    message_retention_period: int = 345600
    delay_seconds: int = 0
    polling_wait_seconds: int = 0
    logging_enabled: bool = False


@dataclass(frozen=True, slots=True)
class MessageView:
    """A message as ReceiveMessage/PeekMessage report it (times in epoch milliseconds)."""

    message_id: str
    receipt_handle: str
    body_md5: str
    body: str
    enqueue_ms: int
    next_visible_ms: int
    first_dequeue_ms: int
    dequeue_count: int
    priority: int


class _Message:
    __slots__ = (
        "body",
        "dequeue_count",
        "enqueue_time",
        "first_dequeue_ms",
        "gen",
        "handle",
        "md5",
        "message_id",
        "next_visible",
        "priority",
        "seq",
        "state",
    )

    def __init__(self, seq: int, message_id: str, body: str, priority: int, now: float) -> None:
        self.seq = seq
        self.message_id = message_id
        self.body = body
        self.md5 = hashlib.md5(body.encode()).hexdigest().upper()  # noqa: S324 - MNS field
        self.priority = priority
        self.enqueue_time = now
        self.first_dequeue_ms = 0
        self.dequeue_count = 0
        self.gen = 0
        self.handle = ""
        self.next_visible = now
        self.state = -1  # not yet placed

    def view(self) -> MessageView:
        return MessageView(
            self.message_id,
            self.handle,
            self.md5,
            self.body,
            int(self.enqueue_time * 1000),
            int(self.next_visible * 1000),
            self.first_dequeue_ms,
            self.dequeue_count,
            self.priority,
        )


class MnsQueue:
    """One queue. Every public method is thread-safe; `receive` may block (long polling)."""

    def __init__(self, name: str, meta: QueueMeta, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.meta = meta
        self._clock = clock
        self.created = self.modified = int(clock())
        self._cond = threading.Condition()
        self._messages: dict[int, _Message] = {}
        self._visible: deque[int] = deque()
        self._timed: list[tuple[float, int, int]] = []  # (due, seq, gen)
        self._counts = [0, 0, 0]  # by state
        self._seq = itertools.count(1)
        self._id_prefix = f"{random.getrandbits(64):016X}"
        self._closed = False
        self._handles = HandleCodec()

    # -- sending -------------------------------------------------------------------------
    def send(self, body: str, delay: float | None = None, priority: int = 8) -> MessageView:
        return self.send_many([(body, delay, priority)])[0]

    def send_many(self, items: Iterable[tuple[str, float | None, int]]) -> list[MessageView]:
        return [m.view() for m in self._add_all(items)]

    def push(self, bodies: Iterable[str]) -> int:
        """Bulk enqueue (receipt delivery, seeding): no views built; returns the count."""
        return len(self._add_all((body, 0, 8) for body in bodies))

    def _add_all(self, items: Iterable[tuple[str, float | None, int]]) -> list[_Message]:
        with self._cond:
            now = self._clock()
            sent = [self._add(body, delay, priority, now) for body, delay, priority in items]
            if any(m.state == VISIBLE for m in sent):
                self._cond.notify_all()
            return sent

    def _add(self, body: str, delay: float | None, priority: int, now: float) -> _Message:
        seq = next(self._seq)
        message_id = f"{self._id_prefix}-1-{int(now * 1000):X}-{seq:09d}"
        message = _Message(seq, message_id, body, priority, now)
        self._messages[seq] = message
        delay = self.meta.delay_seconds if delay is None else delay
        if delay > 0:
            self._schedule(message, DELAYED, now + delay)
        else:
            self._set_state(message, VISIBLE)
            self._visible.append(seq)
        return message

    # -- receiving -----------------------------------------------------------------------
    def receive(
        self, count: int, wait_seconds: float | None = None, visibility: int | None = None
    ) -> list[MessageView]:
        """Up to `count` messages, waiting up to `wait_seconds` (None: queue default) for one.

        Returns as soon as any message is visible: senders notify the condition, and the wait
        is cut short at the next scheduled delay/visibility expiry.
        """
        wait = self.meta.polling_wait_seconds if wait_seconds is None else wait_seconds
        timeout = visibility or self.meta.visibility_timeout
        with self._cond:
            deadline = self._clock() + wait
            while True:
                self._check_open()
                now = self._clock()
                self._promote(now)
                taken = self._take(count, now, timeout)
                if taken or now >= deadline:
                    return taken
                pause = deadline - now
                if self._timed:
                    pause = min(pause, max(0.0, self._timed[0][0] - now))
                self._cond.wait(pause)

    def _take(self, count: int, now: float, timeout: int) -> list[MessageView]:
        taken: list[MessageView] = []
        expiry = now - self.meta.message_retention_period
        while self._visible and len(taken) < count:
            message = self._messages.get(self._visible.popleft())
            if message is None or message.state != VISIBLE:
                continue
            if message.enqueue_time < expiry:  # retention period over: MNS drops it
                self._counts[VISIBLE] -= 1
                del self._messages[message.seq]
                continue
            message.dequeue_count += 1
            if message.dequeue_count == 1:
                message.first_dequeue_ms = int(now * 1000)
            self._schedule(message, INFLIGHT, now + timeout)
            taken.append(message.view())
        return taken

    def peek(self, count: int) -> list[MessageView]:
        with self._cond:
            self._check_open()
            self._promote(self._clock())
            views = (self._messages[seq] for seq in self._visible if seq in self._messages)
            return [m.view() for m in itertools.islice(views, count)]

    # -- handles -------------------------------------------------------------------------
    def delete(self, handle: str) -> None:
        with self._cond:
            self._remove(self._held(handle))

    def delete_many(self, handles: list[str]) -> list[tuple[str, MnsError]]:
        """Deletes what it can; returns (handle, error) for each handle it could not delete."""
        failed: list[tuple[str, MnsError]] = []
        with self._cond:
            for handle in handles:
                try:
                    message = self._held(handle)
                except MnsError as error:
                    failed.append((handle, error))
                    continue
                self._remove(message)
        return failed

    def _remove(self, message: _Message) -> None:
        del self._messages[message.seq]
        self._counts[message.state] -= 1

    def change_visibility(self, handle: str, timeout: int) -> MessageView:
        """Issue a new handle valid for `timeout` seconds; the old handle stops working."""
        with self._cond:
            message = self._held(handle)
            self._schedule(message, INFLIGHT, self._clock() + timeout)
            return message.view()

    def expire_inflight(self) -> int:
        """Test control: every in-flight message's visibility timeout ends now, as if that
        much time had passed (a controlled clock for redelivery): visible again, its handle
        stale, its DequeueCount raised by the next receive. Returns how many."""
        with self._cond:
            now = self._clock()
            expired = [m for m in self._messages.values() if m.state == INFLIGHT]
            for message in expired:
                message.gen += 1  # voids its pending heap entry
                message.next_visible = now
                self._set_state(message, VISIBLE)
                self._visible.append(message.seq)
            if expired:
                self._cond.notify_all()
            return len(expired)

    def _held(self, handle: str) -> _Message:
        """The in-flight message `handle` currently holds, or the MNS error for it."""
        self._check_open()
        seq = self._handles.decode(handle)
        message = self._messages.get(seq) if seq is not None else None
        if message is None:
            raise message_not_exist() if seq is not None else handle_error()
        if message.handle != handle or message.state != INFLIGHT:
            raise handle_error()
        if self._clock() >= message.next_visible:
            raise handle_error()  # valid only until NextVisibleTime
        return message

    # -- state machinery -----------------------------------------------------------------
    def _set_state(self, message: _Message, state: int) -> None:
        if message.state >= 0:
            self._counts[message.state] -= 1
        self._counts[state] += 1
        message.state = state

    def _schedule(self, message: _Message, state: int, due: float) -> None:
        """Move to DELAYED/INFLIGHT until `due`; a new generation voids older heap entries."""
        self._set_state(message, state)
        message.gen += 1
        message.next_visible = due
        if state == INFLIGHT:
            message.handle = self._handles.encode(message.seq, message.gen)
        heapq.heappush(self._timed, (due, message.seq, message.gen))

    def _promote(self, now: float) -> None:
        timed = self._timed
        while timed and timed[0][0] <= now:
            _, seq, gen = heapq.heappop(timed)
            message = self._messages.get(seq)
            if message is None or message.gen != gen:
                continue  # deleted or rescheduled since
            self._set_state(message, VISIBLE)
            self._visible.append(seq)

    def depth(self) -> dict[str, int]:
        with self._cond:
            self._promote(self._clock())
            return {
                "visible": self._counts[VISIBLE],
                "inflight": self._counts[INFLIGHT],
                "delayed": self._counts[DELAYED],
            }

    def _check_open(self) -> None:
        if self._closed:
            raise MnsError(404, "QueueNotExist", "The queue name you provided is not exist.")

    def close(self) -> None:
        """Wake every long poller; later calls fail with QueueNotExist."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
