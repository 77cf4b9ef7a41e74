"""Profiles: how the emulated provider behaves (outcomes, receipt fates, delays, faults, limits).

Profiles are TOML files (shipped ones in `receiptd_emulator/profiles/`) or built in Python;
unknown keys are errors, so a typo in a profile cannot silently change nothing.
"""

from __future__ import annotations

import random
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from receiptd_emulator.faults import GROUPS, FaultSpec
from receiptd_emulator.push import KINDS as PUSH_KINDS
from receiptd_emulator.push import PushSpec

OUTCOMES = ("delivered", "failed", "pending")
#: queue: one receipt when the carrier answers; lost: none (only QuerySendDetails tells);
#: duplicate: the same receipt twice; late: one receipt long after others (out of order);
#: malformed: a broken body instead of the receipt.
FATES = ("queue", "lost", "duplicate", "late", "malformed")


#: An account's name: a stable id, as receiptd names its accounts.
ACCOUNT_NAME = re.compile(r"[a-z0-9_]{1,32}")
DEFAULT_ACCOUNT = "default"
#: Alibaba's sites: "cn" (the China site, the emulator's first port) and "intl" (the
#: international site, alibabacloud.com, served on the emulator's second port).
SITES = ("cn", "intl")
#: Dysmsapi 2018-05-01 per-account limits (calls/s), answered with ResponseCode
#: QPS_LIMIT_CONTROL: SendMessageToGlobe and QueryMessage as the current API pages state
#: them, BatchSendMessageToGlobe as its SDK docstring does. SendMessageWithTemplate: none found.
DEFAULT_GLOBE_QPS: Mapping[str, float] = {
    "SendMessageToGlobe": 2000.0,
    "BatchSendMessageToGlobe": 1.0,
    "QueryMessage": 300.0,
}
GLOBE_APIS = (*DEFAULT_GLOBE_QPS, "SendMessageWithTemplate")


