"""Settings: one immutable object, read once at start-up.

Layers, lowest precedence first: defaults < TOML file (``--config`` / ``RECEIPTD_CONFIG``) <
systemd credentials (``$CREDENTIALS_DIRECTORY/<setting>``) < ``RECEIPTD_<SETTING>_FILE`` <
``RECEIPTD_<SETTING>`` environment variables. No other module reads a ``RECEIPTD_*`` variable
(``receiptd.daemon.sd_notify`` reads systemd's own ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC``).

- :mod:`~receiptd.config.settings`: :class:`Settings`, the flat fields (the public names).
- :mod:`~receiptd.config.parts`: ``settings.parts``, one frozen part per flow.
- :mod:`~receiptd.config.accounts`: the provider accounts (``settings.parts.accounts``).
- :mod:`~receiptd.config.account_keys`: the keys of a named account (``[accounts.<id>]``).
- :mod:`~receiptd.config.account_sources`: those keys from the environment, files and
  credentials (``RECEIPTD_ACCOUNT_<ID>_<KEY>``).
- :mod:`~receiptd.config.sources`, :mod:`~receiptd.config.loading`: the layers, stacked.
- :mod:`~receiptd.config.values`: the value types and parsers they share.

Why the flat fields stay and the parts are built from them (rather than nested models):
the flat fields are what keeps every environment name, TOML key and error message as it
was; the parts sit under one ``parts`` property rather than beside the fields because two
of their natural names (``webhooks``, ``timezone``) are public properties of ``Settings``
already, with another meaning.
"""

from __future__ import annotations

from receiptd.config.account_keys import AliyunKeys, HuaweiKeys
from receiptd.config.accounts import Account, AliyunAccount, HuaweiAccount
from receiptd.config.accounts import describe as describe_account
from receiptd.config.loading import CONFIG_ENV, describe_validation_error, load_settings
from receiptd.config.parts import (
    CompensatorPart,
    ConsumerPart,
    DaemonPart,
    DatabasePart,
    LoggingPart,
    Parts,
    PushPart,
    RetentionPart,
    WebhooksPart,
)
from receiptd.config.settings import SUPPORTED_DATABASES, Settings
from receiptd.config.sources import ENV_PREFIX
from receiptd.config.values import (
    ACCOUNT_ID,
    DEFAULT_ACCOUNT,
    PUSH_TOKEN_CHARS,
    RESERVED_ACCOUNT_IDS,
    WEBHOOK_EVENT_TYPES,
    ConfigError,
    IPNetwork,
    LogFormat,
    LogLevel,
    WebhookEndpoint,
    check_account_id,
    check_webhook_secret,
    check_webhook_url,
    in_networks,
    parse_networks,
    split_host_port,
)

__all__ = [
    "ACCOUNT_ID",
    "CONFIG_ENV",
    "DEFAULT_ACCOUNT",
    "ENV_PREFIX",
    "PUSH_TOKEN_CHARS",
    "RESERVED_ACCOUNT_IDS",
    "SUPPORTED_DATABASES",
    "WEBHOOK_EVENT_TYPES",
    "Account",
    "AliyunAccount",
    "AliyunKeys",
    "CompensatorPart",
    "ConfigError",
    "ConsumerPart",
    "DaemonPart",
    "DatabasePart",
    "HuaweiAccount",
    "HuaweiKeys",
    "IPNetwork",
    "LogFormat",
    "LogLevel",
    "LoggingPart",
    "Parts",
    "PushPart",
    "RetentionPart",
    "Settings",
    "WebhookEndpoint",
    "WebhooksPart",
    "check_account_id",
    "check_webhook_secret",
    "check_webhook_url",
    "describe_account",
    "describe_validation_error",
    "in_networks",
    "load_settings",
    "parse_networks",
    "split_host_port",
]
