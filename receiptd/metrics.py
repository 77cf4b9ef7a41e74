"""Prometheus metrics. Names and labels are a documented interface (docs/operations.md).

Recording a metric never fails message processing: prometheus-client does not raise on
``inc``/``observe`` with valid labels, and every label value used here is a fixed word or a
configured account id (bounded: accounts are configured; a push for an unknown one counts as
``unknown``); a receipt error code is reduced to its family (``receiptd.error_families``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

from receiptd import __version__

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_* (silently absent where /proc is hidden)

MESSAGES = Counter(
    "receiptd_messages",
    "Queue messages handled, by queue (report|up) and outcome "
    "(stored|duplicate|dead_letter|delete_failed).",
    ["account", "queue", "outcome"],
    registry=REGISTRY,
)
BATCH_DURATION = Histogram(
    "receiptd_batch_duration_seconds",
    "Time from a batch's receipt to its deletion, by account and queue.",
    ["account", "queue"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
LOOP_ERRORS = Counter(
    "receiptd_loop_errors",
    "Errors a loop recovered from by backing off, by loop and kind (queue|database|auth).",
    ["loop", "kind"],
    registry=REGISTRY,
)
SENDS = Gauge(
    "receiptd_sends",
    "Sends by provider, account and status (refreshed each compensation cycle).",
    ["provider", "account", "status"],
    registry=REGISTRY,
)
OLDEST_PENDING = Gauge(
    "receiptd_oldest_pending_seconds",
    "Age of the oldest pending send, by provider and account.",
    ["provider", "account"],
    registry=REGISTRY,
)
COMPENSATOR_CALLS = Counter(
    "receiptd_compensator_calls",
    "Status-query API calls, by provider, account and result (ok|throttled|error|unavailable).",
    ["provider", "account", "result"],
    registry=REGISTRY,
)
SETTLED = Counter(
    "receiptd_sends_settled",
    "Sends that reached a final status, by provider, account and path "
    "(receipt|query|window|horizon).",
    ["provider", "account", "path"],
    registry=REGISTRY,
)
COMPENSATOR_RUNS = Counter(
    "receiptd_compensator_runs",
    "Compensation cycles, by result (ok|error).",
    ["result"],
    registry=REGISTRY,
)
PRUNED = Counter(
    "receiptd_pruned_rows",
    "Rows deleted by retention (receiptd prune and the daily job), by table.",
    ["table"],
    registry=REGISTRY,
)
TOKEN_REFRESHES = Counter(
    "receiptd_token_refreshes",
    "QueryTokenForMnsQueue calls, by account, message type and result.",
    ["account", "message_type", "result"],
    registry=REGISTRY,
)
HEARTBEAT_AGE = Gauge(
    "receiptd_loop_heartbeat_age_seconds",
    "Seconds since each loop last reported progress.",
    ["loop"],
    registry=REGISTRY,
)
# HTTP push (receipts pushed by Alibaba and KooMessage; docs/operations.md).
PUSH_REQUESTS = Counter(
    "receiptd_push_requests",
    "Push requests answered, by provider (aliyun|huawei|unknown), account (a configured "
    "one, or unknown), type (report|up|send_status|unknown) and result (stored|dead_letter|"
    "rejected|too_large|unavailable|not_found|forbidden).",
    ["provider", "account", "type", "result"],
    registry=REGISTRY,
)
PUSH_DURATION = Histogram(
    "receiptd_push_request_duration_seconds",
    "Time from a push request's body read to its answer, by provider, account and type.",
    ["provider", "account", "type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
RECEIPTS = Counter(
    "receiptd_receipts",
    "Receipts and replies by account, channel (mns|push), type (report|up) and outcome "
    "(stored|duplicate|dead_letter|ignored): MNS and push side by side.",
    ["account", "channel", "type", "outcome"],
    registry=REGISTRY,
)
# Connection bounds of the HTTP listeners (receiptd.web.connections; docs/push.md).
HTTP_CONNECTIONS = Gauge(
    "receiptd_http_connections",
    "Connections a listener holds open, by listener (push|ops).",
    ["listener"],
    registry=REGISTRY,
)
HTTP_CONNECTIONS_CLOSED = Counter(
    "receiptd_http_connections_closed",
    "Connections a listener closed or refused to protect itself, by listener (push|ops) and "
    "reason (source_limit|shed|full|header_timeout|body_timeout|idle_timeout).",
    ["listener", "reason"],
    registry=REGISTRY,
)
# Webhooks (event outbox + dispatcher).
EVENTS = Counter(
    "receiptd_events",
    "Webhook delivery attempts, by account, event type and result (delivered|failed|dead); "
    "failed attempts are retried until the retry period ends, then the delivery is dead.",
    ["account", "type", "result"],
    registry=REGISTRY,
)
EVENT_DELIVERY_SECONDS = Histogram(
    "receiptd_event_delivery_seconds",
    "Time from an event's creation (its change committed) to its delivery, by endpoint.",
    ["endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400),
    registry=REGISTRY,
)
EVENTS_PENDING = Gauge(
    "receiptd_events_pending",
    "Deliveries not yet made, by endpoint (refreshed every 5 s).",
    ["endpoint"],
    registry=REGISTRY,
)
EVENTS_OLDEST_PENDING = Gauge(
    "receiptd_events_oldest_pending_seconds",
    "Age of the oldest delivery not yet made, by endpoint (alert on it: endpoint down).",
    ["endpoint"],
    registry=REGISTRY,
)
# MNS long polling: refused polls, polls cut short by a stop.
POLLS_REFUSED = Counter(
    "receiptd_mns_polls_refused",
    "Long polls MNS answered empty much sooner than the wait asked for (its long-poll cap), "
    "by account and queue.",
    ["account", "queue"],
    registry=REGISTRY,
)
POLLS_ABANDONED = Counter(
    "receiptd_mns_polls_abandoned",
    "Idle long polls a stop cut short by closing their connection, by queue (a message MNS "
    "handed to one comes back after its visibility timeout), by account and queue.",
    ["account", "queue"],
    registry=REGISTRY,
)
# Poison: bodies receiptd's own code crashed on, messages quarantined by their DequeueCount.
BODIES_CRASHED = Counter(
    "receiptd_bodies_crashed",
    "Bodies whose decoding or storing raised an unexpected error (a receiptd defect; each is "
    "dead-lettered and logged as body_crashed), by channel and stage.",
    ["channel", "stage"],
    registry=REGISTRY,
)
QUARANTINED = Counter(
    "receiptd_messages_quarantined",
    "Messages dead-lettered unread because MNS had delivered them more than "
    "consumer_max_dequeue times, by account and queue.",
    ["account", "queue"],
    registry=REGISTRY,
)
# Latency and outcome (issue 25): how late receipts arrive, how long handsets take, what fails.
RECEIPT_LAG = Histogram(
    "receiptd_receipt_lag_seconds",
    "Time from the provider's enqueue (MNS EnqueueTime; a push: its arrival) to the commit of "
    "the receipt or reply, by channel (mns|push) and account.",
    ["channel", "account"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600),
    registry=REGISTRY,
)
DELIVERY_SECONDS = Histogram(
    "receiptd_delivery_seconds",
    "Time from the provider's send time to its report time of a new receipt (how long "
    "handsets take), by provider and account.",
    ["provider", "account"],
    buckets=(1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 10800, 21600, 43200, 86400, 172800, 259200),
    registry=REGISTRY,
)
RECEIPT_ERRORS = Counter(
    "receiptd_receipt_errors",
    "Failed receipts, by provider, account and code family (receiptd.error_families: the part "
    "before ':' of a carrier code, a listed plain code, none, or other).",
    ["provider", "account", "code"],
    registry=REGISTRY,
)
SENDS_REGISTERED = Counter(
    "receiptd_sends_registered",
    "Sends registered (sms_send rows inserted), by provider and account: the sending half of "
    "the silent-failure alert.",
    ["provider", "account"],
    registry=REGISTRY,
)
READY = Gauge("receiptd_ready", "1 when /readyz passes.", registry=REGISTRY)
ROLE_INFO = Gauge(
    "receiptd_role_info",
    "1 for each role this process runs (consumer|push|webhooks|compensator|prune).",
    ["role"],
    registry=REGISTRY,
)
BUILD = Info("receiptd_build", "receiptd build information.", registry=REGISTRY)
BUILD.info({"version": __version__})
