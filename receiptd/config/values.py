"""The value types and parsers of settings: addresses, networks, webhook endpoints, errors.

Shared by the flat settings (which validate with them) and the parts built from those
settings (which hold the parsed values); pure, no receiptd import.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
PUSH_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")


class ConfigError(Exception):
    """A setting is invalid; the message names the key and the reason (exit code 2)."""


# --- Per-account values: the flat settings and every [accounts.<id>] share these bounds -------


def check_endpoint(value: str) -> str:
    """A provider endpoint: ``http(s)://…``, its trailing ``/`` dropped."""
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


def check_push_token(value: SecretStr) -> SecretStr:
    """A push path token (empty: none): at least 16 URL-safe characters."""
    token = value.get_secret_value()
    if token and (len(token) < 16 or not PUSH_TOKEN_CHARS.fullmatch(token)):
        raise ValueError("must be at least 16 characters of A-Z a-z 0-9 - _ . ~")
    return value


Endpoint = Annotated[str, AfterValidator(check_endpoint)]
PushToken = Annotated[SecretStr, AfterValidator(check_push_token)]
RequestTimeout = Annotated[float, Field(gt=0, le=120)]  # seconds per provider API call
ThreadCount = Annotated[int, Field(ge=0, le=64)]  # MNS round trips, not CPU, bound it
RateLimit = Annotated[float, Field(gt=0, le=5000)]  # status queries per second
Horizon = Annotated[float, Field(ge=0)]  # seconds a pending send is asked about
# The international APIs' documented caps per account (docs/international.md, "Rate limits").
QueryMessageRate = Annotated[float, Field(gt=0, le=300)]  # QueryMessage calls per second
GlobeSendRate = Annotated[float, Field(gt=0, le=2000)]  # SendMessageToGlobe calls per second
Site = Literal["cn", "intl"]  # Alibaba's China site, or its international site

# An account id names the account in settings, push paths, rows and metric labels.
ACCOUNT_ID = re.compile(r"[a-z0-9_]{1,32}")
DEFAULT_ACCOUNT = "default"
# Push path segments (``/push/<token>/<account>/aliyun/…``) and the flat settings' account.
RESERVED_ACCOUNT_IDS = ("aliyun", "huawei", "v1", DEFAULT_ACCOUNT)


def check_account_id(name: str) -> str:
    """``name`` when it has an account id's form, else ValueError saying what that is (its
    existence is the settings' business)."""
    if not ACCOUNT_ID.fullmatch(name):
        raise ValueError(f"{name!r} is not an account id (1 to 32 of a-z 0-9 _)")
    return name


def check_account_ids(value: tuple[str, ...]) -> tuple[str, ...]:
    """A list of account ids that may name ``default`` (the flat settings' accounts)."""
    bad = [a for a in value if not ACCOUNT_ID.fullmatch(a)]
    if bad:
        raise ValueError(f"not account ids (1 to 32 of a-z 0-9 _): {bad}")
    return value


def split_ids(value: str) -> tuple[str, ...]:
    """``a, b`` (a comma-separated setting) to ids, blanks ignored."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


# --- Webhooks (event outbox + Standard Webhooks dispatcher) ---------------------------------
WEBHOOK_EVENT_TYPES = ("send.delivered", "send.failed", "send.expired", "reply.received")


class WebhookEndpoint(BaseModel):
    """One endpoint of ``[[webhook.endpoints]]``: its own URL, secret, events and limits."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    url: str
    secret: SecretStr
    events: tuple[str, ...] = ()  # empty: every event type
    timeout: float = Field(10.0, gt=0, le=120)
    concurrency: int = Field(4, ge=1, le=64)
    retry_period: float | None = Field(None, gt=0)  # default: webhook_retry_period
    accounts: tuple[str, ...] = ()  # empty: every account's events

    @field_validator("accounts")
    @classmethod
    def _check_accounts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_account_ids(value)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_webhook_url(value)

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, value: SecretStr) -> SecretStr:
        check_webhook_secret(value.get_secret_value())
        return value

    @field_validator("events")
    @classmethod
    def _check_events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(WEBHOOK_EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown event type(s) {unknown}; known: {list(WEBHOOK_EVENT_TYPES)}")
        return value


def check_webhook_url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or len(value) > 2048:
        raise ValueError("a webhook URL must start with http:// or https://")
    return value


def check_webhook_secret(value: str) -> None:
    """A Standard Webhooks secret: ``whsec_`` + base64 of at least 24 random bytes."""
    body = value.removeprefix("whsec_")
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not value.startswith("whsec_") or len(key) < 24:
        raise ValueError("expected whsec_<base64 of 24 to 64 random bytes>")


def split_urls(value: str) -> list[str]:
    """``webhook_urls``: comma-separated, blanks ignored."""
    return [u.strip() for u in value.split(",") if u.strip()]


# --- Addresses and networks -------------------------------------------------------------------


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    """``10.0.0.0/8, 192.0.2.7`` to networks, or ValueError naming the bad entry."""
    out = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return tuple(out)


def in_networks(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether ``address`` (an IP address as text) is in one of ``networks``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def split_host_port(addr: str) -> tuple[str, int]:
    """``host:port`` (IPv6 as ``[::1]:9400``) to a tuple, or ValueError."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected host:port, e.g. 127.0.0.1:9400 or 0.0.0.0:9400")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an empty host means all
