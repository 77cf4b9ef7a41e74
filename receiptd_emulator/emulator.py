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
from receiptd_emulator.faults import Faults, FaultSpec, QpsLimiter
from receiptd_emulator.globe_provider import SeedGlobeSend
from receiptd_emulator.globe_records import GlobeRecord
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
    emulator_info,
)
from receiptd_emulator.koomessage import KooMessageApi, KooMessageAuth
from receiptd_emulator.koomessage_store import SendDetail
from receiptd_emulator.mns import MnsService
from receiptd_emulator.mns_long_polls import LongPollCap
from receiptd_emulator.mns_queue import MnsQueue, QueueMeta
from receiptd_emulator.mns_xml import INVALID_XML_CHARS
from receiptd_emulator.profiles import GLOBE_APIS, SITES, AccountSpec, Profile
from receiptd_emulator.provider import SeedSend
from receiptd_emulator.router import Route, Router
from receiptd_emulator.scheduler import Scheduler
from receiptd_emulator.server import Dispatcher, ServerThread
from receiptd_emulator.sites import Site, pop_gateway
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
    """Strict local providers: Alibaba Cloud MNS, Dybaseapi and Dysmsapi, and Huawei
    KooMessage's send-details API, for one or several customer accounts. The China site
    (and KooMessage) is served on one port, Alibaba's international site on a second one
    (`intl_port`; `sites.py`).

    Use as a context manager, or call `start()` / `stop()`. Port 0 picks a free port.
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
        intl_port: int = 0,
    ) -> None:
        self.profile = Profile.load(profile)
        self.clock = clock
        self.token_lifetime = (
            self.profile.token_lifetime if token_lifetime is None else token_lifetime
        )
        self._host, self._ports = host, {"cn": port, "intl": intl_port}
        self._lock = threading.Lock()
        self._servers: dict[str, ServerThread] = {}
        self._stopped = False
        self._rng = random.Random(self.profile.seed)
        self.sites = {name: self._site(name) for name in SITES}
        self.credentials, self.mns = self.sites["cn"].credentials, self.sites["cn"].mns
        self.intl_mns = self.sites["intl"].mns
        self.scheduler = Scheduler(clock)
        huawei_auth = KooMessageAuth(clock=clock)
        self.accounts = Accounts(
            Services(self.profile, self.sites, self.scheduler, clock, huawei_auth)
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
            info = derive_info(spec.name, spec.uid, self.profile, site=spec.site)
            self.accounts.open(info, spec.push)
        self.globe_limiter = QpsLimiter(clock)  # business limits, on the provider's clock
        for api, qps in self.profile.globe_qps.items():
            self.globe_limiter.set_limit(api, qps)
        self.router = self._build_router("cn")
        self.intl_router = self._build_router("intl")
        self.faults = Faults()
        for group, fault_spec in self.profile.faults.items():
            self.faults.set(group, fault_spec)
        self.limiter = QpsLimiter()
        for api, qps in self.profile.qps.items():
            self.limiter.set_limit(api, qps)
        self.call_log = CallLog()
        self.dispatcher, self.intl_dispatcher = (
            Dispatcher(router, self.faults, self.limiter, self.call_log, self.accounts.account_of)
            for router in (self.router, self.intl_router)
        )

    def _site(self, name: str) -> Site:
        """A site's keys (Alicom's owner key on both: an emulator-only key) and its MNS."""
        credentials = CredentialStore(self.clock)
        credentials.add(Credential(MNS_OWNER_KEY_ID, MNS_OWNER_KEY_SECRET, KeyKind.MNS_OWNER))
        cap = LongPollCap(self.profile.long_polls_per_queue, self.profile.long_polls_per_key)
        return Site(name, credentials, MnsService(credentials, long_poll_cap=cap))

    def _build_router(self, site: str) -> Router:
        from receiptd_emulator import control  # control needs Emulator: import late

        gateway = pop_gateway(
            self.sites[site],
            self.accounts.get,
            self.globe_limiter,
            self.clock,
            lambda: self.token_lifetime,
        )
        router = Router()
        router.add(control.route(self))
        router.add(self.sites[site].mns.route())
        router.add(gateway.route("dybase"))
        router.add(gateway.route("dysms", fallback=True))
        if site == "cn":
            router.add(self.koomessage.route())
        return router

    # -- accounts ------------------------------------------------------------------------
    def add_account(
        self,
        name: str,
        uid: str | None = None,
        *,
        push_specs: Mapping[str, push.PushSpec] | None = None,
        site: str = "cn",
    ) -> AccountInfo:
        """Another customer account, before or after `start()`: its keys are derived from
        `name` (the same name gives the same keys), its uid too unless given; its queues are
        created on its site's MNS; `push_specs` are its own push targets per message type
        (SmsReport, SmsUp, koomessage), as `set_push(..., account=name)` sets. `site`: "cn"
        (the first port) or "intl" (the international site, the second port)."""
        spec = AccountSpec(name, uid, push_specs or {}, site)  # validates
        info = derive_info(spec.name, spec.uid, self.profile, site=spec.site)
        return self.accounts.open(info, spec.push).info

    def account(self, name: str | None = None) -> AccountInfo:
        """One account's info (None: the default account's)."""
        return self.accounts.get(name).info

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Emulator:
        """Bind both ports, start serving and return once they accept connections."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("an Emulator cannot be restarted; create a new one")
            if not self._servers:
                dispatchers = {"cn": self.dispatcher, "intl": self.intl_dispatcher}
                for site, dispatcher in dispatchers.items():
                    self._servers[site] = ServerThread(self._host, self._ports[site], dispatcher)
                self.scheduler.start()
                for server in self._servers.values():
                    server.start()
        return self

    def stop(self) -> None:
        """Idempotent. Order: stop accepting, wake long polls, drop connections (each site),
        stop timers, then every account's pushers."""
        with self._lock:
            servers, self._servers, self._stopped = self._servers, {}, True
        for site, server in servers.items():
            self.sites[site].mns.close()
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

    def _server(self, site: str) -> ServerThread:
        server = self._servers.get(site)
        if server is None:
            raise RuntimeError("the emulator is not running")
        return server

    @property
    def port(self) -> int:
        """The China site's (and KooMessage's) port."""
        return self._server("cn").port

    @property
    def intl_port(self) -> int:
        """The international site's port."""
        return self._server("intl").port

    @property
    def info(self) -> EmulatorInfo:
        return emulator_info(
            self._host,
            self.port,
            self.intl_port,
            self.accounts.infos(),
            self.profile.name,
            self.token_lifetime,
        )

    def add_route(self, route: Route, *, replace: str | None = None) -> None:
        """Plug in another API (e.g. `replace="koomessage"` for GET /v1/aim/send-details)."""
        if replace is None:
            self.router.add(route)
        else:
            self.router.replace(replace, route)

    # -- queues --------------------------------------------------------------------------
    def queue_name(self, queue: str, account: str | None = None) -> str:
        """``report`` / ``up`` / ``globe``: the account's queue; any other name is itself."""
        return self.accounts.get(account).queue_name(queue)

    def _queue(self, queue: str, account: str | None) -> MnsQueue:
        """A queue of the account's site's MNS (``report``/``up``/``globe`` or a name)."""
        target = self.accounts.get(account)
        return target.mns.queue(target.queue_name(queue))

    def enqueue(self, queue: str, body: str, delay: float = 0, account: str | None = None) -> str:
        """Put a raw MNS body (already base64 etc.) into a queue; returns the MessageId."""
        target = self._queue(queue, account)
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

    def enqueue_globe_report(
        self, fields: Mapping[str, Any], delay: float = 0, account: str | None = None
    ) -> str:
        """A receipt of an international send (GlobeSmsReport, or an international account's
        SmsReport), base64 of the JSON of `fields`."""
        return self.enqueue("globe", receipts.encode(fields), delay, account)

    def inject_malformed(
        self, queue: str = "report", body: str | None = None, account: str | None = None
    ) -> str:
        """Enqueue a realistic broken body (bad base64 / not JSON / missing field, in the
        shape of what ``queue`` carries); returns it."""
        with self._lock:
            if body is None:
                body = self.accounts.get(account).malformed_body(queue, self._rng)
        self.enqueue(queue, body, account=account)
        return body

    def queue_depth(self, queue: str, account: str | None = None) -> dict[str, int]:
        return self._queue(queue, account).depth()

    def set_queue_attributes(
        self, queue: str, account: str | None = None, **changes: Any
    ) -> QueueMeta:
        """Change a queue's attributes (QueueMeta field names, e.g. visibility_timeout=2)."""
        target = self._queue(queue, account)
        target.meta = dataclasses.replace(target.meta, **changes)
        return target.meta

    def set_long_poll_cap(self, per_queue: int = 0, per_key: int = 0) -> None:
        """Cap concurrent MNS long polls per queue and per access key (0 = no cap), on
        both sites' MNS."""
        for site in self.sites.values():
            site.mns.long_polls.set_cap(LongPollCap(per_queue, per_key))

    def long_polls(self, site: str = "cn") -> dict[str, Any]:
        """The cap, long polls held now and at most per queue, held in total and refused."""
        return self.sites[site].mns.long_polls.stats()

    def wait_long_polls(
        self, queue: str, holding: int = 1, timeout: float = 10.0, account: str | None = None
    ) -> bool:
        """Wait until ``holding`` long polls are held on ``queue`` (a name or report/up)."""
        target = self.accounts.get(account)
        name = target.queue_name(queue)
        return target.mns.long_polls.wait_holding(name, holding, timeout)

    def issue_token(
        self, message_type: str = "SmsReport", account: str | None = None
    ) -> Credential:
        """A temporary credential for an account's Alicom queue, as QueryTokenForMnsQueue
        would issue it."""
        target = self.accounts.get(account)
        queue = target.info.queue_prefix + message_type
        target.mns.queue(queue)
        store = self.sites[target.info.site].credentials
        return store.issue_sts(queue, self.token_lifetime, account=target.info.name)

    def expire_tokens(self) -> int:
        """Every temporary credential issued so far (both sites) is expired from now on."""
        return sum(site.credentials.expire_sts() for site in self.sites.values())

    # -- SMS truth -----------------------------------------------------------------------
    def seed_sends(self, sends: Iterable[SeedSend], account: str | None = None) -> list[str]:
        return self.accounts.get(account).provider.seed(sends)

    def records(self, account: str | None = None) -> list[SendRecord]:
        return self.accounts.get(account).records.snapshot()

    def seed_globe_sends(
        self, sends: Iterable[SeedGlobeSend], account: str | None = None
    ) -> list[str]:
        """International sends with chosen outcomes (as SendMessageToGlobe on the account's
        site would have made them); returns their MessageIds."""
        return self.accounts.get(account).globe.seed(sends)

    def globe_records(self, account: str | None = None) -> list[GlobeRecord]:
        """The account's international sends (the truth QueryMessage answers from)."""
        return self.accounts.get(account).globe.records.snapshot()

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
        for site in self.sites.values():
            site.mns.long_polls.reset_stats()

    def set_faults(self, api_group: str, spec: FaultSpec) -> None:
        self.faults.set(api_group, spec)

    def set_qps_limit(self, api: str, qps: float | None) -> None:
        """Per-account QPS limit for an API name as in `calls()` (None removes it)."""
        self.limiter.set_limit(api, qps)

    def set_globe_qps(self, api: str, qps: float | None) -> None:
        """Per-account business limit of a Dysmsapi 2018-05-01 action (ResponseCode
        QPS_LIMIT_CONTROL, counted on the provider's clock; None removes it)."""
        if api not in GLOBE_APIS:
            raise ValueError(f"api must be one of {GLOBE_APIS}")
        self.globe_limiter.set_limit(api, qps)
