"""The named accounts' keys from every layer: TOML < credential < ``_FILE`` < environment.

``[accounts.<id>]`` in TOML; ``RECEIPTD_ACCOUNT_<ID>_<KEY>`` in the environment;
``RECEIPTD_ACCOUNT_<ID>_<KEY>_FILE`` names a file holding the value; a systemd credential
``account_<id>_<key>`` in ``$CREDENTIALS_DIRECTORY``. Ids and keys both contain underscores,
so a name is read against the declared accounts: an account is declared by its TOML table or
by a ``…_PROVIDER`` name in any layer, and every other name must be a declared id followed by
a known key. A name that reads no way, or two ways (ids ``a`` and ``a_alicom`` both read
``A_ALICOM_MNS_ENDPOINT``), stops start-up naming it: a value is never guessed into an account.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from receiptd.config.account_keys import KNOWN_KEYS
from receiptd.config.sources import ENV_PREFIX
from receiptd.config.values import ConfigError

ENV_ACCOUNT_PREFIX = f"{ENV_PREFIX}ACCOUNT_"
CREDENTIAL_PREFIX = "account_"
_PROVIDER = "_provider"


def read_accounts(toml: object, environ: Mapping[str, str]) -> dict[str, Any]:
    """Every named account's keys (``id -> {key: value}``), the higher layers' winning."""
    if toml is not None and not isinstance(toml, Mapping):
        raise ConfigError(
            "invalid setting accounts: expected one table per account, [accounts.<id>]"
        )
    tables: Mapping[str, Any] = toml or {}
    env, files = _environment(environ)
    creds = _credentials(environ.get("CREDENTIALS_DIRECTORY"))
    declared = set(tables) | {
        name.removesuffix(_PROVIDER)
        for layer in (env, files, creds)
        for name in layer
        if name.endswith(_PROVIDER)
    }
    merged: dict[str, Any] = {
        key: dict(value) if isinstance(value, Mapping) else value for key, value in tables.items()
    }
    # Lowest first: each layer overwrites the keys of the one below.
    for layer, read in ((creds, _read_file), (files, _read_file), (env, _as_is)):
        for name, (origin, raw) in sorted(layer.items()):
            account, key = split_name(name, declared, origin)
            table = merged.setdefault(account, {})
            if isinstance(table, dict):
                table[key] = read(raw, origin, f"accounts.{account}.{key}")
    return merged


def split_name(name: str, declared: Iterable[str], origin: str) -> tuple[str, str]:
    """``a_b_region`` to ``("a_b", "region")`` given the declared ids, or ConfigError."""
    if name.endswith(_PROVIDER):
        return name.removesuffix(_PROVIDER), "provider"
    readings = [
        (account, name[len(account) + 1 :])
        for account in declared
        if name.startswith(f"{account}_") and name[len(account) + 1 :] in KNOWN_KEYS
    ]
    if len(readings) == 1:
        return readings[0]
    if readings:
        ways = " or ".join(f"accounts.{a}.{k}" for a, k in sorted(readings))
        raise ConfigError(f"invalid setting {origin}: ambiguous, it reads {ways}; use TOML")
    raise ConfigError(
        f"invalid setting {origin}: names no declared account and known key (declare an "
        f"account with [accounts.<id>] or {ENV_ACCOUNT_PREFIX}<ID>_PROVIDER; "
        f"declared: {sorted(declared)})"
    )


def _environment(
    environ: Mapping[str, str],
) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """``RECEIPTD_ACCOUNT_*`` names (lower case, prefix off): values, and ``_FILE`` paths."""
    env: dict[str, tuple[str, str]] = {}
    files: dict[str, tuple[str, str]] = {}
    for var, value in environ.items():
        if not var.upper().startswith(ENV_ACCOUNT_PREFIX):
            continue
        name = var[len(ENV_ACCOUNT_PREFIX) :].lower()
        if name.endswith("_file"):
            files[name.removesuffix("_file")] = (var, value)
        else:
            env[name] = (var, value)
    return env, files


def _credentials(directory: str | None) -> dict[str, tuple[str, str]]:
    """``account_*`` files of the systemd credentials directory (names without the prefix)."""
    if not directory or not Path(directory).is_dir():
        return {}
    return {
        path.name.removeprefix(CREDENTIAL_PREFIX): (f"credential {path.name}", str(path))
        for path in Path(directory).iterdir()
        if path.name.startswith(CREDENTIAL_PREFIX) and path.is_file()
    }


def _read_file(path: str, origin: str, key: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"invalid setting {key}: {origin}={path}: {exc.strerror}") from None


def _as_is(value: str, origin: str, key: str) -> str:
    return value
