"""Push mode: receipts delivered by HTTP POST to a callback URL instead of an MNS queue.

Behaviour: docs/push.md; the providers' facts and sources: docs/providers/aliyun-push.md and
docs/providers/huawei-koomessage.md. Alibaba POSTs JSON arrays (several receipts merged into
one request) and counts only HTTP 200 with a JSON ``code`` equal to the number 0 as success;
anything else is retried on the documented schedule and given up after the last attempt (the
receipt is then lost: only QuerySendDetails recovers it). KooMessage POSTs its AIM envelope
(``body`` a JSON string) and documents no retry schedule (``none``: one attempt).

Two readings of Alibaba's schedule exist: ``short`` (doc 101867: 1, 5, 10 minutes; its "3
attempts in all" read literally is ``short3``) and ``long`` (doc 414224:
1/5/10/30/60/60/60/60/60 minutes). Delays count from the previous failed
attempt, on the scheduler's clock. The international site documents one schedule for its
SmsReport push (1 and 5 minutes after a failure, 3 attempts in all: ``short3``), the default
of an international account's pushes; a China-site account's default stays ``long``.
``time_scale`` multiplies every delay, so tests run the schedule in seconds (or at full
length on a ``ManualClock`` they advance).

A sender thread survives whatever a receiver does to an attempt (a refused or reset
connection, a timeout, an answer cut short, bytes that are not HTTP): like the real provider,
it counts the attempt as failed and pushes again on the schedule.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import http.client
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from receiptd_emulator.koomessage_store import SendDetail
from receiptd_emulator.scheduler import Scheduler

log = logging.getLogger(__name__)
KINDS = ("SmsReport", "SmsUp", "koomessage")
SCHEDULES: Mapping[str, tuple[float, ...]] = {
    "short": (60.0, 300.0, 600.0),
    "short3": (60.0, 300.0),  # the same page's "3 attempts in all", the first push included
    "long": (60.0, 300.0, 600.0, 1800.0, 3600.0, 3600.0, 3600.0, 3600.0, 3600.0),
    "none": (),
}
#: A site's schedule when a PushSpec names none.
SITE_SCHEDULES: Mapping[str, str] = {"cn": "long", "intl": "short3"}


@dataclass(frozen=True)
class PushSpec:
    """Where and how one message type is pushed."""

    url: str
    batch: int = 100  # receipts merged into one request at most
    schedule: str | None = None  # None: the account's site's (SITE_SCHEDULES)
    time_scale: float = 1.0
    timeout: float = 5.0
    linger: float = 0.05  # seconds to wait for more receipts to merge
    senders: int = 4  # concurrent requests

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("push url must start with http:// or https://")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}")
        if self.batch < 1 or self.senders < 1 or self.time_scale < 0 or self.timeout <= 0:
            raise ValueError("batch and senders >= 1, time_scale >= 0, timeout > 0")

    @property
    def delays(self) -> tuple[float, ...]:
        schedule = self.schedule or SITE_SCHEDULES["cn"]
        return tuple(d * self.time_scale for d in SCHEDULES[schedule])

    def for_site(self, site: str) -> PushSpec:
        """This spec with its schedule named: the given one, else the site's."""
        return self if self.schedule else replace(self, schedule=SITE_SCHEDULES[site])


@dataclass
class PushStats:
    requests: int = 0
    accepted: int = 0  # requests answered 200 + code 0
    failed: int = 0  # attempts that failed (each is retried or given up)
    delivered: int = 0  # receipts in accepted requests
    given_up: int = 0  # receipts lost after the last attempt
    answers: dict[str, int] = field(default_factory=dict)  # status → attempts

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def accepted(status: int, body: bytes) -> bool:
    """Only HTTP 200 with JSON ``code`` the number 0 (not ``false``, not ``"0"``) counts."""
    if status != 200:
        return False
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    code = answer.get("code") if isinstance(answer, dict) else None
    return type(code) is int and code == 0


