"""The push paths: which account and channel a request's path names, when its token is right.

* ``/push/{token}/{route}``: the ``default`` account of the route's provider (the paths of
  before accounts);
* ``/push/{token}/{account}/{route}``: the named account ``account``;

where ``route`` is ``aliyun/SmsReport`` or ``aliyun/SmsUp`` (an Alibaba account) or
``v1/aim/send-status`` (a Huawei account). Account ids are ``[a-z0-9_]{1,32}`` and never
``aliyun``, ``huawei``, ``v1`` or ``default`` (``receiptd.config.accounts.check_id``), so a
path reads one way only. Each account has its own token: a path is routed only when its token
is that account's (constant-time compare), so one account's URL cannot write into another's.
Anything else (a wrong token, an unknown account, an account of the other provider) is not
routed, and the listener answers the same bare 404 for all of them (docs/push.md).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo

from receiptd import domain
from receiptd.ingest.push import formats as push_formats

# A body, the account's time zone and the element bound -> what it holds.
Parser = Callable[[bytes, tzinfo, int], push_formats.Parsed]


@dataclass(frozen=True)
class PushAccount:
    """An account that may push: its id, provider (aliyun|huawei), token and time zone."""

    name: str
    provider: str
    token: str = field(repr=False)
    tz: tzinfo = domain.CHINA_TZ


def default_accounts(token: str, tz: tzinfo = domain.CHINA_TZ) -> tuple[PushAccount, ...]:
    """The two ``default`` accounts (one per provider) with one token: today's paths."""
    return tuple(PushAccount(domain.DEFAULT_ACCOUNT, p.value, token, tz) for p in domain.Provider)


@dataclass(frozen=True)
class Channel:
    """One push route: what it carries and how its body is read."""

    provider: str
    type: str  # metric label: report | up | send_status
    queue: str  # dead_letter.queue: the push channel (the same for every account)
    parse: Parser


def _aliyun(kind: domain.MessageType) -> Parser:
    # push_formats.parse_aliyun looked up per call (tests plant a defect there).
    return lambda raw, tz, most: push_formats.parse_aliyun(raw, kind, tz, most)


CHANNELS: Mapping[str, Channel] = {
    "aliyun/SmsReport": Channel(
        "aliyun", "report", "push:aliyun/SmsReport", _aliyun(domain.MessageType.REPORT)
    ),
    "aliyun/SmsUp": Channel("aliyun", "up", "push:aliyun/SmsUp", _aliyun(domain.MessageType.UP)),
    "v1/aim/send-status": Channel(
        "huawei",
        "send_status",
        "push:huawei/send-status",
        lambda raw, _tz, most: push_formats.parse_koomessage(raw, most),
    ),
}


@dataclass(frozen=True)
class Route:
    """A routed request: whose push it is and on which channel."""

    account: PushAccount
    channel: Channel


class Router:
    """Routes push paths to the accounts given (those without a token have no paths)."""

    def __init__(self, accounts: Iterable[PushAccount]) -> None:
        self.accounts: dict[tuple[str, str], PushAccount] = {}
        for account in accounts:
            key = (account.name, account.provider)
            if key in self.accounts:
                raise ValueError(f"push account {account.name!r} ({account.provider}) twice")
            if account.token:
                self.accounts[key] = account
        # Compared against when the path names no account, so every path costs one compare.
        self._decoy = secrets.token_hex(16).encode()

    def routes(self) -> list[Route]:
        """Every route of every account."""
        return [
            Route(account, channel)
            for account in self.accounts.values()
            for channel in CHANNELS.values()
            if channel.provider == account.provider
        ]

    def route(self, path: str) -> Route | None:
        """The route of ``path`` when its token is the account's, else None."""
        prefix, _, rest = path.lstrip("/").partition("/")
        token, _, rest = rest.partition("/")
        name, channel = domain.DEFAULT_ACCOUNT, CHANNELS.get(rest)
        if channel is None:  # /{account}/{route}; "default" has today's paths only
            name, _, route = rest.partition("/")
            channel = CHANNELS.get(route) if name != domain.DEFAULT_ACCOUNT else None
        account = self.accounts.get((name, channel.provider)) if channel else None
        expected = account.token.encode() if account else self._decoy
        # compare_digest on bytes: constant time over the token whatever the path named.
        good = hmac.compare_digest(token.encode("utf-8", "replace"), expected)
        if prefix != "push" or not good or account is None or channel is None:
            return None
        return Route(account, channel)
