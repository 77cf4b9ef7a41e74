"""``receiptd run`` assembled: loops, jobs, probes and the ops server from Settings."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import SecretStr

from receiptd import config, domain, metrics, ports, roles
from receiptd.clock import utc_now
from receiptd.daemon.health import Health
from receiptd.daemon.ops import OPS_LIMITS, Check, OpsApp, OpsServer, Probes, run_check
from receiptd.daemon.sd_notify import Notifier
from receiptd.daemon.service import Job, Service, ServiceParts
from receiptd.db.deliveries import SqlEventOutbox
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.ingest import registration
from receiptd.ingest.push import listener as push
from receiptd.ingest.push import routes as push_routes
from receiptd.logs import get_logger
from receiptd.web import connections
from receiptd.webhooks import dispatcher as webhooks
from receiptd.wiring import core

CONSUMER, PUSH, WEBHOOKS = roles.CONSUMER, roles.PUSH, roles.WEBHOOKS
COMPENSATOR_JOB = "compensator"
COUNTS_JOB = "counts"
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
    """The daemon of the roles this process runs (:func:`active_roles`) and its readiness
    test (True once every readiness check passes).

    Raises config.ConfigError for a configured but unusable provider or a role named but not
    configured, and CannotListen when the ops or the push address cannot be bound.
    """
    part = settings.parts.daemon
    active = active_roles(settings, store)
    readiness = {"database": database_check(store), "queues": queues_check(health)}
    probes = Probes(
        {"loops": liveness_check(health, part.heartbeat_timeout)},
        readiness,
        roles=role_checks(active),
    )
    app = ops_app(settings, sends, probes)
    host, port = config.split_host_port(part.http_addr)
    try:
        server = OpsServer(app, host, port)
    except OSError as exc:
        raise CannotListen("http_addr", part.http_addr, exc) from exc
    dispatchers, webhook_jobs = (
        webhook_parts(settings, store, health) if WEBHOOKS in active else ([], [])
    )
    parts = ServiceParts(
        # The push listener first: on a stop it stops accepting before the consumers drain;
        # the dispatcher last: it delivers what the others committed until it is told to stop.
        loops=[
            *(push_listener(settings, store) if PUSH in active else []),
            *(core.daemon_consumers(settings, store, health) if CONSUMER in active else []),
            *dispatchers,
        ],
        jobs=[*_jobs(settings, store, sends, health, active), *webhook_jobs],
        server=server,
        health=health,
        notifier=Notifier(),
        heartbeat_timeout=part.heartbeat_timeout,
        shutdown_timeout=part.shutdown_timeout,
        dispose=store.engine.dispose,
        roles=active,
    )
    for role in active:
        metrics.ROLE_INFO.labels(role).set(1)

    def ready() -> bool:
        return all(run_check(check)[0] for check in readiness.values())

    return Service(parts), ready


def active_roles(settings: config.Settings, store: SqlStore) -> tuple[str, ...]:
    """The roles this process runs: those named (``roles``, ``--roles``), or without any every
    configured one. ConfigError for a named role that is not configured, and for part of the
    roles on SQLite: one process writes a SQLite file (its locks are per process, and each
    split role would be a writer of its own contending for it)."""
    missing = unconfigured_roles(settings)
    named = settings.parts.daemon.roles
    try:
        active = roles.choose(named, missing)
    except roles.RoleNotConfigured as exc:
        raise config.ConfigError(str(exc)) from None
    if store.engine.dialect.name == "sqlite" and roles.is_split(active, missing):
        raise config.ConfigError(
            f"invalid setting roles: {','.join(active)} is only part of the configured roles, "
            "and split roles need PostgreSQL or MariaDB (one process writes a SQLite file); "
            "leave roles unset on SQLite"
        )
    return active


def unconfigured_roles(settings: config.Settings) -> dict[str, str]:
    """Each role this process could not run, mapped to the setting it lacks (and why)."""
    parts = settings.parts
    missing: dict[str, str] = {}
    if not core.consumes(settings):
        missing[CONSUMER] = (
            "aliyun_access_key_id: no Aliyun account served here has a queue "
            "(serve_accounts or --accounts may leave them out)"
        )
    if not (parts.push.addr and push_accounts(settings)):
        missing[PUSH] = "push_addr: not set"
    if not parts.webhooks.endpoints:
        missing[WEBHOOKS] = "webhook_urls: no webhook endpoint is configured"
    if not parts.compensator.enabled:
        missing[roles.COMPENSATOR] = "compensator_enabled: false"
    elif not parts.served_accounts:
        missing[roles.COMPENSATOR] = "aliyun_access_key_id: no provider account served here"
    if not parts.retention.prune_enabled:
        missing[roles.PRUNE] = "prune_enabled: false"
    return missing


def role_checks(active: tuple[str, ...]) -> dict[str, str]:
    """The readiness check each role stands on (/readyz lists them): the consumer's queues;
    every other role needs the database alone."""
    return {role: "queues" if role == CONSUMER else "database" for role in active}


def ops_app(settings: config.Settings, sends: SendStore, probes: Probes) -> OpsApp:
    """The ops endpoint's application: the probes, and the send API over ``sends`` (off
    without ``status_api_token``; registrations may name any account of the settings)."""
    return OpsApp(
        probes,
        status_token=_secret(settings.parts.daemon.status_api_token),
        lookup=sends.by_biz_id,
        register=lambda new: sends.register(new, utc_now()),
        show_phone_numbers=settings.parts.logging.show_phone_numbers,
        accounts=registration.known(settings.parts.accounts),
        summary=sends.summary,
    )


def _jobs(
    settings: config.Settings,
    store: SqlStore,
    sends: SendStore,
    health: Health,
    active: tuple[str, ...],
) -> list[Job]:
    jobs: list[Job] = [*prune_job(settings, store, health)] if roles.PRUNE in active else []
    if roles.folds_counts(active, settings.parts.daemon.roles):
        # The send counts' delta rows, folded every minute (receiptd.db.counts).
        jobs.append(Job(COUNTS_JOB, sends.squash_counts, 60.0, first_run_in=30.0))
    part = settings.parts.compensator
    if roles.COMPENSATOR in active and part.enabled:
        beat = f"job.{COMPENSATOR_JOB}"
        comp = core.compensator(settings, sends, heartbeat=lambda: health.heartbeat(beat))
        if comp is not None:
            jobs.append(Job(COMPENSATOR_JOB, comp.run_once, part.interval, stop=comp.stop))
    return jobs


def prune_job(settings: config.Settings, store: SqlStore, health: Health) -> list[Job]:
    """The daily prune (none when ``prune_enabled`` is off); one replica at a time prunes."""
    part = settings.parts.retention
    if not part.prune_enabled:
        return []
    prune = core.pruner(settings, store.engine, health)

    def run() -> None:
        prune.run(core.retention_cutoffs(settings, utc_now()))

    return [Job("prune", run, part.prune_interval, stop=prune.stop)]


def webhook_parts(
    settings: config.Settings, store: SqlStore, health: Health
) -> tuple[list[webhooks.Dispatcher], list[Job]]:
    """The webhook dispatcher and the hourly prune of finished events (none without
    endpoints)."""
    part = settings.parts.webhooks
    endpoints = list(part.endpoints)
    if not endpoints:
        return [], []
    policy = webhook_policy(settings)
    if store.engine.dialect.name == "sqlite":  # one writer: one request at a time per endpoint
        endpoints = [e.model_copy(update={"concurrency": 1}) for e in endpoints]
    outbox = SqlEventOutbox(store)
    workers = [webhooks.EndpointWorker(e, outbox, policy, health) for e in endpoints]
    pruner = webhooks.EventPruner(outbox, part.retention_days, health)
    prune = Job("events_prune", pruner.run, 3600.0, stop=pruner.stop, first_run_in=60.0)
    return [webhooks.Dispatcher(workers, outbox, health, policy)], [prune]


def webhook_policy(settings: config.Settings) -> webhooks.Policy:
    """Retries, backoff, polling and batch size of the webhook dispatcher."""
    part = settings.parts.webhooks
    return webhooks.Policy(
        retry_period=part.retry_period,
        backoff_initial=part.backoff_initial,
        backoff_max=part.backoff_max,
        poll_interval=part.poll_interval,
        batch_size=part.batch_size,
    )


def push_listener(settings: config.Settings, sink: ports.ReceiptSink) -> list[push.PushListener]:
    """The HTTP push listener when ``push_addr`` is set and an account has a push token (it
    binds its port here)."""
    part, app = settings.parts.push, push_app(settings, sink)
    if not part.addr or app is None:
        return []
    host, port = config.split_host_port(part.addr)
    try:
        listener = push.PushListener(app, host, port, part.threads, push_limits(settings))
    except OSError as exc:
        raise CannotListen("push_addr", part.addr, exc) from exc
    return [listener]


def push_app(settings: config.Settings, sink: ports.ReceiptSink) -> push.PushApp | None:
    """The push listener's app (None without ``push_addr`` or an account that may push)."""
    part = settings.parts.push
    accounts = push_accounts(settings)
    if not part.addr or not accounts:
        return None
    cfg = push.PushConfig(
        accounts=accounts,
        allow=part.allow,
        trusted_proxies=part.trusted_proxies,
        max_body=part.max_body,
        max_elements=part.max_elements,
    )
    return push.PushApp(sink, cfg)


