"""The small interfaces between the core (consumer, compensator, webhooks) and the outside world.

Adapters (``receiptd.db``, ``receiptd.providers.*``) implement them; ``receiptd.testing`` has
in-memory twins. No SDK or driver exception type crosses these boundaries: adapters raise the
errors of ``receiptd.errors`` (one tree under ``ReceiptdError``), re-exported here beside the
ports that raise them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol

from receiptd import domain
from receiptd.errors import LookupFailed as LookupFailed
from receiptd.errors import LookupThrottled as LookupThrottled
from receiptd.errors import LookupUnavailable as LookupUnavailable
from receiptd.errors import QueueAuthError as QueueAuthError
from receiptd.errors import QueueError as QueueError
from receiptd.errors import QueueNotFound as QueueNotFound
from receiptd.errors import ReceiptdError as ReceiptdError
from receiptd.errors import StatusLookupError as StatusLookupError
from receiptd.errors import StoreError as StoreError
from receiptd.errors import StoreUnavailable as StoreUnavailable
from receiptd.errors import StoreWriteError as StoreWriteError

# --- queues -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """One received queue message; ``body`` is the raw text exactly as the queue holds it."""

    message_id: str
    receipt_handle: str
    body: str
    dequeue_count: int = 1
    enqueued_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeleteFailure:
    receipt_handle: str
    code: str
    message: str


class ReceiptQueue(Protocol):
    """A receipt queue: an empty queue is ``[]``, never an exception."""

    @property
    def name(self) -> str: ...

    def receive(self, max_messages: int, wait_seconds: int) -> list[QueueMessage]: ...

    def delete(self, receipt_handles: Sequence[str]) -> list[DeleteFailure]: ...

    def abort(self) -> None:
        """From another thread, on stop: end a receive under way (it returns ``[]`` or raises
        QueueError) and any later one at once. The adapter is closed afterwards."""
        ...

    def close(self) -> None: ...


# --- the store ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """``message_id`` names the carrier message: the MNS MessageId, or for a push the
    request id and element index (logs only; push rows store no mns_message_id)."""

    message_id: str
    report: domain.SmsReport
    channel: domain.Channel = domain.Channel.MNS
    account: str = domain.DEFAULT_ACCOUNT  # whose queue or push path it came by


@dataclass(frozen=True, slots=True)
class InboundRecord:
    message_id: str
    reply: domain.SmsUp
    channel: domain.Channel = domain.Channel.MNS
    account: str = domain.DEFAULT_ACCOUNT


@dataclass(frozen=True, slots=True)
class DeadRecord:
    queue: str
    message_id: str
    raw_body: bytes
    error: str
    account: str = domain.DEFAULT_ACCOUNT


@dataclass(frozen=True, slots=True)
class Batch:
    """What one received batch turns into; written in one transaction."""

    reports: Sequence[ReportRecord] = ()
    inbound: Sequence[InboundRecord] = ()
    dead: Sequence[DeadRecord] = ()

    def __len__(self) -> int:
        return len(self.reports) + len(self.inbound) + len(self.dead)


@dataclass(frozen=True, slots=True)
class BatchResult:
    reports_new: int = 0
    inbound_new: int = 0
    dead_new: int = 0
    sends_settled: int = 0


class ReceiptSink(Protocol):
    """Where the consumer writes; every write is idempotent."""

    def write_batch(self, batch: Batch, now: datetime) -> BatchResult: ...

    def ping(self) -> None: ...


@dataclass(frozen=True, slots=True)
class NewSend:
    """A send to register: one row per recipient."""

    provider: domain.Provider
    biz_id: str
    phone_number: str
    sent_at: datetime
    out_id: str | None = None
    template_code: str | None = None
    sign_name: str | None = None
    account: str = domain.DEFAULT_ACCOUNT  # whose keys sent it: the only ones that can ask
    # ``biz_id`` is a MessageId for SendMessageToGlobe and its siblings (2018-05-01).
    matched_by: domain.SendKey = domain.SendKey.BIZ_ID
    task_id: str | None = None


@dataclass(frozen=True, slots=True)
class PendingSend:
    """A claimed pending send the compensator must look up."""

    id: int
    provider: domain.Provider
    biz_id: str
    phone_number: str
    sent_at: datetime
    send_date: date
    out_id: str | None
    template_code: str | None
    check_count: int
    account: str = domain.DEFAULT_ACCOUNT
    matched_by: domain.SendKey = domain.SendKey.BIZ_ID  # QuerySendDetails, or QueryMessage


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a lookup found for one send: a final status, or ``PENDING`` (try again later)."""

    send_id: int
    status: domain.SendStatus
    settled_by: domain.SettledBy = domain.SettledBy.QUERY
    err_code: str | None = None
    err_msg: str | None = None


