"""``receiptd run`` assembled: loops, jobs, probes and the ops server from Settings."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import SecretStr

from receiptd import config, ports
from receiptd.clock import utc_now
from receiptd.daemon.health import Health
from receiptd.daemon.ops import OPS_LIMITS, Check, OpsApp, OpsServer, Probes, run_check
from receiptd.daemon.sd_notify import Notifier
from receiptd.daemon.service import Job, Service, ServiceParts
from receiptd.db.deliveries import SqlEventOutbox
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.ingest.push import listener as push
from receiptd.logs import get_logger
from receiptd.web import connections
from receiptd.webhooks import dispatcher as webhooks
from receiptd.wiring import core

COMPENSATOR_JOB = "compensator"
# File descriptors kept for everything but the listeners' connections: database pools, MNS
# and provider API sockets, webhook connections, logs, the event loops' own.
FILES_RESERVED = 256
log = get_logger(__name__)


class CannotListen(Exception):
    """A listen address setting cannot be bound; the message names the setting."""

    def __init__(self, setting: str, address: str, exc: OSError) -> None:
        super().__init__(f"cannot listen on {setting} {address}: {exc.strerror or exc}")


def service(
    settings: config.Settings, store: SqlStore, sends: SendStore, health: Health
) -> tuple[Service, Callable[[], bool]]:
    """The daemon and its readiness test (True once every readiness check passes).

    Raises config.ConfigError for a configured but unusable provider and CannotListen when
    the ops or the push address cannot be bound.
    """
    readiness = {"database": database_check(store), "queues": queues_check(health)}
    app = OpsApp(
        Probes({"loops": liveness_check(health, settings.heartbeat_timeout)}, readiness),
        status_token=_secret(settings.status_api_token),
        lookup=sends.by_biz_id,
        register=lambda new: sends.register(new, utc_now()),
        show_phone_numbers=settings.log_show_phone_numbers,
    )
    host, port = config.split_host_port(settings.http_addr)
    try:
        server = OpsServer(app, host, port)
    except OSError as exc:
        raise CannotListen("http_addr", settings.http_addr, exc) from exc
    dispatchers, webhook_jobs = webhook_parts(settings, store, health)
    parts = ServiceParts(
        # The push listener first: on a stop it stops accepting before the consumers drain;
        # the dispatcher last: it delivers what the others committed until it is told to stop.
        loops=[
            *push_listener(settings, store),
            *core.daemon_consumers(settings, store, health),
            *dispatchers,
        ],
        jobs=[*_jobs(settings, store, sends, health), *webhook_jobs],
        server=server,
        health=health,
        notifier=Notifier(),
        heartbeat_timeout=settings.heartbeat_timeout,
        shutdown_timeout=settings.shutdown_timeout,
        dispose=store.engine.dispose,
    )

    def ready() -> bool:
        return all(run_check(check)[0] for check in readiness.values())

    return Service(parts), ready


def _jobs(
    settings: config.Settings, store: SqlStore, sends: SendStore, health: Health
) -> list[Job]:
    jobs: list[Job] = [*prune_job(settings, store, health)]
    if settings.compensator_enabled:
        beat = f"job.{COMPENSATOR_JOB}"
        comp = core.compensator(settings, sends, heartbeat=lambda: health.heartbeat(beat))
        if comp is not None:
            jobs.append(
                Job(COMPENSATOR_JOB, comp.run_once, settings.compensator_interval, stop=comp.stop)
            )
    return jobs


def prune_job(settings: config.Settings, store: SqlStore, health: Health) -> list[Job]:
    """The daily prune (none when ``prune_enabled`` is off); one replica at a time prunes."""
    if not settings.prune_enabled:
        return []
    prune = core.pruner(settings, store.engine, health)

    def run() -> None:
        prune.run(core.retention_cutoffs(settings, utc_now()))

    return [Job("prune", run, settings.prune_interval, stop=prune.stop)]


def webhook_parts(
    settings: config.Settings, store: SqlStore, health: Health
) -> tuple[list[webhooks.Dispatcher], list[Job]]:
    """The webhook dispatcher and the hourly prune of finished events (none without
    endpoints)."""
    endpoints = settings.webhooks
    if not endpoints:
        return [], []
    policy = webhook_policy(settings)
    if store.engine.dialect.name == "sqlite":  # one writer: one request at a time per endpoint
        endpoints = [e.model_copy(update={"concurrency": 1}) for e in endpoints]
    outbox = SqlEventOutbox(store)
    workers = [webhooks.EndpointWorker(e, outbox, policy, health) for e in endpoints]
    pruner = webhooks.EventPruner(outbox, settings.events_retention_days, health)
    prune = Job("events_prune", pruner.run, 3600.0, stop=pruner.stop, first_run_in=60.0)
    return [webhooks.Dispatcher(workers, outbox, health, policy)], [prune]


def webhook_policy(settings: config.Settings) -> webhooks.Policy:
    """Retries, backoff, polling and batch size of the webhook dispatcher."""
    return webhooks.Policy(
        retry_period=settings.webhook_retry_period,
        backoff_initial=settings.webhook_backoff_initial,
        backoff_max=settings.webhook_backoff_max,
        poll_interval=settings.webhook_poll_interval,
        batch_size=settings.webhook_batch_size,
    )


def push_listener(settings: config.Settings, sink: ports.ReceiptSink) -> list[push.PushListener]:
    """The HTTP push listener when ``push_addr`` is set (it binds its port here)."""
    if not settings.push_addr or settings.push_token is None:
        return []
    cfg = push.PushConfig(
        token=settings.push_token.get_secret_value(),
        tz=settings.timezone,
        allow=config.parse_networks(settings.push_allow_cidrs),
        trusted_proxies=config.parse_networks(settings.push_trusted_proxies),
        max_body=settings.push_max_body,
        max_elements=settings.push_max_elements,
    )
    host, port = config.split_host_port(settings.push_addr)
    try:
        listener = push.PushListener(
            push.PushApp(sink, cfg), host, port, settings.push_threads, push_limits(settings)
        )
    except OSError as exc:
        raise CannotListen("push_addr", settings.push_addr, exc) from exc
    return [listener]


def push_limits(settings: config.Settings) -> connections.Limits:
    """The push listener's connection bounds; at most what the open-files limit leaves
    after the ops server and the rest of the process (the soft limit is raised first)."""
    open_files = connections.raise_open_files_limit()
    room = open_files - OPS_LIMITS.max_connections - FILES_RESERVED
    most = max(16, min(settings.push_max_connections, room))
    if most < settings.push_max_connections:
        log.warning(
            "push_connections_lowered",
            max_connections=most,
            configured=settings.push_max_connections,
            open_files_limit=open_files,
        )
    return connections.Limits(
        max_connections=most,
        per_source=min(settings.push_max_connections_per_source, most),
        header_timeout=settings.push_header_timeout,
        body_timeout=settings.push_body_timeout,
        idle_timeout=settings.push_channel_timeout,
        exempt=config.parse_networks(settings.push_trusted_proxies),  # a proxy: many clients
    )


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value else None


def database_check(store: SqlStore) -> Check:
    def check() -> tuple[bool, str]:
        store.ping()
        return True, "reachable"

    return check


def queues_check(health: Health) -> Check:
    def check() -> tuple[bool, str]:
        loops = {n: s for n, s in health.snapshot().items() if n.startswith("consumer.")}
        if not loops:
            return True, "no queues configured"
        failing = [n for n, s in loops.items() if s.last_error or s.last_success is None]
        return (not failing, "failing: " + ", ".join(sorted(failing)) if failing else "polled")

    return check


def liveness_check(health: Health, threshold: float) -> Check:
    def check() -> tuple[bool, str]:
        stale = health.stale_loops(threshold)
        return (not stale, f"stale: {', '.join(stale)}" if stale else "heartbeating")

    return check
