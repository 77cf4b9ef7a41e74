"""The daemon's background threads against peers that misbehave (tests/peers.py): an answer
cut short, a reset, bytes that are not HTTP, a nonsense body, silence until the timeout.

Each client thread (consumer, token refresh, compensator lookups, webhook senders) turns each
into the failure its loop already retries, and carries on once the peer behaves; the servers
(push listener, ops endpoint) keep serving beside a misbehaving client.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from receiptd import domain, ports, wiring
from receiptd.compensation.ratelimit import TokenBucket
from receiptd.daemon.health import Health
from receiptd.daemon.ops import OpsApp, OpsServer, Probes
from receiptd.db.models import DEAD, DELIVERY, REPORT
from receiptd.db.store import SqlStore
from receiptd.ingest.mns.consumer import Backoff, Consumer
from receiptd.ingest.push import listener as push
from receiptd.ingest.push import routes as push_routes
from receiptd.providers.aliyun import dysms, token
from receiptd.providers.aliyun.credentials import MnsCredentials, OpenApiAccess, StaticCredentials
from receiptd.providers.aliyun.mns import MnsReceiptQueue
from receiptd.providers.huawei import koomessage, windows
from receiptd.testing.emulated import emulator_settings
from receiptd.web import connections
from receiptd_emulator import Emulator
from tests.consuming import until_idle
from tests.integration.test_webhooks import Clock, settled_world, worker
from tests.peers import MISBEHAVIOURS, Act, Answer, Forward, MisbehavingClients, MisbehavingServer
from tests.system.reliability import receipt_fields

ACTS = pytest.mark.parametrize("act", MISBEHAVIOURS, ids=lambda a: a.value)
TIMEOUT = 0.5  # the clients' timeouts: what SILENCE waits out
QUEUE = "Alicom-Queue-1234567890-SmsReport"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


# --- the consumer's MNS adapter and token refresh -----------------------------------------


@ACTS
@pytest.mark.parametrize("call", ["receive", "delete"])
def test_mns_adapter_turns_each_misbehaviour_into_a_queue_error(act: Act, call: str) -> None:
    with MisbehavingServer([act, act], then=Answer(500, b"")) as peer:
        queue = MnsReceiptQueue(
            peer.url, QUEUE, StaticCredentials(MnsCredentials("ak", "sk")), TIMEOUT
        )
        with pytest.raises(ports.QueueError):
            queue.receive(16, 0) if call == "receive" else queue.delete(["1-handle"])
        queue.close()


@ACTS
def test_token_fetch_turns_each_misbehaviour_into_a_token_error(act: Act) -> None:
    with MisbehavingServer([act], then=Answer(500, b"")) as peer:
        fetch = token.DybaseTokenFetcher.connect(
            OpenApiAccess(peer.url, "ak", "sk", timeout_seconds=TIMEOUT)
        )
        with pytest.raises(token.TokenError):
            fetch(domain.MessageType.REPORT, QUEUE)


def test_consumer_behind_misbehaving_mns_and_dybase_stores_everything(
    emu: Emulator, engine: sa.Engine
) -> None:
    """Token mode as wired for ``receiptd run``: Dybaseapi and MNS each misbehave in every
    way first, then forward to the emulator; the worker survives and stores every receipt."""
    for i in range(40):
        emu.enqueue_report(receipt_fields(i))
    upstream = Forward("127.0.0.1", emu.port)
    with (
        MisbehavingServer(MISBEHAVIOURS, then=upstream) as mns_peer,
        MisbehavingServer(MISBEHAVIOURS, then=upstream) as dybase_peer,
    ):
        settings = emulator_settings(
            emu.info,
            str(engine.url),
            aliyun_alicom_mns_endpoint=mns_peer.url,
            aliyun_dybase_endpoint=dybase_peer.url,
            aliyun_request_timeout=TIMEOUT,
            consumer_socket_timeout=1.5,
        )
        consumer = Consumer(
            domain.MessageType.REPORT,
            wiring.queue_factory(settings, domain.MessageType.REPORT),
            SqlStore(engine),
            Health(),
            threads=1,
            batch_size=16,
            wait_seconds=1,
            backoff=Backoff(base=0.01, cap=0.05),
        )
        stats = until_idle(consumer)
    assert consumer.failed is None
    assert stats.errors >= 2 * len(MISBEHAVIOURS) - 1  # SDK resends may merge two acts
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(REPORT)).scalar_one() == 40
    assert sum(emu.queue_depth("report").values()) == 0


# --- the compensator's lookups ----------------------------------------------------------


@ACTS
def test_aliyun_lookup_leaves_sends_pending_on_each_misbehaviour(act: Act) -> None:
    now = dt.datetime.now(dt.UTC)
    pending = ports.PendingSend(
        1, domain.Provider.ALIYUN, "111^0", "13800000000", now, now.date(), None, None, 0
    )
    with MisbehavingServer([act] * 3, then=Answer(500, b"")) as peer:
        client = dysms.make_client(OpenApiAccess(peer.url, "ak", "sk", timeout_seconds=TIMEOUT))
        lookup = dysms.AliyunStatusLookup(client, retry=dysms.RetryPolicy(attempts=1))
        result = lookup.lookup([pending], TokenBucket(1000, burst=10))
    assert result.settlements == []
    assert sum(result.calls.values()) == 1 and "ok" not in result.calls


@ACTS
def test_koomessage_lookup_turns_each_misbehaviour_into_lookup_unavailable(act: Act) -> None:
    sdk = koomessage._import_sdk()
    end = dt.datetime.now(dt.UTC).replace(microsecond=0)
    query = windows.Query(windows.Window(end - dt.timedelta(hours=1), end), "task", 0, 10)
    with MisbehavingServer([act] * 4, then=Answer(500, b"")) as peer:
        access = koomessage.KooMessageAccess(peer.url, "ak", "sk", timeout_seconds=TIMEOUT)
        api = koomessage.SdkSendDetails(koomessage.build_client(access, sdk), sdk)
        with pytest.raises(ports.LookupUnavailable):
            api.fetch(query)


# --- the webhook senders ------------------------------------------------------------------


def test_webhook_worker_counts_each_misbehaviour_as_a_failed_attempt_then_delivers(
    engine: sa.Engine,
) -> None:
    """Three deliveries, one request at a time: close mid-answer, reset, garbage fail the
    first round; a nonsense 200 body is a 2xx (delivered, as Standard Webhooks has it);
    silence times out; the rest are answered 200. On a controlled clock: no waiting."""
    store = settled_world(engine)
    clock = Clock()
    with MisbehavingServer(MISBEHAVIOURS, then=Answer(204, b"")) as peer:
        hooks = worker(store, f"{peer.url}/hooks", clock, concurrency=1, timeout=TIMEOUT)
        for _ in range(4):
            hooks.run_once()  # never raises: each failure is a recorded attempt
            clock.advance(600)
        hooks.close()
    with engine.connect() as conn:
        rows = list(conn.execute(sa.select(DELIVERY)))
    assert [r.status for r in rows] == ["delivered"] * 3
    assert sum(r.attempts for r in rows) == len(MISBEHAVIOURS) + 2


# --- the servers: push listener and ops endpoint --------------------------------------------

# A silent or stalled client is dropped after 2 s (the defaults are 10-30 s).
SHORT_LIMITS = connections.Limits(header_timeout=2, body_timeout=2, idle_timeout=2)


def test_push_listener_serves_beside_misbehaving_clients_and_stores_nothing_torn(
    engine: sa.Engine,
) -> None:
    store = SqlStore(engine)
    app = push.PushApp(store, push.PushConfig(push_routes.default_accounts("t0ken")))
    listener = push.PushListener(app, "127.0.0.1", 0, threads=2, limits=SHORT_LIMITS)
    listener.start()
    path = "/push/t0ken/aliyun/SmsReport"
    try:
        with MisbehavingClients(listener.port, path) as clients:
            answers = {act: clients.act(act) for act in MISBEHAVIOURS}
            status, body = post(f"http://127.0.0.1:{listener.port}{path}", [receipt_fields(1)])
    finally:
        listener.stop()
        listener.join(5)
    assert listener.failed is None
    assert (status, body) == (200, {"code": 0, "msg": "接收成功"})
    assert status_of(answers[Act.GARBAGE]) == 400
    assert status_of(answers[Act.BAD_BODY]) == 400  # not UTF-8, not JSON: refused...
    with engine.connect() as conn:
        dead = list(conn.execute(sa.select(DEAD.c.raw_body)))
        reports = conn.execute(sa.select(sa.func.count()).select_from(REPORT)).scalar_one()
    assert [bytes(d.raw_body) for d in dead] == [b"<<<\x00 not json, not xml \xff>>>"]  # ...kept
    assert reports == 1  # the torn bodies (cut short, reset) were never read as receipts


def test_ops_server_serves_beside_misbehaving_clients() -> None:
    probes = Probes(liveness={"up": lambda: (True, "ok")}, readiness={})
    server = OpsServer(OpsApp(probes), "127.0.0.1", 0, threads=1, limits=SHORT_LIMITS)
    server.start()
    try:
        with MisbehavingClients(server.port, "/healthz") as clients:
            for act in MISBEHAVIOURS:
                clients.act(act)
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10) as r:
                assert r.status == 200
    finally:
        server.close()
    assert server.failed is None


def post(url: str, elements: list[dict[str, object]]) -> tuple[int, object]:
    data = json.dumps(elements).encode()
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - local
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - a local listener
        return answer.status, json.loads(answer.read())


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])