@dataclass(frozen=True, slots=True)
class StatusSummary:
    # (provider, account, status) → sends
    counts: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # (provider, account, status, settled_by; "" while pending) → sends: ``GET /v1/stats``
    settled: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    # (provider, account) → sent_at of its oldest pending send
    oldest_pending: dict[tuple[str, str], datetime] = field(default_factory=dict)
    last_run_started: datetime | None = None
    last_run_finished: datetime | None = None
    dead_letters: int = 0
    inbound: int = 0

    def by_provider(self) -> dict[tuple[str, str], int]:
        """(provider, status) → sends, every account together."""
        totals: dict[tuple[str, str], int] = {}
        for (provider, _account, status), n in self.counts.items():
            totals[provider, status] = totals.get((provider, status), 0) + n
        return totals


CLAIM_LEASE = timedelta(minutes=15)  # a claim not settled or released by then is free again


class SendStore(Protocol):
    """The send registry as the compensator (and registration) need it.

    Every method is one short transaction; claims are leases (a crashed claimant's sends
    become due again when ``claimed_until`` passes). ``receiptd.db.sends.SendStore`` is the
    SQL implementation, ``receiptd.testing.InMemorySendStore`` the twin; one contract suite
    (tests/integration/test_send_store_contract.py) runs over both.
    """

    def register(self, sends: Sequence[NewSend], now: datetime) -> int:
        """Insert new sends (existing ones are left alone); returns rows inserted."""
        ...

    def claim_due(
        self,
        provider: domain.Provider,
        now: datetime,
        grace: timedelta,
        limit: int,
        *,
        account: str = domain.DEFAULT_ACCOUNT,
    ) -> list[PendingSend]:
        """Lease up to ``limit`` due sends of one account (pending, older than ``grace``, next
        check reached, unclaimed), oldest first, to the caller alone."""
        ...

    def peek_due(
        self,
        provider: domain.Provider,
        now: datetime,
        grace: timedelta,
        limit: int,
        *,
        account: str = domain.DEFAULT_ACCOUNT,
    ) -> list[PendingSend]:
        """The sends ``claim_due`` would claim now, without claiming them."""
        ...

    def expire_outside_window(
        self,
        provider: domain.Provider,
        oldest: date,
        now: datetime,
        *,
        account: str = domain.DEFAULT_ACCOUNT,
    ) -> int:
        """Settle as expired (``window``) every pending send of one account dated before
        ``oldest``."""
        ...

    def settle(
        self,
        settlements: Sequence[Settlement],
        pending: Sequence[PendingSend],
        now: datetime,
        base_backoff: float,
        max_backoff: float,
        horizon: timedelta | None = None,
    ) -> int:
        """Apply the settlements (``domain.next_status`` decides: delivered/failed never
        change, expired gives way to delivered/failed); every other send of ``pending`` is
        released with its next check backed off, never past its ``horizon``
        (``receiptd.compensation.horizon.next_check_at``). Returns sends settled."""
        ...

    def start_run(self, replica: str, now: datetime) -> int: ...

    def finish_run(self, run_id: int, now: datetime, **counts: int) -> None: ...

    def summary(self) -> StatusSummary: ...


