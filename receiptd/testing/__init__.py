"""In-memory twins of the ports (receiptd.ports), for unit tests without sockets, and the
settings that point receiptd at a running emulator (``receiptd.testing.emulated``)."""

from __future__ import annotations

from receiptd.testing.outbox import InMemoryEventOutbox
from receiptd.testing.queues import InMemoryQueue, InMemorySink
from receiptd.testing.sends import InMemorySendStore

__all__ = ["InMemoryEventOutbox", "InMemoryQueue", "InMemorySendStore", "InMemorySink"]
