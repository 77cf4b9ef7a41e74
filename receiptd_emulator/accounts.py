"""Customer accounts: each with its own uid, keys, Alicom queues, sends, receipts, push targets
and KooMessage send details, all served on the emulator's one port.

As at Alibaba, an account's key reaches only that account: Dysmsapi answers from its own sends,
Dybaseapi issues tokens for its own queues, and MNS keys (temporary or direct) open its own
queues only. The `default` account is the one the emulator always had (`EmulatorInfo`).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from receiptd_emulator import globe_receipts, push, receipts
from receiptd_emulator.credentials import Credential, KeyKind
from receiptd_emulator.delivery import Courier
from receiptd_emulator.globe_provider import GlobeProvider
from receiptd_emulator.koomessage import KooMessageAuth
from receiptd_emulator.koomessage_store import DetailStore
from receiptd_emulator.mns import MnsService
from receiptd_emulator.mns_queue import MnsError
from receiptd_emulator.profiles import ACCOUNT_NAME, DEFAULT_ACCOUNT, SITES, Profile
from receiptd_emulator.provider import SmsProvider
from receiptd_emulator.scheduler import Scheduler
from receiptd_emulator.sites import Site
from receiptd_emulator.sms_records import SmsRecords

__all__ = ["DEFAULT_ACCOUNT", "Account", "AccountInfo", "Accounts", "derive_info"]


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """What a client needs to act as one account (an entry of the CLI's ``accounts`` list).

    mns_access_key_*: a direct MNS key for this account's queues only (emulator-only: the
    real Alicom queues are read with tokens). huawei_*: this account's KooMessage AK/SK and
    IAM token, each with its own send details. site: "cn" or "intl" (its keys work on that
    site's port only). globe_queue: the China site's GlobeSmsReport queue (receipts of
    SendMessageToGlobe); "" for an international account, whose receipts go to report_queue
    on the international MNS (and which has no up_queue: "").
    """

    name: str
    uid: str
    access_key_id: str
    access_key_secret: str = field(repr=False)
    queue_prefix: str
    report_queue: str
    up_queue: str
    sign_name: str
    template_code: str
    mns_access_key_id: str
    mns_access_key_secret: str = field(repr=False)
    huawei_access_key_id: str
    huawei_secret_access_key: str = field(repr=False)
    huawei_auth_token: str = field(repr=False)
    site: str = "cn"
    globe_queue: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _digest(purpose: str, name: str) -> str:
    return hashlib.sha256(f"receiptd-emulator:{purpose}:{name}".encode()).hexdigest()


def derive_uid(name: str) -> str:
    """A 16-digit account uid (like `1092397003988387`), the same for the same name."""
    return "1" + str(int(_digest("uid", name), 16))[:15]


def derive_info(
    name: str,
    uid: str | None,
    profile: Profile,
    keys: Mapping[str, str] | None = None,
    site: str = "cn",
) -> AccountInfo:
    """An account's info; keys are derived from the name (fixed fakes) unless given."""
    if not ACCOUNT_NAME.fullmatch(name):
        raise ValueError(f"account name {name!r} must match [a-z0-9_]{{1,32}}")
    if site not in SITES:
        raise ValueError(f"account site {site!r} must be one of {SITES}")
    uid = uid or derive_uid(name)
    prefix = f"Alicom-Queue-{uid}-"
    key, mns, huawei = _digest("key", name), _digest("mns", name), _digest("huawei", name)
    values = {
        "access_key_id": "LTAI5t" + key[:18],
        "access_key_secret": key[18:48],
        "mns_access_key_id": "LTAI5tMns" + mns[:15],
        "mns_access_key_secret": mns[15:45],
        "huawei_access_key_id": "HW" + huawei[:24].upper(),
        "huawei_secret_access_key": huawei[24:56],
        "huawei_auth_token": "MII" + _digest("token", name)[:40],
    }
    values.update(keys or {})
    return AccountInfo(
        name=name,
        uid=uid,
        queue_prefix=prefix,
        report_queue=prefix + "SmsReport",
        up_queue=prefix + "SmsUp" if site == "cn" else "",
        sign_name=profile.sign_names[0],
        template_code=next(iter(profile.templates)),
        site=site,
        globe_queue=prefix + "GlobeSmsReport" if site == "cn" else "",
        **values,
    )


def account_seed(profile: Profile, name: str) -> int | None:
    """The default account draws with the profile's seed; another with one derived from it."""
    if profile.seed is None or name == DEFAULT_ACCOUNT:
        return profile.seed
    return int(_digest(f"seed:{profile.seed}", name)[:15], 16)


class Account:
    """One account's state: its sends and receipts (SendSms and international sends), push
    targets and KooMessage details, on its site's MNS."""

    def __init__(
        self,
        info: AccountInfo,
        profile: Profile,
        mns: MnsService,
        scheduler: Scheduler,
        clock: Callable[[], float],
        details: DetailStore | None = None,
    ) -> None:
        self.info = info
        self.mns = mns
        self._scheduler = scheduler
        seed = account_seed(profile, info.name)
        self.records = SmsRecords(clock, seed=seed)  # the provider's time, as its answers
        courier = Courier(mns, scheduler, clock)
        courier.divert = self._divert
        queues = (info.report_queue, info.up_queue)
        self.provider = SmsProvider(
            profile, self.records, mns, scheduler, clock, queues=queues, seed=seed, courier=courier
        )
        self.globe = GlobeProvider(
            profile, info.site, courier, self.queue_name("globe"), clock, seed=seed
        )
        self.details = details if details is not None else DetailStore()
        self.pushers: dict[str, push.Pusher] = {}
        self._lock = threading.Lock()

    def queue_name(self, queue: str) -> str:
        """``report`` / ``up`` / ``globe`` (where international sends' receipts go: the
        GlobeSmsReport queue, or an international account's SmsReport queue) are this
        account's queues; any other name is itself."""
        names = {
            "report": self.info.report_queue,
            "up": self.info.up_queue,
            "globe": self.info.globe_queue or self.info.report_queue,
        }
        return names.get(queue, queue)

    def queues(self) -> tuple[str, ...]:
        """The queues this account's receipts and replies go to, on its site's MNS."""
        return tuple(
            q for q in (self.info.report_queue, self.info.up_queue, self.info.globe_queue) if q
        )

    def malformed_body(self, queue: str, rng: random.Random) -> str:
        """A broken body in the shape of what ``queue`` carries."""
        name = self.queue_name(queue)
        if self.info.site == "intl" and name == self.info.report_queue:
            return globe_receipts.malformed_body("intl", rng)
        if name == self.info.globe_queue:
            return globe_receipts.malformed_body("cn", rng)
        return receipts.malformed_body(rng)

    # -- push mode -----------------------------------------------------------------------
    def set_push(self, kind: str, spec: push.PushSpec | None) -> None:
        """Deliver ``kind`` by HTTP push (None: back to MNS, or no KooMessage callbacks).
        Receipts still retrying in the old pusher are dropped."""
        new = (
            None
            if spec is None
            else push.build(kind, spec.for_site(self.info.site), self._scheduler)
        )
        with self._lock:
            old = self.pushers.pop(kind, None)
            if new is not None:
                self.pushers[kind] = new
        if old is not None:
            old.stop()

    def pusher(self, kind: str) -> push.Pusher:
        pusher = self.pushers.get(kind)
        if pusher is None:
            raise ValueError(f"{kind} is not in push mode for account {self.info.name!r}")
        return pusher

    def push_stats(self) -> dict[str, dict[str, Any]]:
        return {kind: p.snapshot() for kind, p in list(self.pushers.items())}

    def stop_push(self) -> None:
        for kind in list(self.pushers):
            self.set_push(kind, None)

    def _divert(self, queue: str, bodies: list[str]) -> bool:
        kinds = {self.info.report_queue: "SmsReport", self.info.up_queue: "SmsUp"}
        pusher = self.pushers.get(kinds.get(queue, ""))
        if pusher is None:
            return False
        pusher.submit([push.queue_element(body) for body in bodies])
        return True


@dataclass(frozen=True)
class Services:
    """What every account is served by: the profile, each site's MNS and keys (`sites` by
    name), the receipt scheduler and the provider's clock, and KooMessage's keys."""

    profile: Profile
    sites: Mapping[str, Site]
    scheduler: Scheduler
    clock: Callable[[], float]
    huawei_auth: KooMessageAuth


class Accounts:
    """Every account by name, the default one first; lookups by name and KooMessage caller."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._lock = threading.Lock()
        self._by_name: dict[str, Account] = {}
        self._huawei: dict[str, str] = {}  # KooMessage AK or IAM token -> account name

    def open(
        self,
        info: AccountInfo,
        push_specs: Mapping[str, push.PushSpec] | None = None,
        details: DetailStore | None = None,
    ) -> Account:
        """Serve one more account: its queues, its keys in every API, its push targets."""
        s = self._services
        site = s.sites[info.site]
        account = Account(info, s.profile, site.mns, s.scheduler, s.clock, details)
        self._add(account)  # refuses a taken name or uid before anything is created
        for queue in account.queues():
            with contextlib.suppress(MnsError):  # already made, with other attributes: kept
                site.mns.create_queue(queue)
        key = Credential(
            info.access_key_id, info.access_key_secret, KeyKind.ACCOUNT, account=info.name
        )
        site.credentials.add(key)
        direct = Credential(
            info.mns_access_key_id,
            info.mns_access_key_secret,
            KeyKind.MNS_ACCOUNT,
            queue=info.queue_prefix,
            account=info.name,
        )
        site.credentials.add(direct)
        s.huawei_auth.keys[info.huawei_access_key_id] = info.huawei_secret_access_key
        s.huawei_auth.tokens.add(info.huawei_auth_token)
        for kind, spec in (push_specs or {}).items():
            account.set_push(kind, spec)
        return account

    def _add(self, account: Account) -> None:
        info = account.info
        with self._lock:
            if info.name in self._by_name:
                raise ValueError(f"account {info.name!r} already exists")
            if any(a.info.uid == info.uid for a in self._by_name.values()):
                raise ValueError(f"account uid {info.uid} is already another account's")
            self._by_name = {**self._by_name, info.name: account}  # copy-on-write reads
            self._huawei[info.huawei_access_key_id] = info.name
            self._huawei[info.huawei_auth_token] = info.name

    def get(self, name: str | None = None) -> Account:
        """The named account (None: the default one); ValueError if there is none."""
        account = self._by_name.get(name or DEFAULT_ACCOUNT)
        if account is None:
            raise ValueError(f"unknown account {name!r}")
        return account

    def all(self) -> list[Account]:
        return list(self._by_name.values())

    def infos(self) -> tuple[AccountInfo, ...]:
        return tuple(a.info for a in self._by_name.values())

    def account_of(self, key: str) -> str:
        """The account name of any key id or IAM token ("" for none: see `RecordedCall`)."""
        for site in self._services.sites.values():
            name = site.credentials.account_of(key)
            if name:
                return name
        return self._huawei.get(key, "")

    def huawei_account(self, identity: str) -> str:
        """The account name of a KooMessage AK or IAM token ("" if none)."""
        return self._huawei.get(identity, "")

    def details_for(self, identity: str) -> DetailStore:
        """The KooMessage details an AK or token may read (unknown: the default account's)."""
        return self.get(self.huawei_account(identity) or None).details