def aliyun_body(elements: Sequence[Any], attempt: int) -> bytes:
    return json.dumps(list(elements), ensure_ascii=False).encode("utf-8")


def koomessage_body(elements: Sequence[Any], attempt: int) -> bytes:
    """The AIM envelope; ``body`` holds one object (single send) or an array (batch)."""
    inner = elements[0] if len(elements) == 1 else list(elements)
    envelope = {
        "request_id": uuid.uuid4().hex,
        "domain_id": "receiptd-emulator",
        "callback_type": "sms",
        "body": json.dumps(inner, ensure_ascii=False),
        "retry": attempt > 0,
    }
    return json.dumps(envelope, ensure_ascii=False).encode("utf-8")


def queue_element(body: str) -> Any:
    """A queue body (base64 of JSON) as the element the push would carry; a malformed body
    stays malformed (its text, as a JSON string)."""
    try:
        return json.loads(base64.b64decode(body, validate=True).decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return body


@dataclass
class _Request:
    elements: list[Any]
    attempt: int = 0


class Pusher:
    """Buffers receipts, merges them into requests and POSTs them with retries."""

    def __init__(
        self,
        spec: PushSpec,
        encode: Callable[[Sequence[Any], int], bytes],
        scheduler: Scheduler,
    ) -> None:
        self.spec = spec
        self._encode = encode
        self._scheduler = scheduler
        self.stats = PushStats()
        self._lock = threading.Condition()
        self._buffer: list[Any] = []
        self._requests: queue.Queue[_Request | None] = queue.Queue()
        # Receipts by stage; every move between stages happens under the lock, so pending()
        # never sees a receipt in none of them.
        self._queued = 0
        self._retrying = 0
        self._in_flight = 0
        self._stopped = False
        self._threads = [threading.Thread(target=self._flush_loop, daemon=True)] + [
            threading.Thread(target=self._send_loop, daemon=True) for _ in range(spec.senders)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, elements: Sequence[Any]) -> None:
        with self._lock:
            self._buffer.extend(elements)
            self._lock.notify_all()

    def pending(self) -> int:
        """Receipts not yet accepted nor given up (buffered, queued, in flight, retrying)."""
        with self._lock:
            return len(self._buffer) + self._queued + self._in_flight + self._retrying

    def snapshot(self) -> dict[str, Any]:
        """The stats, ``pending`` and ``retrying`` (receipts waiting for a retry timer)."""
        with self._lock:
            return {**self.stats.as_dict(), "pending": self.pending(), "retrying": self._retrying}

    def wait_until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        """Wait until ``predicate(snapshot())`` holds; every change of stage notifies.

        A retry's timer is set in the same locked step that counts its receipts as retrying,
        so ``retrying == n`` means n receipts wait for timers that exist (a test on a
        ManualClock may advance it then)."""
        with self._lock:
            return self._lock.wait_for(lambda: predicate(self.snapshot()), timeout)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
        for _ in range(self.spec.senders):
            self._requests.put(None)
        for thread in self._threads:
            thread.join(timeout=self.spec.timeout + 1)

    def _flush_loop(self) -> None:
        # No peer is involved here (receipts move from the buffer to the request queue):
        # nothing a receiver does can raise in this loop, so it catches nothing.
        while True:
            with self._lock:
                while not self._buffer and not self._stopped:
                    self._lock.wait()
                if self._stopped:
                    return
            time.sleep(self.spec.linger)  # let a burst gather into one request
            with self._lock:
                taken, self._buffer = self._buffer, []
                for start in range(0, len(taken), self.spec.batch):
                    self._enqueue(_Request(taken[start : start + self.spec.batch]))

    def _enqueue(self, request: _Request) -> None:
        """Hand a request to the senders (the lock is held)."""
        self._queued += len(request.elements)
        self._requests.put(request)
        self._lock.notify_all()

    def _send_loop(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                return
            with self._lock:
                self._queued -= len(request.elements)
                self._in_flight += len(request.elements)
            try:
                self._record(request, *self._attempt(request))
            finally:
                with self._lock:
                    self._in_flight -= len(request.elements)
                    self._lock.notify_all()  # wait_until

    def _attempt(self, request: _Request) -> tuple[str, bool]:
        """(the answer's status or the failure's name, accepted) of one POST."""
        try:
            return self._post(self._encode(request.elements, request.attempt))
        except Exception as exc:
            # A catch-all on purpose: _post already turns everything a receiver can do into a
            # failed attempt, so what arrives here is an emulator defect (elements that do not
            # encode, say). It fails this attempt like any other, to be retried and finally
            # counted as given up: the sender thread never dies, no receipt vanishes uncounted.
            log.exception("emulator push attempt failed")
            return type(exc).__name__, False

    def _record(self, request: _Request, status: str, ok: bool) -> None:
        with self._lock:
            self.stats.requests += 1
            self.stats.answers[status] = self.stats.answers.get(status, 0) + 1
            if ok:
                self.stats.accepted += 1
                self.stats.delivered += len(request.elements)
                return
            self.stats.failed += 1
            delays = self.spec.delays
            if request.attempt >= len(delays) or self._stopped:
                self.stats.given_up += len(request.elements)
                log.warning("emulator push gave up %d receipts", len(request.elements))
                return
            retry = _Request(request.elements, request.attempt + 1)
            # Under the lock (the scheduler never calls back into a pusher while holding
            # its own): a receipt counted as retrying always has its timer.
            self._scheduler.after(delays[request.attempt], lambda: self._requeue(retry))
            self._retrying += len(request.elements)
            self._lock.notify_all()

    def _requeue(self, request: _Request) -> None:
        with self._lock:
            self._retrying -= len(request.elements)
            self._enqueue(request)

    def _post(self, body: bytes) -> tuple[str, bool]:
        req = urllib.request.Request(  # noqa: S310 - the URL is checked to be http(s)
            self.spec.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json;charset=UTF-8"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.spec.timeout) as answer:  # noqa: S310
                return str(answer.status), accepted(answer.status, answer.read())
        except urllib.error.HTTPError as exc:
            exc.close()
            return str(exc.code), False
        # Everything a receiver can do to an attempt: refuse or reset the connection, time
        # out (OSError: URLError, ConnectionResetError, TimeoutError), close it mid-answer or
        # answer bytes that are not HTTP (HTTPException: IncompleteRead, RemoteDisconnected,
        # BadStatusLine, LineTooLong), send a header urllib cannot use (ValueError).
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return type(exc).__name__, False


def build(kind: str, spec: PushSpec, scheduler: Scheduler) -> Pusher:
    if kind not in KINDS:
        raise ValueError(f"push type must be one of {KINDS}, not {kind!r}")
    encode = koomessage_body if kind == "koomessage" else aliyun_body
    return Pusher(spec, encode, scheduler)


def koomessage_element(detail: SendDetail) -> dict[str, Any] | None:
    """The ``sms`` callback element of a final send detail (None while still sending).

    ``send_status`` uses the callback page's example word ``Deliverd`` for success and the
    send-details API's ``fail`` otherwise; times as in the page's example (no zone, UTC).
    """
    if detail.send_status not in ("success", "fail"):
        return None
    receive = detail.receive_time or detail.send_time
    return {
        "task_id": detail.task_id,
        "cust_flag": detail.cust_flag,
        "msg_id": detail.msg_id,
        "tpl_id": detail.tpl_id,
        "sms_sign": detail.sms_sign,
        "aim_code": detail.msg_id[-8:],
        "aim_url": f"https://aim.example/{detail.msg_id[-8:]}",
        "send_time": _naive_utc(detail.send_time),
        "receive_time": _naive_utc(receive),
        "send_status": "Deliverd" if detail.send_status == "success" else "fail",
        "send_status_desc": detail.result_code or detail.send_status,
    }


def _naive_utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
