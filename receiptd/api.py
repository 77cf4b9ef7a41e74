"""The Python API for applications: send an SMS and register it, or register a send made
elsewhere, so that receiptd settles it (receipt first, compensator otherwise).

    from receiptd import api
    result = api.send_sms(settings, ["13800000000"], "MySign", "SMS_1", {"code": "1234"})
    result.biz_id
    api.send_sms(settings, "13800000000", "BrandB", "SMS_2", account="brand_b")  # its keys

Every send belongs to a provider account (``default``: the flat ``aliyun_*`` / ``huawei_*``
settings; ``[accounts.<id>]`` the named ones): only that account's keys can ask about it, so
the compensator asks that account and no other.

Errors: ``config.ConfigError`` when ``account`` names no configured Aliyun account;
``dysms.DysmsError`` when the provider refuses the send (``.code``, ``.message``);
:class:`RegistrationFailed` when the SMS went out but its row could not be written (it carries
the result, so the caller can retry ``register_send``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from receiptd import config, domain, ports
from receiptd.clock import Clock, utc_now
from receiptd.providers.aliyun import dysms

if TYPE_CHECKING:
    from alibabacloud_dysmsapi20170525.client import Client as DysmsClient


@dataclass(frozen=True, slots=True)
class SendResult:
    biz_id: str
    request_id: str | None
    phone_numbers: tuple[str, ...]
    sent_at: datetime
    registered: int  # rows inserted (0 when every recipient was already registered)


class RegistrationFailed(Exception):
    """The SMS was sent but not registered; ``result`` says what to register."""

    def __init__(self, result: SendResult, cause: Exception) -> None:
        super().__init__(f"sent as BizId {result.biz_id} but not registered: {cause}")
        self.result = result


def split_numbers(phone_numbers: str | Sequence[str]) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b"]`` → ``("a", "b")``; blanks dropped, order and duplicates kept
    out (the provider sends once per number)."""
    items = phone_numbers.split(",") if isinstance(phone_numbers, str) else phone_numbers
    numbers = tuple(dict.fromkeys(n.strip() for n in items if n.strip()))
    if not numbers:
        raise ValueError("at least one phone number is required")
    if len(numbers) > 1000:
        raise ValueError("SendSms takes at most 1,000 phone numbers per call")
    return numbers


def send_sms(
    settings: config.Settings,
    phone_numbers: str | Sequence[str],
    sign_name: str,
    template_code: str,
    template_param: Mapping[str, Any] | str | None = None,
    out_id: str | None = None,
    *,
    account: str = domain.DEFAULT_ACCOUNT,
    clock: Clock = utc_now,
) -> SendResult:
    """SendSms with the keys of the Aliyun ``account``, then register one pending ``sms_send``
    row per recipient under that account in the configured database."""
    from receiptd import wiring

    client = wiring.dysms_client(settings, aliyun_account(settings, account))
    store, sends = wiring.stores(settings)
    try:
        return send_and_register(
            client,
            sends,
            phone_numbers,
            sign_name,
            template_code,
            template_param,
            out_id,
            account=account,
            clock=clock,
        )
    finally:
        store.engine.dispose()


def aliyun_account(settings: config.Settings, name: str) -> config.AliyunAccount:
    """The configured Aliyun account ``name``; ConfigError naming it when there is none (or
    it is a Huawei account, or has no access key)."""
    account = settings.parts.account(name, "aliyun")
    if not isinstance(account, config.AliyunAccount) or not account.configured:
        raise config.ConfigError(f"Aliyun account {name!r} has no access key configured")
    return account


def send_and_register(
    client: DysmsClient,
    sends: ports.SendStore,
    phone_numbers: str | Sequence[str],
    sign_name: str,
    template_code: str,
    template_param: Mapping[str, Any] | str | None = None,
    out_id: str | None = None,
    *,
    account: str = domain.DEFAULT_ACCOUNT,
    clock: Clock = utc_now,
) -> SendResult:
    """SendSms through ``client`` (a Dysmsapi client with ``account``'s keys), then register
    the send in ``sends`` under ``account``."""
    numbers = split_numbers(phone_numbers)
    param = (
        json.dumps(template_param, ensure_ascii=False)
        if isinstance(template_param, Mapping)
        else template_param
    )
    sent_at = clock()  # before the call: the provider's own send time is at most later
    receipt = dysms.send_sms(client, numbers, sign_name, template_code, param, out_id)
    result = SendResult(receipt.biz_id, receipt.request_id, numbers, sent_at, 0)
    try:
        registered = register_send(
            sends,
            biz_id=result.biz_id,
            phone_numbers=result.phone_numbers,
            sent_at=result.sent_at,
            out_id=out_id,
            template_code=template_code,
            sign_name=sign_name,
            account=account,
            now=clock(),
        )
    except ports.StoreError as exc:
        raise RegistrationFailed(result, exc) from exc
    return SendResult(receipt.biz_id, receipt.request_id, numbers, sent_at, registered)


def register_send(
    store: ports.SendStore,
    *,
    biz_id: str,
    phone_numbers: str | Sequence[str],
    sent_at: datetime,
    provider: domain.Provider = domain.Provider.ALIYUN,
    out_id: str | None = None,
    template_code: str | None = None,
    sign_name: str | None = None,
    account: str = domain.DEFAULT_ACCOUNT,
    now: datetime | None = None,
) -> int:
    """Register a send made elsewhere by ``account`` (idempotent); returns rows inserted.

    The account is the one whose keys made the send: only it can be asked about it. Its id is
    checked for form (``[a-z0-9_]{1,32}``), not against the settings, which ``store`` lacks.
    """
    if sent_at.tzinfo is None:
        raise ValueError("sent_at must be timezone-aware")
    config.check_account_id(account)
    sends = [
        ports.NewSend(provider, biz_id, number, sent_at, out_id, template_code, sign_name, account)
        for number in split_numbers(phone_numbers)
    ]
    return store.register(sends, now or utc_now())
