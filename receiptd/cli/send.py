"""`receiptd send [--account ID]` (SendSms with that account's keys + register under it) and
`receiptd sends import FILE` (register sends made elsewhere, from CSV with a header or JSON
lines; each record names its account, ``default`` when it does not)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from receiptd import api, config, ports
from receiptd.cli import common
from receiptd.clock import utc_now
from receiptd.ingest import registration
from receiptd.providers.aliyun import dysms


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
@common.account_option(
    "The Aliyun account whose keys send it, and under which it is registered "
    "(default: `default`, the aliyun_* settings)."
)
@click.pass_context
def send(
    ctx: click.Context,
    phone: str,
    sign_name: str,
    template_code: str,
    param: str | None,
    out_id: str | None,
    account: str | None,
) -> None:
    """Send an SMS through Dysmsapi SendSms and register it for settlement."""
    variables = _param(param)
    settings = common.settings(ctx)
    name = account or config.DEFAULT_ACCOUNT
    _check_sender(settings, name)
    try:
        result = api.send_sms(
            settings, phone, sign_name, template_code, variables, out_id, account=name
        )
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


def _check_sender(settings: config.Settings, name: str) -> None:
    """Exit 2 unless ``name`` is a configured Aliyun account (SendSms is Aliyun's)."""
    if name == config.DEFAULT_ACCOUNT and not settings.parts.aliyun.configured:
        common.fail("aliyun_access_key_id is not set", common.EXIT_CONFIG)
    accounts = [a for a in settings.parts.configured_accounts if a.name == name]
    if accounts and all(a.provider == "huawei" for a in accounts):
        common.fail(
            f"account {name!r} is a Huawei account: receiptd send sends through Aliyun only",
            common.EXIT_CONFIG,
        )
    common.configured_accounts(settings, name, "aliyun")


@click.group("sends")
def sends_group() -> None:
    """The send registry."""


@sends_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def import_sends(ctx: click.Context, file: Path) -> None:
    """Register sends made elsewhere (CSV with a header, or JSON lines). Idempotent; a bad line
    (an account that is not configured too) aborts the import with nothing written."""
    settings = common.settings(ctx)
    try:
        text = file.read_text(encoding="utf-8-sig")
        sends = registration.parse_sends(text, registration.known(settings.parts.accounts))
    except (OSError, UnicodeDecodeError) as exc:
        common.fail(f"{file}: {exc}", common.EXIT_FAILURE)
    except registration.ImportLineError as exc:
        common.fail(f"{file}:{exc}", common.EXIT_FAILURE)
    _, store = common.stores(settings)
    try:
        inserted = store.register(sends, utc_now())
    except ports.StoreError as exc:
        common.fail(f"database error: {exc}", common.EXIT_DATABASE)
    finally:
        store.store.engine.dispose()
    click.echo(f"imported {len(sends)} send(s): {inserted} new, {len(sends) - inserted} known")
