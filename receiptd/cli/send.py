"""`receiptd send` (SendSms + register) and `receiptd sends import FILE` (register sends made
elsewhere, from CSV with a header or JSON lines)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from receiptd import api, domain, ports
from receiptd.cli import common
from receiptd.providers.aliyun import dysms

COLUMNS = ("provider", "biz_id", "phone_number", "sent_at", "out_id", "template_code", "sign_name")
REQUIRED = ("biz_id", "phone_number", "sent_at")


def _param(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--param") from None
    if not isinstance(value, dict):
        raise click.BadParameter(
            'must be a JSON object, e.g. \'{"code":"1234"}\'', param_hint="--param"
        )
    return value


@click.command("send")
@click.option("--phone", required=True, help="Recipient(s), comma-separated (at most 1,000).")
@click.option("--sign", "sign_name", required=True, help="Approved SMS signature.")
@click.option("--template", "template_code", required=True, help="Template code, e.g. SMS_1.")
@click.option("--param", default=None, help="Template variables as a JSON object.")
@click.option("--out-id", default=None, help="Your own reference, echoed in receipts.")
@click.pass_context
def send(
    ctx: click.Context,
    phone: str,
    sign_name: str,
    template_code: str,
    param: str | None,
    out_id: str | None,
) -> None:
    """Send an SMS through Dysmsapi SendSms and register it for settlement."""
    variables = _param(param)
    settings = common.settings(ctx)
    if not settings.aliyun_configured:
        common.fail("aliyun_access_key_id is not set", common.EXIT_CONFIG)
    try:
        result = api.send_sms(settings, phone, sign_name, template_code, variables, out_id)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--phone") from None
    except dysms.DysmsError as exc:
        common.fail(f"provider refused the send: {exc.code}: {exc.message}", common.EXIT_PROVIDER)
    except api.RegistrationFailed as exc:
        common.fail(str(exc), common.EXIT_DATABASE)
    click.echo(
        f"sent BizId {result.biz_id} to {len(result.phone_numbers)} recipient(s); "
        f"registered {result.registered}"
    )


@click.group("sends")
def sends_group() -> None:
    """The send registry."""


@sends_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def import_sends(ctx: click.Context, file: Path) -> None:
    """Register sends made elsewhere (CSV with a header, or JSON lines). Idempotent; a bad line
    aborts the import with nothing written."""
    try:
        text = file.read_text(encoding="utf-8-sig")
        sends = parse_sends(text)
    except (OSError, UnicodeDecodeError) as exc:
        common.fail(f"{file}: {exc}", common.EXIT_FAILURE)
    except ImportLineError as exc:
        common.fail(f"{file}:{exc}", common.EXIT_FAILURE)
    _, store = common.stores(common.settings(ctx))
    try:
        inserted = store.register(sends, datetime.now(UTC))
    except (ports.StoreUnavailable, ports.StoreWriteError) as exc:
        common.fail(f"database error: {exc}", common.EXIT_DATABASE)
    finally:
        store.store.engine.dispose()
    click.echo(f"imported {len(sends)} send(s): {inserted} new, {len(sends) - inserted} known")


class ImportLineError(ValueError):
    """A line of an import file is invalid; str() is ``<line>: <reason>``."""


def parse_sends(text: str) -> list[ports.NewSend]:
    """Every send of the file, or ImportLineError naming the first bad line."""
    records = _json_lines(text) if text.lstrip().startswith("{") else _csv_rows(text)
    out = []
    for line, record in records:
        try:
            out.append(_new_send(record))
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


def _new_send(record: dict[str, Any]) -> ports.NewSend:
    unknown = set(record) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    values = {k: (str(v).strip() if v is not None else "") for k, v in record.items()}
    for name in REQUIRED:
        if not values.get(name):
            raise ValueError(f"{name} is required")
    try:
        provider = domain.Provider(values.get("provider") or "aliyun")
    except ValueError:
        raise ValueError(f"unknown provider {values['provider']!r}") from None
    try:
        sent_at = datetime.fromisoformat(values["sent_at"])
    except ValueError:
        raise ValueError(f"sent_at {values['sent_at']!r} is not ISO 8601") from None
    if sent_at.tzinfo is None:
        raise ValueError("sent_at needs a zone, e.g. 2026-11-24T09:30:00+08:00")
    return ports.NewSend(
        provider=provider,
        biz_id=values["biz_id"],
        phone_number=values["phone_number"],
        sent_at=sent_at.astimezone(UTC),
        out_id=values.get("out_id") or None,
        template_code=values.get("template_code") or None,
        sign_name=values.get("sign_name") or None,
    )


commands = [send, sends_group]
