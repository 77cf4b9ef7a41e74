"""The Python API for applications: send an SMS and register it, or register a send made
elsewhere, so that receiptd settles it (receipt first, compensator otherwise).

    from receiptd import api
    result = api.send_sms(settings, ["13800000000"], "MySign", "SMS_1", {"code": "1234"})
    result.biz_id
    api.send_sms(settings, "13800000000", "BrandB", "SMS_2", account="brand_b")  # its keys
    api.send_globe(settings, "85212345678", "Your code is 1234", account="intl")  # MessageIds

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
from receiptd.compensation.ratelimit import TokenBucket
from receiptd.providers.aliyun import dysms, globe
from receiptd.providers.aliyun.globe import GlobeSend

if TYPE_CHECKING:
    from alibabacloud_dysmsapi20170525.client import Client as DysmsClient
    from alibabacloud_dysmsapi20180501.client import Client as GlobeClient


@dataclass(frozen=True, slots=True)
class SendResult:
    biz_id: str
    request_id: str | None
    phone_numbers: tuple[str, ...]
    sent_at: datetime
    registered: int  # rows inserted (0 when every recipient was already registered)


@dataclass(frozen=True, slots=True)
class GlobeResult:
    """What a 2018-05-01 send did: one MessageId per number the provider accepted, and the
    numbers it refused with the provider's code (nothing is registered for those)."""

    sends: tuple[GlobeSend, ...]
    refused: tuple[tuple[str, str], ...]  # (number, ResponseCode)
    sent_at: datetime
    registered: int

    @property
    def message_ids(self) -> tuple[str, ...]:
        return tuple(s.message_id for s in self.sends)


class RegistrationFailed(Exception):
    """The SMS was sent but not registered; ``result`` says what to register."""

    def __init__(self, result: SendResult | GlobeResult, cause: Exception) -> None:
        sent = (
            f"BizId {result.biz_id}"
            if isinstance(result, SendResult)
            else f"MessageId(s) {', '.join(result.message_ids)}"
        )
        super().__init__(f"sent as {sent} but not registered: {cause}")
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
    param = _param_text(template_param)
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


def send_globe(
    settings: config.Settings,
    phone_numbers: str | Sequence[str],
    message: str | None = None,
    *,
    sender: str | None = None,
    task_id: str | None = None,
    template_code: str | None = None,
    template_param: Mapping[str, Any] | str | None = None,
    account: str = domain.DEFAULT_ACCOUNT,
    batch: bool = False,
    clock: Clock = utc_now,
) -> GlobeResult:
    """A Dysmsapi 2018-05-01 send with the keys of the Aliyun ``account`` (either site), one
    MessageId per number, each registered under ``account`` to be matched by MessageId.

    ``message``: SendMessageToGlobe (numbers outside the mainland), one call per number at
    the account's ``send_rate_limit``, or with ``batch`` BatchSendMessageToGlobe (up to 1,000
    numbers a call, at most one call a second). ``template_code`` instead (international site
    only): SendMessageWithTemplate to mainland numbers, ``sender`` being the approved
    signature. A number the provider refuses is reported in ``refused``, the rest go on.
    """
    from receiptd import wiring

    chosen = aliyun_account(settings, account)
    if template_code is not None and chosen.site != "intl":
        raise ValueError("SendMessageWithTemplate is the international site's: use send_sms")
    client = wiring.globe_client(settings, chosen)
    limiter = wiring.rate_limiter(chosen.send_rate)
    store, sends = wiring.stores(settings)
    try:
        return globe_send_and_register(
            client,
            sends,
            phone_numbers,
            GlobeMessage(message, sender, task_id, template_code, _param_text(template_param)),
            limiter,
            account=account,
            batch=batch,
            clock=clock,
        )
    finally:
        store.engine.dispose()


@dataclass(frozen=True, slots=True)
class GlobeMessage:
    """What a 2018-05-01 send says: free text (``text``), or an approved template."""

    text: str | None
    sender: str | None = None  # From: a sender ID, or the template send's signature
    task_id: str | None = None
    template_code: str | None = None
    template_param: str | None = None

    def __post_init__(self) -> None:
        if (self.text is None) == (self.template_code is None):
            raise ValueError("give a message text or a template code, not both or neither")
        if self.template_code is not None and not self.sender:
            raise ValueError("a template send needs its approved signature (sender)")


