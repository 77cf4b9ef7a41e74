"""`receiptd send [--account ID]` (SendSms with that account's keys + register under it) and
`receiptd sends import FILE` (register sends made elsewhere, from CSV with a header or JSON
lines; each record names its account, ``default`` when it does not)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
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
@click.option("--sign", "sign_name", default=None, help="Approved SMS signature (templates).")
@click.option("--template", "template_code", default=None, help="Template code, e.g. SMS_1.")
@click.option("--param", default=None, help="Template variables as a JSON object.")
@click.option("--out-id", default=None, help="Your own reference, echoed in receipts (SendSms).")
@click.option(
    "--message", default=None, help="Free text: SendMessageToGlobe (numbers outside the mainland)."
)
@click.option("--from", "sender", default=None, help="Sender ID of a --message send.")
@click.option("--task-id", default=None, help="Your task id, echoed in international receipts.")
@click.option(
    "--globe", is_flag=True, help="On a China-site account: send --message with SendMessageToGlobe."
)
@click.option(
    "--batch", is_flag=True, help="BatchSendMessageToGlobe (notifications; at most 1 call/s)."
)
@common.account_option(
    "The Aliyun account whose keys send it, and under which it is registered "
    "(default: `default`, the aliyun_* settings)."
)
@click.pass_context
def send(
    ctx: click.Context,
    phone: str,
    sign_name: str | None,
    template_code: str | None,
    param: str | None,
    out_id: str | None,
    message: str | None,
    sender: str | None,
    task_id: str | None,
    globe: bool,
    batch: bool,
    account: str | None,
) -> None:
    """Send an SMS and register it for settlement: SendSms with a template on a China-site
    account; SendMessageToGlobe with --message on an international-site account (or with
    --globe on a China-site one); SendMessageWithTemplate with --template on an
    international-site account (mainland numbers, 86 and 11 digits)."""
    variables = _param(param)
    settings = common.settings(ctx)
    name = account or config.DEFAULT_ACCOUNT
    _check_sender(settings, name)
    site = api.aliyun_account(settings, name).site
    if message is None and site == "cn":
        _send_sms(settings, name, phone, sign_name, template_code, variables, out_id)
        return
    _check_globe_options(site, message, globe or batch, template_code, sign_name, out_id)
    if batch and site == "cn":
        raise click.UsageError("--batch: BatchSendMessageToGlobe is the international site's")
    with _provider_errors():
        result = api.send_globe(
            settings,
            phone,
            message,
            sender=sign_name if message is None else sender,
            task_id=task_id,
            template_code=template_code if message is None else None,
            template_param=variables,
            account=name,
            batch=batch,
        )
    for send_ in result.sends:
        click.echo(f"sent MessageId {send_.message_id} to {send_.phone_number}")
    for number, code in result.refused:
        click.echo(f"refused {number}: {code}", err=True)
    click.echo(
        f"{len(result.sends)} sent, {len(result.refused)} refused; registered {result.registered}"
    )
    if result.refused:
        ctx.exit(common.EXIT_PROVIDER)


def _send_sms(
    settings: config.Settings,
    name: str,
    phone: str,
    sign_name: str | None,
    template_code: str | None,
    variables: dict[str, Any] | None,
    out_id: str | None,
) -> None:
    if sign_name is None or template_code is None:
        raise click.UsageError("SendSms needs --sign and --template (or --globe --message)")
    with _provider_errors():
        result = api.send_sms(
            settings, phone, sign_name, template_code, variables, out_id, account=name
        )
    click.echo(
        f"sent BizId {result.biz_id} to {len(result.phone_numbers)} recipient(s); "
        f"registered {result.registered}"
    )


def _check_globe_options(
    site: str,
    message: str | None,
    globe: bool,
    template_code: str | None,
    sign_name: str | None,
    out_id: str | None,
) -> None:
    """Usage errors for a 2018-05-01 send's options (the site's send APIs decide them)."""
    if message is not None and site == "cn" and not globe:
        raise click.UsageError("--message on a China-site account needs --globe")
    if message is not None and (template_code or sign_name or out_id):
        raise click.UsageError("--message sends free text: no --template, --sign or --out-id")
    if message is None and (template_code is None or sign_name is None):
        raise click.UsageError(
            "an international-site send needs --message, or --template and --sign"
        )


@contextlib.contextmanager
def _provider_errors() -> Iterator[None]:
    """A send's failures as the CLI's exit codes: bad input 2, the provider 3, the database."""
    try:
        yield
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--phone") from None
    except dysms.DysmsError as exc:
        common.fail(f"provider refused the send: {exc.code}: {exc.message}", common.EXIT_PROVIDER)
    except api.RegistrationFailed as exc:
        common.fail(str(exc), common.EXIT_DATABASE)


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
    _, store = common.ready_stores(settings)
    try:
        inserted = store.register(sends, utc_now())
    except ports.StoreError as exc:
        common.fail(f"database error: {exc}", common.EXIT_DATABASE)
    finally:
        store.store.engine.dispose()
    click.echo(f"imported {len(sends)} send(s): {inserted} new, {len(sends) - inserted} known")
