"""The HTTP push listener: receipts pushed by Alibaba (HTTP batch push) and KooMessage.

``POST /push/{token}[/{account}]/aliyun/SmsReport``, ``/aliyun/SmsUp`` and
``/v1/aim/send-status`` (docs/push.md; the paths: ``receiptd.ingest.push.routes``). Parsing is
pure (``receiptd.ingest.push.formats``); the records, which carry the path's account, go
through the same ``ports.ReceiptSink.write_batch`` as the MNS path, one transaction per request.

Answers (the providers retry anything but ``200`` + ``{"code": 0}``):
* 200 ``{"code":0,"msg":"接收成功"}`` only after the commit; elements that are not receipts
  are dead-lettered in the same transaction (a retry could not fix them).
* 400 (not UTF-8 / not JSON / wrong shape), 413 (too many elements): the whole body is
  dead-lettered first (keyed by its SHA-256, so the provider's bounded retries only count up
  ``seen_count``), then refused, so a misconfigured sender sees it was not accepted.
* 503 when the database is unavailable: nothing was stored, the provider retries.
* 404 for a wrong token, an unknown account or path, 403 for a source outside the allowlist,
  405, 415: no detail.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from receiptd import domain, metrics, ports
from receiptd.clock import Clock, utc_now
from receiptd.config.values import IPNetwork, in_networks
from receiptd.ingest import poison
from receiptd.ingest.mns import batch as batches
from receiptd.ingest.push import formats as push_formats
from receiptd.ingest.push import group_commit
from receiptd.ingest.push.routes import CHANNELS, Channel, PushAccount, Route, Router
from receiptd.logs import get_logger
from receiptd.web import connections
from receiptd.web.server import HttpServer, StartResponse, json_response

log = get_logger(__name__)
UNKNOWN = "unknown"  # the metric labels of a request not routed (bounded: never the path's)


@dataclass(frozen=True)
class PushConfig:
    accounts: tuple[PushAccount, ...]  # who may push (routes.default_accounts: today's paths)
    allow: tuple[IPNetwork, ...] = ()
    trusted_proxies: tuple[IPNetwork, ...] = ()
    max_body: int = 1024 * 1024
    max_elements: int = push_formats.DEFAULT_MAX_ELEMENTS


@dataclass(frozen=True)
class Answer:
    status: int
    result: str  # the metric's result label
    body: Mapping[str, Any]


_NOT_FOUND = Answer(404, "not_found", {"code": 404, "msg": "not found"})
_FORBIDDEN = Answer(403, "forbidden", {"code": 403, "msg": "forbidden"})
_UNAVAILABLE = Answer(503, "unavailable", {"code": 503, "msg": "temporarily unavailable"})


class PushApp:
    """The WSGI app; no sockets (tests call it directly)."""

    def __init__(
        self,
        sink: ports.ReceiptSink,
        cfg: PushConfig,
        clock: Clock = utc_now,
    ) -> None:
        self.sink = sink
        self.cfg = cfg
        self.clock = clock
        self.router = Router(cfg.accounts)
        # One group commit per account and channel: concurrent requests share a transaction
        # (and its counts, which are per account).
        self._groups = {
            _key(r): group_commit.GroupCommit(
                functools.partial(self._commit, r), max(cfg.max_elements, 1)
            )
            for r in self.router.routes()
        }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started, arrived = time.monotonic(), self.clock()
        route = self.router.route(environ.get("PATH_INFO", ""))
        answer = self._answer(environ, route, arrived) if route else _NOT_FOUND
        labels = _labels(route)
        metrics.PUSH_REQUESTS.labels(*labels, answer.result).inc()
        if route is not None:
            metrics.PUSH_DURATION.labels(*labels).observe(time.monotonic() - started)
        headers = [("Retry-After", "60")] if answer.status == 503 else []
        return json_response(start_response, answer.status, answer.body, headers)

    def _answer(self, environ: dict[str, Any], route: Route, arrived: datetime) -> Answer:
        source = client_address(environ, self.cfg.trusted_proxies)
        if self.cfg.allow and not _allowed(source, self.cfg.allow):
            log.warning("push_refused", reason="source", source=source, **_fields(route))
            return _FORBIDDEN
        if environ.get("REQUEST_METHOD") != "POST":
            return Answer(405, "rejected", {"code": 405, "msg": "use POST"})
        content_type = str(environ.get("CONTENT_TYPE") or "application/json").lower()
        if "json" not in content_type:
            return Answer(415, "rejected", {"code": 415, "msg": "Content-Type must be JSON"})
        raw = _read_body(environ, self.cfg.max_body)
        if raw is None:
            return Answer(413, "too_large", {"code": 413, "msg": "body too large"})
        return self._store(route, raw, arrived)

    def _store(self, route: Route, raw: bytes, arrived: datetime) -> Answer:
        """Parse and write one body. Nothing it holds makes the answer a 5xx: a body the
        listener crashes on (a receiptd defect, ``body_crashed``) is kept as a dead letter
        and answered 400; 503 means the database is unavailable, nothing else."""
        try:
            return self._parse_and_write(route, raw, arrived)
        except Exception as exc:  # e.g. a parser defect past push_formats' own isolation
            queue = route.channel.queue
            poison.report_crash("listener", domain.Channel.PUSH, queue, _sha(raw), exc)
            crashed = domain.BodyError(f"listener crashed: {exc!r}")
            answer = Answer(400, "rejected", {"code": 400, "msg": "body kept as a dead letter"})
            return self._refuse(route, raw, crashed, answer)

    def _parse_and_write(self, route: Route, raw: bytes, arrived: datetime) -> Answer:
        try:
            parsed = route.channel.parse(raw, route.account.tz, self.cfg.max_elements)
        except push_formats.TooManyElements as exc:
            return self._refuse(route, raw, exc, Answer(413, "too_large", _error(413, exc)))
        except domain.BodyError as exc:
            return self._refuse(route, raw, exc, Answer(400, "rejected", _error(400, exc)))
        _report_crashes(route.channel, parsed)
        batch = to_batch(route.channel, parsed, uuid.uuid4().hex[:16], route.account.name)
        try:
            result = self._groups[_key(route)].write(batch)
        except ports.StoreError as exc:
            log.warning("push_store_unavailable", **_fields(route), error=str(exc))
            return _UNAVAILABLE
        # Committed (by this request's transaction, or the group commit that held it): each
        # of its receipts and replies arrived with the request.
        records = len(batch.reports) + len(batch.inbound)
        batches.observe_lag(
            domain.Channel.PUSH, route.account.name, [arrived] * records, self.clock()
        )
        _log_stored(route, parsed, batch, result)
        label = "up" if route.channel.type == "up" else "report"
        push = domain.Channel.PUSH.value
        metrics.RECEIPTS.labels(route.account.name, push, label, "ignored").inc(parsed.ignored)
        result_label = "dead_letter" if batch.dead else "stored"
        return Answer(200, result_label, push_formats.SUCCESS_ANSWER)

    def _commit(self, route: Route, batch: ports.Batch) -> ports.BatchResult:
        """One transaction for the records of one or more requests (group commit)."""
        result = self._write(batch, route)
        _count(route, batch, result)
        return result

    def _refuse(self, route: Route, raw: bytes, exc: domain.BodyError, answer: Answer) -> Answer:
        """The whole body is unreadable: keep it as a dead letter, then refuse it."""
        dead = dead_record(route.channel, raw, f"{answer.status}: {exc}", route.account.name)
        try:
            self._groups[_key(route)].write(ports.Batch(dead=[dead]))
        except ports.StoreError as error:
            log.warning("push_store_unavailable", **_fields(route), error=str(error))
            return _UNAVAILABLE
        log.warning("push_rejected", **_fields(route), status=answer.status, error=str(exc))
        return answer

    def _write(self, batch: ports.Batch, route: Route) -> ports.BatchResult:
        """One transaction; if the database refuses the data itself (while reachable) or the
        store raises anything else, one record per transaction (``poison.write_isolating``), a
        refused record becoming a dead letter with the reason."""
        results: list[ports.BatchResult] = []
        writes = poison.Writes(
            self.sink,
            self.clock,
            functools.partial(_refused, route),
            lambda _single, result: results.append(result),
            route.channel.queue,
            domain.Channel.PUSH,
        )
        written = poison.write_isolating(  # StoreUnavailable propagates: the caller answers 503
            writes,
            batch,
            lambda error: log.warning(
                "push_isolating", **_fields(route), records=len(batch), error=error
            ),
        )
        if written != poison.ids(batch):  # even a dead letter refused: the provider retries
            raise ports.StoreWriteError("a record could be neither stored nor dead-lettered")
        return functools.reduce(_add, results, ports.BatchResult())


def replay_batch(
    queue: str, raw: bytes, tz: tzinfo, account: str = domain.DEFAULT_ACCOUNT
) -> ports.Batch:
    """A push dead letter parsed again (``receiptd dead-letters replay``, after a parser fix):
    the records it now yields, the dead letter's ``account``'s; BodyError (or ValueError for
    an unknown queue) otherwise."""
    channel = next((c for c in CHANNELS.values() if c.queue == queue), None)
    if channel is None:
        raise ValueError(f"{queue!r} is not a push channel")
    if channel.provider == "huawei" and b'"callback_type"' not in raw:
        raw = json.dumps({"callback_type": "sms", "body": [push_formats.decode_json(raw)]}).encode()
    parsed = channel.parse(raw, tz, push_formats.DEFAULT_MAX_ELEMENTS)
    if parsed.rejected:
        raise domain.BodyError(parsed.rejected[0].error)
    return to_batch(channel, parsed, "replay", account)


def to_batch(
    channel: Channel, parsed: push_formats.Parsed, request_id: str, account: str
) -> ports.Batch:
    push = domain.Channel.PUSH
    reports = [
        ports.ReportRecord(f"{request_id}/{i}", r, push, account)
        for i, r in enumerate(parsed.reports)
    ]
    inbound = [
        ports.InboundRecord(f"{request_id}/{i}", u, push, account)
        for i, u in enumerate(parsed.inbound)
    ]
    dead = [dead_record(channel, r.raw, r.error, account) for r in parsed.rejected]
    return ports.Batch(reports, inbound, dead)


def dead_record(channel: Channel, raw: bytes, error: str, account: str) -> ports.DeadRecord:
    """Keyed by the content's SHA-256: a retried poison request is one row, counted up. The
    queue names the channel, the same for every account; ``account`` tells them apart."""
    return ports.DeadRecord(channel.queue, _sha(raw), raw, error, account)


def _refused(route: Route, single: ports.Batch, reason: str) -> ports.DeadRecord:
    """A record the database refuses alone, as a dead letter (its parsed fields as JSON)."""
    value = single.reports[0].report if single.reports else single.inbound[0].reply
    text = json.dumps(dataclasses.asdict(value), default=str, ensure_ascii=False)
    raw = text.encode("utf-8", "backslashreplace")
    return dead_record(route.channel, raw, reason, route.account.name)


def _key(route: Route) -> tuple[str, str]:
    return route.account.name, route.channel.queue


def _labels(route: Route | None) -> tuple[str, str, str]:
    """provider, account, type: a request not routed is unknown in all three, whatever its
    path named (a scan of guessed account ids adds no series)."""
    if route is None:
        return UNKNOWN, UNKNOWN, UNKNOWN
    return route.channel.provider, route.account.name, route.channel.type


def _fields(route: Route) -> dict[str, str]:
    """What every push log line names."""
    return {"account": route.account.name, "queue": route.channel.queue}


def _report_crashes(channel: Channel, parsed: push_formats.Parsed) -> None:
    """Elements the parser crashed on (rejected, so dead-lettered with the rest) are defects."""
    for rejected in parsed.rejected:
        if rejected.crash is not None:
            where, key = channel.queue, _sha(rejected.raw)
            poison.report_crash("decode", domain.Channel.PUSH, where, key, rejected.crash)


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _add(a: ports.BatchResult, b: ports.BatchResult) -> ports.BatchResult:
    return ports.BatchResult(
        a.reports_new + b.reports_new,
        a.inbound_new + b.inbound_new,
        a.dead_new + b.dead_new,
        a.sends_settled + b.sends_settled,
    )


def _log_stored(
    route: Route, parsed: push_formats.Parsed, batch: ports.Batch, result: ports.BatchResult
) -> None:
    """``push_stored``: one line per request. ``new`` and ``settled`` are the transaction's,
    which concurrent requests of the same account and channel may share (group commit)."""
    log.debug(
        "push_stored",
        **_fields(route),
        elements=parsed.elements,
        new=result.reports_new + result.inbound_new,
        dead_letters=len(batch.dead),
        ignored=parsed.ignored,
        settled=result.sends_settled,
    )


def _count(route: Route, batch: ports.Batch, result: ports.BatchResult) -> None:
    label = "up" if route.channel.type == "up" else "report"
    meters = batches.ChannelMeters(domain.Channel.PUSH, label, route.account.name)
    stored = result.reports_new + result.inbound_new
    meters.count(stored, len(batch.reports) + len(batch.inbound) - stored, len(batch.dead))
    settled = metrics.SETTLED.labels(route.channel.provider, route.account.name, "receipt")
    settled.inc(result.sends_settled)


def _error(status: int, exc: Exception) -> dict[str, Any]:
    return {"code": status, "msg": str(exc)[:200]}


def _read_body(environ: Mapping[str, Any], limit: int) -> bytes | None:
    """The body, or None when it is longer than ``limit`` (waitress enforces the same limit
    on the socket; this covers a server configured otherwise)."""
    try:
        declared = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    data: bytes = environ["wsgi.input"].read(limit + 1)
    return None if len(data) > limit else data


def client_address(environ: Mapping[str, Any], trusted: tuple[IPNetwork, ...]) -> str:
    """The peer; from a trusted proxy, the right-most ``X-Forwarded-For`` hop that is not
    itself a trusted proxy (hops left of it could be forged by the client)."""
    peer = str(environ.get("REMOTE_ADDR", ""))
    if not trusted or not _allowed(peer, trusted):
        return peer
    hops = [h.strip() for h in str(environ.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _allowed(hop, trusted):
            return hop
    return peer


_allowed = in_networks


class PushListener:
    """The push listener as a service Loop: waitress on its own port in a thread, bounded
    by ``limits`` (``receiptd.web.connections``: what one client can hold)."""

    def __init__(
        self, app: PushApp, host: str, port: int, threads: int, limits: connections.Limits
    ) -> None:
        self._server = HttpServer(
            app,
            host,
            port,
            threads=threads,
            limits=limits,
            name="push",
            max_body=app.cfg.max_body,
            clear_untrusted_proxy_headers=False,  # PushApp reads X-Forwarded-For itself
        )

    @property
    def port(self) -> int:
        return self._server.port

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        """Nothing to do yet: the close happens in ``join()``, so ``stop()`` never blocks."""

    def join(self, timeout: float) -> bool:
        self._server.close(timeout=max(0.5, timeout))
        return True

    @property
    def failed(self) -> BaseException | None:
        return self._server.failed