# --- the event outbox, as the webhook dispatcher sees it ------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery this worker holds until its lease ends: POST it, then record the outcome."""

    delivery_id: int
    event_id: str
    event_type: str
    created_at: datetime
    attempts: int  # attempts made before this one
    pending_since: datetime
    body: str
    account: str = domain.DEFAULT_ACCOUNT  # whose event: the metrics' ``account`` label


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """What one POST of a claimed delivery came to, and what to do next."""

    delivery_id: int
    result: domain.DeliveryStatus  # delivered, dead, or pending (retry at ``next_attempt_at``)
    status_code: int | None
    error: str | None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryBacklog:
    pending: int
    oldest: datetime | None  # the oldest pending delivery became due then


class EventOutbox(Protocol):
    """The deliveries of committed events, one per interested endpoint.

    Every method is one short transaction. Claims are leases: a claimant that dies leaves its
    deliveries due again when the lease ends (at-least-once). ``receiptd.db.deliveries.
    SqlEventOutbox`` is the SQL implementation, ``receiptd.testing.InMemoryEventOutbox`` the
    twin; one contract suite (tests/integration/test_event_outbox_contract.py) runs over both.
    """

    def claim(
        self, endpoint: str, now: datetime, limit: int, lease: timedelta
    ) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` of the endpoint's pending deliveries due by ``now`` (the
        earliest due first) to the caller alone, until ``now + lease``."""
        ...

    def record(self, attempts: Sequence[DeliveryAttempt], now: datetime) -> None:
        """Store each attempt's outcome (one more attempt; a delivery no longer pending
        stays as it is)."""
        ...

    def release(self, delivery_ids: Sequence[int], now: datetime) -> None:
        """Hand claimed but unattempted deliveries back, due at ``now`` (a worker stopping)."""
        ...

    def backlog(self) -> dict[str, DeliveryBacklog]:
        """Pending deliveries per endpoint (endpoints with none are absent)."""
        ...

    def prune(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` events created before ``before`` that no endpoint still
        waits for (every delivery delivered or dead), with their deliveries; returns events
        deleted."""
        ...


# --- status lookups (QuerySendDetails, KooMessage send-details) -----------------------------


@dataclass(frozen=True, slots=True)
class LookupResult:
    settlements: list[Settlement]
    calls: dict[str, int]  # result ("ok", "throttled", "error", ...) → number of API calls


class LoopHealth(Protocol):
    """Where a loop reports that it lives (``receiptd.daemon.health.Health``, read by the
    probes): a heartbeat while it works, a success, an error, or idle between runs."""

    def register(self, loop: str) -> None: ...

    def heartbeat(self, loop: str) -> None: ...

    def idle(self, loop: str) -> None: ...

    def success(self, loop: str) -> None: ...

    def error(self, loop: str, message: str) -> None: ...


class RateLimiter(Protocol):
    def acquire(self) -> None:
        """Block until one more request is allowed."""


class StatusLookup(Protocol):
    """One provider's way of finding final statuses of pending sends.

    A third provider implements this and registers it; the compensator core does not change.
    """

    @property
    def provider(self) -> domain.Provider: ...

    def in_window(self, send: PendingSend, now: datetime) -> bool:
        """Whether the provider can still answer for this send (else it expires)."""
        ...

    def lookup(self, sends: Sequence[PendingSend], limiter: RateLimiter) -> LookupResult:
        """Settlements for the sends it could match exactly; the rest stay pending.

        Raises LookupThrottled / LookupUnavailable / LookupFailed only when nothing could be
        looked up; partial progress is returned with the error counted in ``calls``.
        """
        ...


# --- callbacks ------------------------------------------------------------------------------


def nothing() -> None:
    """The callback that does nothing: the default heartbeat, stop and dispose."""
    return None
