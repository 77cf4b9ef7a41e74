"""`Emulator`: the wiring of every emulated API behind one port, and its Python control API."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from receiptd_emulator import push, receipts
from receiptd_emulator.accounts import AccountInfo, Accounts, Services, derive_info
from receiptd_emulator.calls import CallLog, RecordedCall
from receiptd_emulator.clock import Clock
from receiptd_emulator.credentials import Credential, CredentialStore, KeyKind
from receiptd_emulator.dybase import Dybase
from receiptd_emulator.dysms import Dysms
from receiptd_emulator.faults import Faults, FaultSpec, QpsLimiter
from receiptd_emulator.info import (
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    HUAWEI_ACCESS_KEY_ID,
    HUAWEI_AUTH_TOKEN,
    HUAWEI_SECRET_ACCESS_KEY,
    MNS_ACCESS_KEY_ID,
    MNS_ACCESS_KEY_SECRET,
    MNS_OWNER_KEY_ID,
    MNS_OWNER_KEY_SECRET,
    EmulatorInfo,
    default_account,
)
from receiptd_emulator.koomessage import KooMessageApi, KooMessageAuth
from receiptd_emulator.koomessage_store import SendDetail
from receiptd_emulator.mns import MnsService
from receiptd_emulator.mns_long_polls import LongPollCap
from receiptd_emulator.mns_queue import QueueMeta
from receiptd_emulator.mns_xml import INVALID_XML_CHARS
from receiptd_emulator.pop import PopGateway
from receiptd_emulator.pop_signing import PopVerifier
from receiptd_emulator.profiles import AccountSpec, Profile
from receiptd_emulator.provider import SeedSend
from receiptd_emulator.router import Route, Router
from receiptd_emulator.scheduler import Scheduler
from receiptd_emulator.server import Dispatcher, ServerThread
from receiptd_emulator.sms_records import SendRecord

__all__ = [
    "ACCESS_KEY_ID",
    "ACCESS_KEY_SECRET",
    "HUAWEI_ACCESS_KEY_ID",
    "HUAWEI_AUTH_TOKEN",
    "HUAWEI_SECRET_ACCESS_KEY",
    "MNS_ACCESS_KEY_ID",
    "MNS_ACCESS_KEY_SECRET",
    "MNS_OWNER_KEY_ID",
    "MNS_OWNER_KEY_SECRET",
    "AccountInfo",
    "Emulator",
    "EmulatorInfo",
]


class Emulator:
    """Strict local providers on one port: Alibaba Cloud MNS, Dybaseapi and Dysmsapi, and
    Huawei KooMessage's send-details API, for one or several customer accounts.

    Use as a context manager, or call `start()` / `stop()`. `port=0` picks a free port.
    `clock` (epoch seconds) is the provider's time: sends, receipt arrival, token expiry and
    push retries follow it (a `clock.ManualClock` lets a test move it); signatures, queue
    visibility and long polls keep the real time.

    Methods taking `account` act on that account (a name from `add_account` or the profile's
    `[[accounts]]`); None is the `default` account, the one `info` describes.
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
        self.credentials.add(Credential(MNS_OWNER_KEY_ID, MNS_OWNER_KEY_SECRET, KeyKind.MNS_OWNER))
        self.mns = MnsService(
            self.credentials,
            long_poll_cap=LongPollCap(
                self.profile.long_polls_per_queue, self.profile.long_polls_per_key
            ),
        )
        self.scheduler = Scheduler(clock)
        huawei_auth = KooMessageAuth(clock=clock)
        self.accounts = Accounts(
            Services(self.profile, self.mns, self.scheduler, clock, self.credentials, huawei_auth)
        )
        self.koomessage = KooMessageApi(auth=huawei_auth, stores=self.accounts.details_for)
        default_info = default_account(self.profile)
        default = self.accounts.open(default_info, self.profile.push, self.koomessage.store)
        self.sms_records, self.provider, self.pushers = (
            default.records,
            default.provider,
            default.pushers,
        )
        for spec in self.profile.accounts:
            self.accounts.open(derive_info(spec.name, spec.uid, self.profile), spec.push)
        self.router = self._build_router()
        self.faults = Faults()
        for group, fault_spec in self.profile.faults.items():
            self.faults.set(group, fault_spec)
        self.limiter = QpsLimiter()
        for api, qps in self.profile.qps.items():
            self.limiter.set_limit(api, qps)
        self.call_log = CallLog()
        self.dispatcher = Dispatcher(
            self.router, self.faults, self.limiter, self.call_log, self.accounts.account_of
        )

    def _build_router(self) -> Router:
        from receiptd_emulator import control  # control needs Emulator: import late

        gateway = PopGateway(PopVerifier(self.credentials))
        Dysms(lambda cred: self.accounts.get(cred.account).provider, clock=self.clock).register(
            gateway
        )
        Dybase(
            self.credentials,
            lambda cred: self.accounts.get(cred.account).info.queue_prefix,
            lambda: self.token_lifetime,
        ).register(gateway)
        router = Router()
        router.add(control.route(self))
        router.add(self.mns.route())
        router.add(gateway.route("dybase"))
        router.add(gateway.route("dysms", fallback=True))
        router.add(self.koomessage.route())
        return router

    # -- accounts ------------------------------------------------------------------------
    def add_account(
        self,
        name: str,
        uid: str | None = None,
        *,
        push_specs: Mapping[str, push.PushSpec] | None = None,
    ) -> AccountInfo:
        """Another customer account on the same port, before or after `start()`: its keys
        are derived from `name` (the same name gives the same keys), its uid too unless given;
        its SmsReport/SmsUp queues are created; `push_specs` are its own push targets per
        message type (SmsReport, SmsUp, koomessage), as `set_push(..., account=name)` sets."""
        spec = AccountSpec(name, uid, push_specs or {})  # validates
        return self.accounts.open(derive_info(spec.name, spec.uid, self.profile), spec.push).info

    def account(self, name: str | None = None) -> AccountInfo:
        """One account's info (None: the default account's)."""
        return self.accounts.get(name).info

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
        """Idempotent. Order: stop accepting, wake long polls, drop connections, stop timers,
        then every account's pushers."""
        with self._lock:
            server, self._server, self._stopped = self._server, None, True
        if server is not None:
            self.mns.close()
            server.stop()
        self.scheduler.stop()
        for account in self.accounts.all():
            account.stop_push()

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
        default = self.accounts.get().info
        return EmulatorInfo(
            mns_endpoint=base,
            dysms_endpoint=base,
            dybase_endpoint=base,
            koomessage_endpoint=base,
            control_endpoint=f"{base}/_emulator",
            access_key_id=ACCESS_KEY_ID,
            access_key_secret=ACCESS_KEY_SECRET,
            account_uid=default.uid,
            queue_prefix=default.queue_prefix,
            report_queue=default.report_queue,
            up_queue=default.up_queue,
            sign_name=default.sign_name,
            template_code=default.template_code,
            mns_owner_access_key_id=MNS_OWNER_KEY_ID,
            mns_owner_access_key_secret=MNS_OWNER_KEY_SECRET,
            host=self._host,
            port=port,
            profile=self.profile.name,
            token_lifetime=self.token_lifetime,
            accounts=self.accounts.infos(),
        )

    def add_route(self, route: Route, *, replace: str | None = None) -> None:
        """Plug in another API (e.g. `replace="koomessage"` for GET /v1/aim/send-details)."""
        if replace is None:
            self.router.add(route)
        else:
            self.router.replace(replace, route)

    # -- queues --------------------------------------------------------------------------
    def queue_name(self, queue: str, account: str | None = None) -> str:
        """``report`` / ``up``: the account's queue; any other name is itself."""
        return self.accounts.get(account).queue_name(queue)

    def enqueue(self, queue: str, body: str, delay: float = 0, account: str | None = None) -> str:
        """Put a raw MNS body (already base64 etc.) into a queue; returns the MessageId."""
        target = self.mns.queue(self.queue_name(queue, account))
        size = len(body.encode())
        if not 1 <= size <= target.meta.maximum_message_size or INVALID_XML_CHARS.search(body):
            raise ValueError("body must be 1..MaximumMessageSize bytes of XML-safe text")
        return target.send(body, delay or None).message_id

    def enqueue_report(
        self, fields: Mapping[str, Any], delay: float = 0, account: str | None = None
    ) -> str:
        """An SmsReport message as Alicom sends it: base64 of the JSON of `fields`."""
        return self.enqueue("report", receipts.encode(fields), delay, account)

    def enqueue_up(
        self, fields: Mapping[str, Any], delay: float = 0, account: str | None = None
    ) -> str:
        return self.enqueue("up", receipts.encode(fields), delay, account)

    def inject_malformed(
        self, queue: str = "report", body: str | None = None, account: str | None = None
    ) -> str:
        """Enqueue a realistic broken body (bad base64 / not JSON / missing field); returns it."""
        with self._lock:
            body = body if body is not None else receipts.malformed_body(self._rng)
        self.enqueue(queue, body, account=account)
        return body

    def queue_depth(self, queue: str, account: str | None = None) -> dict[str, int]:
        return self.mns.queue(self.queue_name(queue, account)).depth()

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

    def issue_token(
        self, message_type: str = "SmsReport", account: str | None = None
    ) -> Credential:
        """A temporary credential for an account's Alicom queue, as QueryTokenForMnsQueue
        would issue it."""
        info = self.accounts.get(account).info
        queue = info.queue_prefix + message_type
        self.mns.queue(queue)
        return self.credentials.issue_sts(queue, self.token_lifetime, account=info.name)

    def expire_tokens(self) -> int:
        """Every temporary credential issued so far is expired from now on."""
        return self.credentials.expire_sts()

    # -- SMS truth -----------------------------------------------------------------------
    def seed_sends(self, sends: Iterable[SeedSend], account: str | None = None) -> list[str]:
        return self.accounts.get(account).provider.seed(sends)

    def records(self, account: str | None = None) -> list[SendRecord]:
        return self.accounts.get(account).records.snapshot()

    def seed_koomessage(self, details: Iterable[SendDetail], account: str | None = None) -> int:
        """Add KooMessage send details (a known msg_id is replaced); returns how many were new.
        In push mode a final detail is also called back."""
        target = self.accounts.get(account)
        details = list(details)
        added = target.details.add(details)
        pusher = target.pushers.get("koomessage")
        if pusher is not None:
            elements = [push.koomessage_element(d) for d in details]
            pusher.submit([e for e in elements if e is not None])
        return added

    def koomessage_details(self, account: str | None = None) -> list[SendDetail]:
        return self.accounts.get(account).details.snapshot()

    # -- push mode -----------------------------------------------------------------------
    def set_push(self, kind: str, spec: push.PushSpec | None, account: str | None = None) -> None:
        """Deliver ``kind`` (SmsReport, SmsUp, koomessage) by HTTP push; None: back to MNS
        (for koomessage: no callbacks). Receipts still retrying in the old pusher are dropped."""
        self.accounts.get(account).set_push(kind, spec)

    def push_elements(self, kind: str, elements: Iterable[Any], account: str | None = None) -> None:
        """Push these elements (receipt field dicts, or anything malformed) as the provider."""
        self.accounts.get(account).pusher(kind).submit(list(elements))

    def wait_push(
        self,
        kind: str,
        until: Callable[[dict[str, Any]], bool],
        timeout: float = 30.0,
        account: str | None = None,
    ) -> bool:
        """Wait until ``until(push_stats()[kind])`` holds (True), or ``timeout`` passes."""
        return self.accounts.get(account).pusher(kind).wait_until(until, timeout)

    def wait_push_idle(self, kind: str, timeout: float = 30.0, account: str | None = None) -> bool:
        """Wait until every receipt of ``kind`` was accepted or given up (True), or timeout."""
        return self.wait_push(kind, lambda stats: stats["pending"] == 0, timeout, account)

    def push_stats(self, account: str | None = None) -> dict[str, dict[str, Any]]:
        return self.accounts.get(account).push_stats()

    # -- calls, faults, limits -----------------------------------------------------------
    def calls(self, api: str | None = None, account: str | None = None) -> list[RecordedCall]:
        """Recorded calls, optionally of one API and/or one account (by name; "" for calls
        no account signed: Alicom's owner key, unknown keys)."""
        return self.call_log.calls(api, account)

    def reset_calls(self) -> None:
        self.call_log.reset()
        self.mns.long_polls.reset_stats()

    def set_faults(self, api_group: str, spec: FaultSpec) -> None:
        self.faults.set(api_group, spec)

    def set_qps_limit(self, api: str, qps: float | None) -> None:
        """Per-account QPS limit for an API name as in `calls()` (None removes it)."""
        self.limiter.set_limit(api, qps)
