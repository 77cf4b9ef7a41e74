"""Sends made by other systems: the record format shared by `receiptd sends import` and
`POST /v1/sends` (pure: parsing and validation only).

A record's ``account`` (default ``default``) is the provider account whose keys made the send;
``known`` (the (provider, account) pairs of the settings) refuses one that is not configured,
so a typo never registers sends that no account can ask about.

A record names its send by exactly one id: ``biz_id`` (SendSms), or ``message_id`` (an Alibaba
send of the 2018-05-01 API: SendMessageToGlobe and its siblings, one number per MessageId,
optionally with the ``task_id`` it was sent with; docs/international.md).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from receiptd import domain, ports
from receiptd.config.values import check_account_id

COLUMNS = (
    "provider",
    "biz_id",
    "phone_number",
    "sent_at",
    "out_id",
    "template_code",
    "sign_name",
    "account",
    "message_id",
    "task_id",
)
REQUIRED = ("phone_number", "sent_at")
MAX_TASK_ID = 255  # the provider's limit on TaskId
# The longest value of each field the sends table keeps (receiptd.db.models): a longer one
# would fail its INSERT (PostgreSQL, MariaDB) or be kept uncut (SQLite).
MAX_LENGTH = {
    "biz_id": 64,
    "message_id": 64,
    "phone_number": 32,
    "out_id": 128,
    "template_code": 64,
    "sign_name": 64,
    "task_id": MAX_TASK_ID,
}


class ImportLineError(ValueError):
    """A line of an import file is invalid; str() is ``<line>: <reason>``."""


Known = Collection[tuple[str, str]]  # (provider, account) pairs that may be named


class NamedAccount(Protocol):
    """What ``known`` reads of a settings account."""

    @property
    def provider(self) -> str: ...

    @property
    def name(self) -> str: ...


def known(accounts: Iterable[NamedAccount]) -> frozenset[tuple[str, str]]:
    """The (provider, account) pairs of ``accounts``: the settings' accounts are the two
    ``default`` ones (keys set or not, as before accounts existed) and the named ones."""
    return frozenset((a.provider, a.name) for a in accounts)


def parse_sends(text: str, known: Known | None = None) -> list[ports.NewSend]:
    """Every send of the file, or ImportLineError naming the first bad line (an account
    not in ``known`` too, when given)."""
    records = _json_lines(text) if text.lstrip().startswith("{") else _csv_rows(text)
    out = []
    for line, record in records:
        try:
            out.append(new_send(record, known))
        except ValueError as exc:
            raise ImportLineError(f"{line}: {exc}") from None
    return out


def _json_lines(text: str) -> list[tuple[int, dict[str, Any]]]:
    records = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ImportLineError(f"{number}: not valid JSON: {exc.msg}") from None
        if not isinstance(value, dict):
            raise ImportLineError(f"{number}: each line must be a JSON object")
        records.append((number, value))
    return records


def _csv_rows(text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    unknown = set(reader.fieldnames or ()) - set(COLUMNS)
    if unknown:
        raise ImportLineError(f"1: unknown column(s) {', '.join(sorted(unknown))}")
    rows = []
    for row in reader:
        if None in row:
            raise ImportLineError(f"{reader.line_num}: more fields than the header has")
        rows.append((reader.line_num, row))
    return rows


def new_send(record: dict[str, Any], known: Known | None = None) -> ports.NewSend:
    """One send from a record of the import/registration format, or ValueError (also for an
    account not in ``known``, when given)."""
    unknown = set(record) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    values = {k: (str(v).strip() if v is not None else "") for k, v in record.items()}
    for name, limit in MAX_LENGTH.items():
        if len(values.get(name, "")) > limit:
            raise ValueError(f"{name} is longer than {limit} characters")
    key, send_id = _send_id(values)
    for name in REQUIRED:
        if not values.get(name):
            raise ValueError(f"{name} is required")
    try:
        provider = domain.Provider(values.get("provider") or "aliyun")
    except ValueError:
        raise ValueError(f"unknown provider {values['provider']!r}") from None
    sent_at = _sent_at(values["sent_at"])
    account = _account(values.get("account") or domain.DEFAULT_ACCOUNT, provider, known)
    if key is domain.SendKey.MESSAGE_ID and provider is not domain.Provider.ALIYUN:
        raise ValueError("message_id names an Alibaba send (Dysmsapi 2018-05-01)")
    task_id = values.get("task_id") or None
    return ports.NewSend(
        provider=provider,
        biz_id=send_id,
        phone_number=values["phone_number"],
        sent_at=sent_at,
        out_id=values.get("out_id") or None,
        template_code=values.get("template_code") or None,
        sign_name=values.get("sign_name") or None,
        account=account,
        matched_by=key,
        task_id=task_id,
    )


def _sent_at(text: str) -> datetime:
    """An ISO 8601 time with a zone, in UTC, or ValueError."""
    try:
        sent_at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"sent_at {text!r} is not ISO 8601") from None
    if sent_at.tzinfo is None:
        raise ValueError("sent_at needs a zone, e.g. 2026-11-24T09:30:00+08:00")
    try:
        return sent_at.astimezone(UTC)
    except OverflowError:  # year 1 east of Greenwich, 9999 west of it
        raise ValueError(f"sent_at {text!r} is out of range in UTC") from None


def _send_id(values: dict[str, str]) -> tuple[domain.SendKey, str]:
    """Which id the record names its send by, and the id: one of biz_id and message_id."""
    biz_id, message_id = values.get("biz_id"), values.get("message_id")
    if biz_id and message_id:
        raise ValueError("give biz_id or message_id, not both")
    if message_id:
        return domain.SendKey.MESSAGE_ID, message_id
    if biz_id:
        return domain.SendKey.BIZ_ID, biz_id
    raise ValueError("biz_id is required (or message_id, for a Dysmsapi 2018-05-01 send)")


def _account(name: str, provider: domain.Provider, known: Known | None) -> str:
    try:
        check_account_id(name)
    except ValueError as exc:
        raise ValueError(f"account {exc}") from None
    if known is not None and (provider.value, name) not in known:
        raise ValueError(f"unknown {provider.value} account {name!r}")
    return name
