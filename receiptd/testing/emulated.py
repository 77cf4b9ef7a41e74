"""receiptd pointed at a running provider emulator: the settings the demo, the tests and the
benchmarks share (``info`` is ``receiptd_emulator.EmulatorInfo``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from receiptd.config import ENV_PREFIX, Settings


def values(info: Any, database_url: str, *, token_mode: bool = True) -> dict[str, Any]:
    """Setting values (by name) for the emulator's endpoints and keys.

    Token mode uses the customer's key and Dybaseapi tokens, as in production; direct mode
    reads the queues with the Alicom MNS owner key, as an operator tool would.
    """
    out: dict[str, Any] = {
        "database_url": database_url,
        "aliyun_queue_prefix": info.queue_prefix,
        "aliyun_dybase_endpoint": info.dybase_endpoint,
        "aliyun_dysms_endpoint": info.dysms_endpoint,
    }
    if token_mode:
        out.update(
            aliyun_access_key_id=info.access_key_id,
            aliyun_access_key_secret=info.access_key_secret,
            aliyun_alicom_mns_endpoint=info.mns_endpoint,
        )
    else:
        out.update(
            aliyun_access_key_id=info.mns_owner_access_key_id,
            aliyun_access_key_secret=info.mns_owner_access_key_secret,
            aliyun_mns_endpoint=info.mns_endpoint,
        )
    return out


def settings(
    info: Any, database_url: str = "sqlite://", *, token_mode: bool = True, **overrides: Any
) -> Settings:
    """Settings for an in-process receiptd (other settings keep their defaults)."""
    return Settings(**{**values(info, database_url, token_mode=token_mode), **overrides})


def environ(
    info: Any,
    database_url: str,
    extra: Mapping[str, str] | None = None,
    *,
    token_mode: bool = True,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a receiptd subprocess: ``base`` (default: this process's) without
    any RECEIPTD_* variable, plus the emulator's settings and ``extra``."""
    env = {k: v for k, v in (os.environ if base is None else base).items()}
    env = {k: v for k, v in env.items() if not k.startswith(ENV_PREFIX)}
    for name, value in values(info, database_url, token_mode=token_mode).items():
        env[ENV_PREFIX + name.upper()] = str(value)
    env.update(extra or {})
    return env


def emulator_settings(
    info: Any, database_url: str = "sqlite://", *, token_mode: bool = True, **overrides: Any
) -> Settings:
    """Test settings for a running emulator: short long polls and socket timeouts."""
    return settings(
        info,
        database_url,
        token_mode=token_mode,
        **{"consumer_wait_seconds": 1, "consumer_socket_timeout": 10.0, **overrides},
    )


def account_keys(info: Any, account: Any) -> dict[str, Any]:
    """The ``[accounts.<id>]`` keys of one emulated Alibaba account (``account`` is the
    emulator's ``AccountInfo``) in token mode, at its site's endpoints: the international
    site is the emulator's second port. A China-site account consumes its GlobeSmsReport
    queue too."""
    intl = account.site == "intl"
    endpoint = info.intl_endpoint if intl else info.mns_endpoint
    keys: dict[str, Any] = {
        "provider": "aliyun",
        "site": account.site,
        "access_key_id": account.access_key_id,
        "access_key_secret": account.access_key_secret,
        "queue_prefix": account.queue_prefix,
        "alicom_mns_endpoint": endpoint,
        "dybase_endpoint": info.intl_endpoint if intl else info.dybase_endpoint,
        "dysms_endpoint": info.intl_endpoint if intl else info.dysms_endpoint,
    }
    if not intl and account.globe_queue:
        keys["globe_queue"] = account.globe_queue
    return keys
