"""All construction: Settings in, core objects joined to their adapters out.

The only package that reads ``Settings`` beyond the CLI, and the only one that knows both the
core (consumer, compensator, service) and the adapters (``receiptd.db``,
``receiptd.providers``). ``receiptd run``, ``consume``, ``compensate``, the demo and the
benchmarks are all wired here, so each is wired the same way. See docs/architecture.md.
"""

from __future__ import annotations

from receiptd.wiring.core import (
    compensator,
    compensator_horizons,
    consumers,
    daemon_consumers,
    event_outbox,
    pruner,
    queue_kinds,
    replica_name,
    retention_cutoffs,
    stores,
)
from receiptd.wiring.providers import (
    dysms_client,
    globe_client,
    queue_factory,
    queue_name,
    rate_limiter,
    status_lookups,
    token_fetcher,
)

__all__ = [
    "compensator",
    "compensator_horizons",
    "consumers",
    "daemon_consumers",
    "dysms_client",
    "event_outbox",
    "globe_client",
    "pruner",
    "queue_factory",
    "queue_kinds",
    "queue_name",
    "rate_limiter",
    "replica_name",
    "retention_cutoffs",
    "status_lookups",
    "stores",
    "token_fetcher",
]