def globe_send_and_register(
    client: GlobeClient,
    sends: ports.SendStore,
    phone_numbers: str | Sequence[str],
    message: GlobeMessage,
    limiter: ports.RateLimiter,
    *,
    account: str = domain.DEFAULT_ACCOUNT,
    batch: bool = False,
    clock: Clock = utc_now,
) -> GlobeResult:
    """Send ``message`` through ``client`` (2018-05-01, ``account``'s keys) and register
    each accepted number under its MessageId."""
    numbers = split_numbers(phone_numbers)
    sent_at = clock()
    accepted, refused = _globe_sends(client, numbers, message, limiter, batch)
    result = GlobeResult(tuple(accepted), tuple(refused), sent_at, 0)
    rows = [
        ports.NewSend(
            domain.Provider.ALIYUN,
            s.message_id,
            s.phone_number,
            sent_at,
            template_code=message.template_code,
            sign_name=message.sender if message.template_code else None,
            account=account,
            matched_by=domain.SendKey.MESSAGE_ID,
            task_id=message.task_id,
        )
        for s in accepted
    ]
    try:
        registered = sends.register(rows, clock()) if rows else 0
    except ports.StoreError as exc:
        raise RegistrationFailed(result, exc) from exc
    return GlobeResult(result.sends, result.refused, sent_at, registered)


def _globe_sends(
    client: GlobeClient,
    numbers: Sequence[str],
    message: GlobeMessage,
    limiter: ports.RateLimiter,
    batch: bool,
) -> tuple[list[GlobeSend], list[tuple[str, str]]]:
    if batch and _batchable(numbers, message):
        assert message.text is not None  # _batchable checks it
        paired: list[GlobeSend] = []
        batches = TokenBucket(globe.BATCH_RATE, 1)
        for start in range(0, len(numbers), globe.BATCH_LIMIT):
            chunk = numbers[start : start + globe.BATCH_LIMIT]
            batches.acquire()
            sent = globe.batch_send_to_globe(
                client, chunk, message.text, sender=message.sender, task_id=message.task_id
            )
            if sent is None:  # accepted, but which number has which id is unknown
                raise globe.UnpairedBatch(len(chunk))
            paired += sent
        return paired, []
    accepted: list[GlobeSend] = []
    refused: list[tuple[str, str]] = []
    for i, number in enumerate(numbers):
        limiter.acquire()
        try:
            accepted.append(_globe_send_one(client, number, message))
        except dysms.DysmsError as exc:
            if exc.kind == "error":  # the provider refused this number: the next may go
                refused.append((number, exc.code))
                continue
            # Throttled or unavailable past the retries: stop, and register what went out.
            # A transport failure leaves this number's fate unknown (it may have been sent
            # and charged): it is reported, never sent again.
            fate = "unknown" if exc.code == "Network" else "not sent"
            refused.append((number, f"{exc.code} ({fate})"))
            refused += [(rest, f"{exc.code} (not sent)") for rest in numbers[i + 1 :]]
            break
    return accepted, refused


def _batchable(numbers: Sequence[str], message: GlobeMessage) -> bool:
    """BatchSendMessageToGlobe only where its answer will pair every number with its
    MessageId: free text to several numbers none of which it could refuse as mainland (a
    FailedList makes the pairing unknowable). Otherwise the numbers go one by one."""
    if message.text is None or len(numbers) < 2:
        return False
    return not any(domain.may_be_mainland(n) for n in numbers)


def _globe_send_one(client: GlobeClient, number: str, message: GlobeMessage) -> GlobeSend:
    if message.template_code is not None:
        assert message.sender is not None  # GlobeMessage checks it
        return globe.send_with_template(
            client, number, message.sender, message.template_code, message.template_param
        )
    assert message.text is not None
    return globe.send_to_globe(
        client, number, message.text, sender=message.sender, task_id=message.task_id
    )


def _param_text(template_param: Mapping[str, Any] | str | None) -> str | None:
    if isinstance(template_param, Mapping):
        return json.dumps(template_param, ensure_ascii=False)
    return template_param


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
    matched_by: domain.SendKey = domain.SendKey.BIZ_ID,
    task_id: str | None = None,
) -> int:
    """Register a send made elsewhere by ``account`` (idempotent); returns rows inserted.

    The account is the one whose keys made the send: only it can be asked about it. Its id is
    checked for form (``[a-z0-9_]{1,32}``), not against the settings, which ``store`` lacks.
    ``matched_by=MESSAGE_ID``: ``biz_id`` is a 2018-05-01 MessageId (one number per id).
    """
    if sent_at.tzinfo is None:
        raise ValueError("sent_at must be timezone-aware")
    config.check_account_id(account)
    sends = [
        ports.NewSend(
            provider,
            biz_id,
            number,
            sent_at,
            out_id,
            template_code,
            sign_name,
            account,
            matched_by,
            task_id,
        )
        for number in split_numbers(phone_numbers)
    ]
    return store.register(sends, now or utc_now())
