"""`Emulator`: the wiring of every emulated API behind one port, and its Python control API."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from receiptd_emulator import push, receipts
from receiptd_emulator.calls import CallLog, RecordedCall
from receiptd_emulator.clock import Clock
from receiptd_emulator.credentials import Credential, CredentialStore, KeyKind
from receiptd_emulator.dybase import Dybase
from receiptd_emulator.dysms import Dysms
from receiptd_emulator.faults import Faults, FaultSpec, QpsLimiter
from receiptd_emulator.koomessage import KooMessageApi, KooMessageAuth
from receiptd_emulator.koomessage_store import SendDetail
from receiptd_emulator.mns import MnsService
from receiptd_emulator.mns_long_polls import LongPollCap
from receiptd_emulator.mns_queue import QueueMeta
from receiptd_emulator.mns_xml import INVALID_XML_CHARS
from receiptd_emulator.pop import PopGateway
from receiptd_emulator.pop_signing import PopVerifier
from receiptd_emulator.profiles import Profile
from receiptd_emulator.provider import SeedSend, SmsProvider
from receiptd_emulator.router import Route, Router
from receiptd_emulator.scheduler import Scheduler
from receiptd_emulator.server import Dispatcher, ServerThread
from receiptd_emulator.sms_records import SendRecord, SmsRecords

#: Fixed fake keys, so a long-running emulator can be configured once. Never real secrets.
ACCESS_KEY_ID = "LTAI5tReceiptdEmulator01"
ACCESS_KEY_SECRET = "EmulatorSecretForReceiptd00001"  # noqa: S105 - fake, emulator-only
MNS_OWNER_KEY_ID = "LTAI5tAlicomMnsOwner0001"
MNS_OWNER_KEY_SECRET = "AlicomMnsOwnerSecretEmulator01"  # noqa: S105 - fake, emulator-only
HUAWEI_ACCESS_KEY_ID = "HuaweiReceiptdEmulatorAK01"
HUAWEI_SECRET_ACCESS_KEY = "HuaweiEmulatorSecretForReceiptd01"  # noqa: S105 - fake, emulator-only
HUAWEI_AUTH_TOKEN = "MIIReceiptdEmulatorIamToken01"  # noqa: S105 - fake, emulator-only


@dataclass(frozen=True, slots=True)
class EmulatorInfo:
    """Everything a client needs to talk to a running emulator (the CLI's JSON line)."""

    mns_endpoint: str
    dysms_endpoint: str
    dybase_endpoint: str
    koomessage_endpoint: str
    control_endpoint: str
    access_key_id: str
    access_key_secret: str
    account_uid: str
    queue_prefix: str
    report_queue: str
    up_queue: str
    sign_name: str
    template_code: str
    mns_owner_access_key_id: str
    mns_owner_access_key_secret: str
    host: str
    port: int
    profile: str
    token_lifetime: float
    huawei_access_key_id: str = HUAWEI_ACCESS_KEY_ID
    huawei_secret_access_key: str = HUAWEI_SECRET_ACCESS_KEY
    huawei_auth_token: str = HUAWEI_AUTH_TOKEN

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def pop_endpoint(self) -> str:
        """`host:port`, the form `alibabacloud_tea_openapi` Config(endpoint=...) expects."""
        return f"{self.host}:{self.port}"


class Emulator:
    """Strict local providers on one port: Alibaba Cloud MNS, Dybaseapi and Dysmsapi, and
    Huawei KooMessage's send-details API.

    Use as a context manager, or call `start()` / `stop()`. `port=0` picks a free port.
    `clock` (epoch seconds) is the provider's time: sends, receipt arrival, token expiry and
    push retries follow it (a `clock.ManualClock` lets a test move it); signatures, queue
    visibility and long polls keep the real time.
    """

    def __init__(
        self,
        profile: Profile | str | Path = "default",
        host: str = "127.0.0.1",
        port: int = 0,
        token_lifetime: float | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.profile = Profile.load(profile)
        self.clock = clock
        self.token_lifetime = (
            self.profile.token_lifetime if token_lifetime is None else token_lifetime
        )
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._server: ServerThread | None = None
        self._stopped = False
        self._rng = random.Random(self.profile.seed)
        self.credentials = CredentialStore(clock)
        self.credentials.add(Credential(ACCESS_KEY_ID, ACCESS_KEY_SECRET, KeyKind.ACCOUNT))
        self.credentials.add(Credential(MNS_OWNER_KEY_ID, MNS_OWNER_KEY_SECRET, KeyKind.MNS_OWNER))
        self.mns = MnsService(
            self.credentials,
            long_poll_cap=LongPollCap(
                self.profile.long_polls_per_queue, self.profile.long_polls_per_key
            ),
        )
        for queue in (self.profile.report_queue, self.profile.up_queue):
            self.mns.create_queue(queue)
        self.sms_records = SmsRecords(seed=self.profile.seed)
        self.scheduler = Scheduler(clock)
        self.provider = SmsProvider(
            self.profile, self.sms_records, self.mns, self.scheduler, clock=clock
        )
        self.pushers: dict[str, push.Pusher] = {}
        for kind, push_spec in self.profile.push.items():
            self.set_push(kind, push_spec)
        self.provider.divert = self._divert
        huawei_keys = {HUAWEI_ACCESS_KEY_ID: HUAWEI_SECRET_ACCESS_KEY}
        self.koomessage = KooMessageApi(auth=KooMessageAuth(huawei_keys, [HUAWEI_AUTH_TOKEN]))
        self.router = self._build_router()
        self.faults = Faults()
        for group, spec in self.profile.faults.items():
            self.faults.set(group, spec)
        self.limiter = QpsLimiter()
        for api, qps in self.profile.qps.items():
            self.limiter.set_limit(api, qps)
        self.call_log = CallLog()
        self.dispatcher = Dispatcher(self.router, self.faults, self.limiter, self.call_log)

    def _build_router(self) -> Router:
        from receiptd_emulator import control  # control needs Emulator: import late

        gateway = PopGateway(PopVerifier(self.credentials))
        Dysms(self.provider, clock=self.clock).register(gateway)
        Dybase(self.credentials, self.profile.queue_prefix, lambda: self.token_lifetime).register(
            gateway
        )
        router = Router()
        router.add(control.route(self))
        router.add(self.mns.route())
        router.add(gateway.route("dybase"))
        router.add(gateway.route("dysms", fallback=True))
        router.add(self.koomessage.route())
        return router

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Emulator:
        """Bind, start serving and return once the port accepts connections."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("an Emulator cannot be restarted; create a new one")
            if self._server is None:
                self._server = ServerThread(self._host, self._port, self.dispatcher)
                self.scheduler.start()
                self._server.start()
        return self

    def stop(self) -> None:
        """Idempotent. Order: stop accepting, wake long polls, drop connections, stop timers."""
        with self._lock:
            server, self._server, self._stopped = self._server, None, True
        if server is not None:
            self.mns.close()
            server.stop()
        self.scheduler.stop()
        for kind in list(self.pushers):
            self.set_push(kind, None)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return self._server.port

    @property
    def info(self) -> EmulatorInfo:
        port = self.port
        base = f"http://{self._host}:{port}"
        profile = self.profile
        return EmulatorInfo(
            mns_endpoint=base,
            dysms_endpoint=base,
            dybase_endpoint=base,
            koomessage_endpoint=base,
            control_endpoint=f"{base}/_emulator",
            access_key_id=ACCESS_KEY_ID,
            access_key_secret=ACCESS_KEY_SECRET,
            account_uid=profile.account_uid,
            queue_prefix=profile.queue_prefix,
            report_queue=profile.report_queue,
            up_queue=profile.up_queue,
            sign_name=profile.sign_names[0],
            template_code=next(iter(profile.templates)),
            mns_owner_access_key_id=MNS_OWNER_KEY_ID,
            mns_owner_access_key_secret=MNS_OWNER_KEY_SECRET,
            host=self._host,
            port=port,
            profile=profile.name,
            token_lifetime=self.token_lifetime,
        )

    def add_route(self, route: Route, *, replace: str | None = None) -> None:
        """Plug in another API (e.g. `replace="koomessage"` for GET /v1/aim/send-details)."""
        if replace is None:
            self.router.add(route)
        else:
            self.router.replace(replace, route)

    # -- queues --------------------------------------------------------------------------
    def queue_name(self, queue: str) -> str:
        aliases = {"report": self.profile.report_queue, "up": self.profile.up_queue}
        return aliases.get(queue, queue)

    def enqueue(self, queue: str, body: str, delay: float = 0) -> str:
        """Put a raw MNS body (already base64 etc.) into a queue; returns the MessageId."""
        target = self.mns.queue(self.queue_name(queue))
        size = len(body.encode())
        if not 1 <= size <= target.meta.maximum_message_size or INVALID_XML_CHARS.search(body):
            raise ValueError("body must be 1..MaximumMessageSize bytes of XML-safe text")
        return target.send(body, delay or None).message_id

    def enqueue_report(self, fields: Mapping[str, Any], delay: float = 0) -> str:
        """An SmsReport message as Alicom sends it: base64 of the JSON of `fields`."""
        return self.enqueue("report", receipts.encode(fields), delay)

    def enqueue_up(self, fields: Mapping[str, Any], delay: float = 0) -> str:
        return self.enqueue("up", receipts.encode(fields), delay)

    def inject_malformed(self, queue: str = "report", body: str | None = None) -> str:
        """Enqueue a realistic broken body (bad base64 / not JSON / missing field); returns it."""
        with self._lock:
            body = body if body is not None else receipts.malformed_body(self._rng)
        self.enqueue(queue, body)
        return body

    def queue_depth(self, queue: str) -> dict[str, int]:
        return self.mns.queue(self.queue_name(queue)).depth()

    def set_queue_attributes(self, queue: str, **changes: Any) -> QueueMeta:
        """Change a queue's attributes (QueueMeta field names, e.g. visibility_timeout=2)."""
        target = self.mns.queue(self.queue_name(queue))
        target.meta = dataclasses.replace(target.meta, **changes)
        return target.meta

    def set_long_poll_cap(self, per_queue: int = 0, per_key: int = 0) -> None:
        """Cap concurrent MNS long polls per queue and per access key (0 = no cap)."""
        self.mns.long_polls.set_cap(LongPollCap(per_queue, per_key))

    def long_polls(self) -> dict[str, Any]:
        """The cap, long polls held now and at most per queue, held in total and refused."""
        return self.mns.long_polls.stats()

    def wait_long_polls(self, queue: str, holding: int = 1, timeout: float = 10.0) -> bool:
        """Wait until ``holding`` long polls are held on ``queue`` (a name or report/up)."""
        return self.mns.long_polls.wait_holding(self.queue_name(queue), holding, timeout)

    def issue_token(self, message_type: str = "SmsReport") -> Credential:
        """A temporary credential for an Alicom queue, as QueryTokenForMnsQueue would issue."""
        queue = self.profile.queue_prefix + message_type
        self.mns.queue(queue)
        return self.credentials.issue_sts(queue, self.token_lifetime)

    def expire_tokens(self) -> int:
        """Every temporary credential issued so far is expired from now on."""
        return self.credentials.expire_sts()

    # -- SMS truth -----------------------------------------------------------------------
    def seed_sends(self, sends: Iterable[SeedSend]) -> list[str]:
        return self.provider.seed(sends)

    def records(self) -> list[SendRecord]:
        return self.sms_records.snapshot()

    def seed_koomessage(self, details: Iterable[SendDetail]) -> int:
        """Add KooMessage send details (a known msg_id is replaced); returns how many were new.
        In push mode a final detail is also called back."""
        details = list(details)
        added = self.koomessage.store.add(details)
        pusher = self.pushers.get("koomessage")
        if pusher is not None:
            elements = [push.koomessage_element(d) for d in details]
            pusher.submit([e for e in elements if e is not None])
        return added

    # -- push mode -----------------------------------------------------------------------
    def set_push(self, kind: str, spec: push.PushSpec | None) -> None:
        """Deliver ``kind`` (SmsReport, SmsUp, koomessage) by HTTP push; None: back to MNS
        (for koomessage: no callbacks). Receipts still retrying in the old pusher are dropped."""
        new = None if spec is None else push.build(kind, spec, self.scheduler)
        with self._lock:
            old = self.pushers.pop(kind, None)
            if new is not None:
                self.pushers[kind] = new
        if old is not None:
            old.stop()

    def push_elements(self, kind: str, elements: Iterable[Any]) -> None:
        """Push these elements (receipt field dicts, or anything malformed) as the provider."""
        pusher = self.pushers.get(kind)
        if pusher is None:
            raise ValueError(f"{kind} is not in push mode")
        pusher.submit(list(elements))

    def wait_push(
        self, kind: str, until: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> bool:
        """Wait until ``until(push_stats()[kind])`` holds (True), or ``timeout`` passes."""
        pusher = self.pushers.get(kind)
        if pusher is None:
            raise ValueError(f"{kind} is not in push mode")
        return pusher.wait_until(until, timeout)

    def wait_push_idle(self, kind: str, timeout: float = 30.0) -> bool:
        """Wait until every receipt of ``kind`` was accepted or given up (True), or timeout."""
        return self.wait_push(kind, lambda stats: stats["pending"] == 0, timeout)

    def push_stats(self) -> dict[str, dict[str, Any]]:
        return {kind: p.snapshot() for kind, p in list(self.pushers.items())}

    def _divert(self, queue: str, bodies: list[str]) -> bool:
        kinds = {self.profile.report_queue: "SmsReport", self.profile.up_queue: "SmsUp"}
        pusher = self.pushers.get(kinds.get(queue, ""))
        if pusher is None:
            return False
        pusher.submit([push.queue_element(body) for body in bodies])
        return True

    def koomessage_details(self) -> list[SendDetail]:
        return self.koomessage.store.snapshot()

    # -- calls, faults, limits -----------------------------------------------------------
    def calls(self, api: str | None = None) -> list[RecordedCall]:
        return self.call_log.calls(api)

    def reset_calls(self) -> None:
        self.call_log.reset()
        self.mns.long_polls.reset_stats()

    def set_faults(self, api_group: str, spec: FaultSpec) -> None:
        self.faults.set(api_group, spec)

    def set_qps_limit(self, api: str, qps: float | None) -> None:
        """Per-account QPS limit for an API name as in `calls()` (None removes it)."""
        self.limiter.set_limit(api, qps)