@dataclass(frozen=True)
class AccountSpec:
    """An account besides the default one (`[[accounts]]` in a profile).

    uid: the Alibaba account id in the queue names (derived from the name when not given);
    push: per message type, this account's push target (like the profile's `[push.<type>]`);
    site: "cn" (the China site) or "intl" (the international site, the second port).
    """

    name: str
    uid: str | None = None
    push: Mapping[str, PushSpec] = field(default_factory=dict)
    site: str = "cn"

    def __post_init__(self) -> None:
        if not ACCOUNT_NAME.fullmatch(self.name):
            raise ValueError(f"account name {self.name!r} must match [a-z0-9_]{{1,32}}")
        if self.uid is not None and not re.fullmatch(r"[1-9][0-9]{0,19}", self.uid):
            raise ValueError(f"account uid {self.uid!r} must be 1..20 digits")
        if set(self.push) - set(PUSH_KINDS):
            raise ValueError(f"push types must be among {PUSH_KINDS}")
        if self.site not in SITES:
            raise ValueError(f"account site {self.site!r} must be one of {SITES}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> AccountSpec:
        unknown = set(data) - {"name", "uid", "push", "site"}
        if unknown:
            raise ValueError(f"unknown account keys: {sorted(unknown)}")
        push = {k: PushSpec(**spec) for k, spec in data.get("push", {}).items()}
        uid = data.get("uid")
        site = str(data.get("site", "cn"))
        return cls(str(data["name"]), None if uid is None else str(uid), push, site)


@dataclass(frozen=True, slots=True)
class Failure:
    code: str
    message: str


DEFAULT_FAILURES = (
    Failure("UNDELIV", "用户不可达"),
    Failure("MK:0001", "号码状态异常"),
    Failure("IC:0015", "网关内部错误"),
    Failure("EXPIRED", "短信超时未送达"),
)
DEFAULT_TEMPLATES: Mapping[str, str] = {
    "SMS_154950909": "您的验证码为：${code}，请勿泄露于他人！",
    "SMS_200000001": "尊敬的${name}，您的订单${order}已发货。",
}
DEFAULT_REPLIES = ("退订", "收到，谢谢！", "好的👍", "STOP", "Ça marche ✓", "请问几点到？")


@dataclass(frozen=True)
class Profile:
    """Everything that varies between emulator runs. Probabilities are per recipient."""

    name: str = "default"
    seed: int | None = None
    account_uid: str = "1234567890"
    token_lifetime: float = 3600.0
    sign_names: tuple[str, ...] = ("阿里云短信测试",)
    templates: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    # Outcome weights (normalised): delivered / failed / pending (never settles).
    delivered: float = 0.95
    failed: float = 0.05
    pending: float = 0.0
    # Of the failed sends to the international site, the share reported as expired (Status 6).
    expired_share: float = 0.25
    failures: tuple[Failure, ...] = DEFAULT_FAILURES
    # Receipt fates (the rest go to the queue normally) and delays in seconds.
    receipt_delay: tuple[float, float] = (0.5, 3.0)
    lost: float = 0.0
    duplicate: float = 0.0
    late: float = 0.0
    malformed: float = 0.0
    late_delay: tuple[float, float] = (30.0, 120.0)
    # SmsUp replies.
    reply_rate: float = 0.0
    reply_delay: tuple[float, float] = (1.0, 10.0)
    replies: tuple[str, ...] = DEFAULT_REPLIES
    qps: Mapping[str, float] = field(default_factory=dict)
    # Dysmsapi 2018-05-01 business limits per account (ResponseCode QPS_LIMIT_CONTROL).
    globe_qps: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_GLOBE_QPS))
    faults: Mapping[str, FaultSpec] = field(default_factory=dict)
    # Push mode per message type (SmsReport, SmsUp, koomessage): HTTP POST instead of MNS.
    push: Mapping[str, PushSpec] = field(default_factory=dict)
    # MNS concurrent long polls per queue and per access key (0 = no cap); past the cap a
    # receive with a wait answers MessageNotExist at once.
    long_polls_per_queue: int = 0
    long_polls_per_key: int = 0
    # Accounts besides the default one (whose uid is `account_uid`).
    accounts: tuple[AccountSpec, ...] = ()

    def __post_init__(self) -> None:
        if min(self.delivered, self.failed, self.pending) < 0 or (
            self.delivered + self.failed + self.pending <= 0
        ):
            raise ValueError("outcome weights must be >= 0 and not all 0")
        fates = (self.lost, self.duplicate, self.late, self.malformed)
        if min(fates) < 0 or sum(fates) > 1:
            raise ValueError("lost + duplicate + late + malformed must be within 0..1")
        for lo, hi in (self.receipt_delay, self.late_delay, self.reply_delay):
            if not 0 <= lo <= hi:
                raise ValueError("delay ranges must be [low, high] with 0 <= low <= high")
        if not self.sign_names or not self.templates or not self.failures:
            raise ValueError("a profile needs sign names, templates and failure codes")
        self._check_globe()
        if min(self.long_polls_per_queue, self.long_polls_per_key) < 0:
            raise ValueError("long_polls_per_queue / long_polls_per_key must be >= 0")
        unknown = set(self.faults) - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown fault groups: {sorted(unknown)}")
        if set(self.push) - set(PUSH_KINDS):
            raise ValueError(f"push types must be among {PUSH_KINDS}")
        names = [DEFAULT_ACCOUNT, *(a.name for a in self.accounts)]
        if len(set(names)) != len(names):
            raise ValueError(f"account names must be unique and not {DEFAULT_ACCOUNT!r}")

    def _check_globe(self) -> None:
        if not 0 <= self.expired_share <= 1:
            raise ValueError("expired_share must be within 0..1")
        if set(self.globe_qps) - set(GLOBE_APIS) or any(q <= 0 for q in self.globe_qps.values()):
            raise ValueError(f"globe_qps: APIs among {GLOBE_APIS}, limits > 0")

    # -- derived names -------------------------------------------------------------------
    @property
    def queue_prefix(self) -> str:
        return f"Alicom-Queue-{self.account_uid}-"

    @property
    def report_queue(self) -> str:
        return self.queue_prefix + "SmsReport"

    @property
    def up_queue(self) -> str:
        return self.queue_prefix + "SmsUp"

    # -- draws ---------------------------------------------------------------------------
    def pick_outcome(self, rng: random.Random) -> str:
        return rng.choices(OUTCOMES, (self.delivered, self.failed, self.pending))[0]

    def pick_fate(self, rng: random.Random) -> str:
        rest = 1.0 - (self.lost + self.duplicate + self.late + self.malformed)
        weights = (rest, self.lost, self.duplicate, self.late, self.malformed)
        return rng.choices(FATES, weights)[0]

    def pick_failure(self, rng: random.Random) -> Failure:
        return rng.choice(self.failures)

    # -- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, spec: Profile | str | Path) -> Profile:
        """A Profile, a shipped profile name (default, lossy, chaos, demo) or a TOML path."""
        if isinstance(spec, Profile):
            return spec
        path = Path(spec)
        if path.suffix == ".toml" or path.exists():
            return cls.from_toml(path.read_text(encoding="utf-8"), default_name=path.stem)
        shipped = resources.files("receiptd_emulator").joinpath("profiles", f"{spec}.toml")
        if not shipped.is_file():
            raise ValueError(f"unknown profile {spec!r}: not a shipped name nor a TOML file")
        return cls.from_toml(shipped.read_text(encoding="utf-8"), default_name=str(spec))

    @classmethod
    def from_toml(cls, text: str, default_name: str = "custom") -> Profile:
        return cls.from_mapping(tomllib.loads(text), default_name)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], default_name: str = "custom") -> Profile:
        data = dict(data)
        kwargs: dict[str, Any] = {"name": data.pop("name", default_name)}
        for section, prefix in (("outcomes", ""), ("receipts", ""), ("replies", "reply_")):
            kwargs.update(_section(data.pop(section, {}), prefix))
        if "failures" in data:
            kwargs["failures"] = tuple(
                Failure(f["code"], f["message"]) for f in data.pop("failures")
            )
        if "faults" in data:
            kwargs["faults"] = {g: FaultSpec(**spec) for g, spec in data.pop("faults").items()}
        if "push" in data:
            kwargs["push"] = {k: PushSpec(**spec) for k, spec in data.pop("push").items()}
        if "globe_qps" in data:  # a table names the limits it changes; the rest stay
            kwargs["globe_qps"] = {**DEFAULT_GLOBE_QPS, **data.pop("globe_qps")}
        if "accounts" in data:
            kwargs["accounts"] = tuple(AccountSpec.from_mapping(a) for a in data.pop("accounts"))
        kwargs.update(data)
        allowed = {f.name for f in fields(cls)}
        unknown = set(kwargs) - allowed
        if unknown:
            raise ValueError(f"unknown profile keys: {sorted(unknown)}")
        for key in ("sign_names", "replies", "receipt_delay", "late_delay", "reply_delay"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def with_overrides(self, **changes: Any) -> Profile:
        return replace(self, **changes)


def _section(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """`[replies] rate = 0.1` -> reply_rate; `[replies] samples` -> replies; others as named."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if prefix and key == "samples":
            out["replies"] = value
        elif prefix and key in ("rate", "delay"):
            out[prefix + key] = value
        elif key == "delay" and not prefix:
            out["receipt_delay"] = value
        else:
            out[key] = value
    return out