def push_accounts(settings: config.Settings) -> tuple[push_routes.PushAccount, ...]:
    """Who may push, each with its token and time zone: the two ``default`` accounts (as
    before accounts: configured or not) and every configured named account, served by this
    replica or not (a push is stateless: any replica stores it). An account without a push
    token has no push paths."""
    pushable = (
        a for a in settings.parts.accounts if a.name == domain.DEFAULT_ACCOUNT or a.configured
    )
    accounts = (
        push_routes.PushAccount(a.name, a.provider, _secret(a.push_token) or "", a.timezone)
        for a in pushable
    )
    return tuple(a for a in accounts if a.token)


def push_limits(settings: config.Settings) -> connections.Limits:
    """The push listener's connection bounds; at most what the open-files limit leaves
    after the ops server and the rest of the process (the soft limit is raised first)."""
    part = settings.parts.push
    open_files = connections.raise_open_files_limit()
    room = open_files - OPS_LIMITS.max_connections - FILES_RESERVED
    most = max(16, min(part.max_connections, room))
    if most < part.max_connections:
        log.warning(
            "push_connections_lowered",
            max_connections=most,
            configured=part.max_connections,
            open_files_limit=open_files,
        )
    return connections.Limits(
        max_connections=most,
        per_source=min(part.max_connections_per_source, most),
        header_timeout=part.header_timeout,
        body_timeout=part.body_timeout,
        idle_timeout=part.channel_timeout,
        exempt=part.trusted_proxies,  # a proxy: many clients
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
