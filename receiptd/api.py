"""The Python API for applications: send an SMS and register it, or register a send made
elsewhere, so that receiptd settles it (receipt first, compensator otherwise).

    from receiptd import api
    result = api.send_sms(settings, ["13800000000"], "MySign", "SMS_1", {"code": "1234"})
    result.biz_id

Errors: ``dysms.DysmsError`` when the provider refuses the send (``.code``, ``.message``);
:class:`RegistrationFailed` when the SMS went out but its row could not be written (it carries
the result, so the caller can retry ``register_send``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from receiptd import config, domain, ports
from receiptd.db.engine import create_db_engine
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.providers.aliyun import dysms


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


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
    settings_or_client: config.Settings | Any,
    phone_numbers: str | Sequence[str],
    sign_name: str,
    template_code: str,
    template_param: Mapping[str, Any] | str | None = None,
    out_id: str | None = None,
    store: SendStore | None = None,
    *,
    clock: Callable[[], datetime] = _utcnow,
) -> SendResult:
    """SendSms, then register one pending ``sms_send`` row per recipient.

    ``settings_or_client``: Settings (a client and, without ``store``, a database connection
    are made from it) or a Dysmsapi client (then ``store`` is required).
    """
    numbers = split_numbers(phone_numbers)
    param: str | None
    if isinstance(template_param, Mapping):
        param = json.dumps(template_param, ensure_ascii=False)
    else:
        param = template_param
    if isinstance(settings_or_client, config.Settings):
        client = dysms.make_client(settings_or_client)
    elif store is None:
        raise ValueError("store is required when a client is passed instead of Settings")
    else:
        client = settings_or_client
    sent_at = clock()  # before the call: the provider's own send time is at most later
    receipt = dysms.send_sms(client, numbers, sign_name, template_code, param, out_id)
    result = SendResult(receipt.biz_id, receipt.request_id, numbers, sent_at, 0)
    try:
        registered = _register(settings_or_client, store, result, out_id, template_code, sign_name)
    except (ports.StoreUnavailable, ports.StoreWriteError) as exc:
        raise RegistrationFailed(result, exc) from exc
    return SendResult(receipt.biz_id, receipt.request_id, numbers, sent_at, registered)


def _register(
    settings: config.Settings | Any,
    store: SendStore | None,
    result: SendResult,
    out_id: str | None,
    template_code: str,
    sign_name: str,
) -> int:
    def register(target: SendStore) -> int:
        return register_send(
            target,
            biz_id=result.biz_id,
            phone_numbers=result.phone_numbers,
            sent_at=result.sent_at,
            out_id=out_id,
            template_code=template_code,
            sign_name=sign_name,
        )

    if store is not None:
        return register(store)
    engine = create_db_engine(settings.database_url)
    try:
        from receiptd import wiring  # events of sends settled from stored receipts

        events = wiring.event_outbox(settings) if isinstance(settings, config.Settings) else None
        return register(SendStore(SqlStore(engine, events), settings.timezone))
    finally:
        engine.dispose()


def register_send(
    store: SendStore,
    *,
    biz_id: str,
    phone_numbers: str | Sequence[str],
    sent_at: datetime,
    provider: domain.Provider = domain.Provider.ALIYUN,
    out_id: str | None = None,
    template_code: str | None = None,
    sign_name: str | None = None,
    now: datetime | None = None,
) -> int:
    """Register a send made elsewhere (idempotent); returns rows inserted."""
    if sent_at.tzinfo is None:
        raise ValueError("sent_at must be timezone-aware")
    sends = [
        ports.NewSend(provider, biz_id, number, sent_at, out_id, template_code, sign_name)
        for number in split_numbers(phone_numbers)
    ]
    return store.register(sends, now or _utcnow())
