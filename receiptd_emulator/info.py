"""`EmulatorInfo`, what a client needs to talk to a running emulator, and the default
account's fixed fake keys."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from receiptd_emulator.accounts import AccountInfo, derive_info
from receiptd_emulator.profiles import DEFAULT_ACCOUNT, Profile
from receiptd_emulator.sites import INTL_MNS_OWNER_UID

#: Fixed fake keys, so a long-running emulator can be configured once. Never real secrets.
ACCESS_KEY_ID = "LTAI5tReceiptdEmulator01"
ACCESS_KEY_SECRET = "EmulatorSecretForReceiptd00001"  # noqa: S105 - fake, emulator-only
MNS_OWNER_KEY_ID = "LTAI5tAlicomMnsOwner0001"
MNS_OWNER_KEY_SECRET = "AlicomMnsOwnerSecretEmulator01"  # noqa: S105 - fake, emulator-only
HUAWEI_ACCESS_KEY_ID = "HuaweiReceiptdEmulatorAK01"
HUAWEI_SECRET_ACCESS_KEY = "HuaweiEmulatorSecretForReceiptd01"  # noqa: S105 - fake, emulator-only
HUAWEI_AUTH_TOKEN = "MIIReceiptdEmulatorIamToken01"  # noqa: S105 - fake, emulator-only
#: The default account's direct MNS key (its own queues only; see `AccountInfo`).
MNS_ACCESS_KEY_ID = "LTAI5tReceiptdMnsDirect1"
MNS_ACCESS_KEY_SECRET = "ReceiptdMnsDirectSecretEmu001"  # noqa: S105 - fake, emulator-only


@dataclass(frozen=True, slots=True)
class EmulatorInfo:
    """Everything a client needs to talk to a running emulator (the CLI's JSON line)."""

    mns_endpoint: str
    dysms_endpoint: str
    dybase_endpoint: str
    koomessage_endpoint: str
    control_endpoint: str
    access_key_id: str
    access_key_secret: str
    account_uid: str
    queue_prefix: str
    report_queue: str
    up_queue: str
    sign_name: str
    template_code: str
    mns_owner_access_key_id: str
    mns_owner_access_key_secret: str
    host: str
    port: int
    profile: str
    token_lifetime: float
    huawei_access_key_id: str = HUAWEI_ACCESS_KEY_ID
    huawei_secret_access_key: str = HUAWEI_SECRET_ACCESS_KEY
    huawei_auth_token: str = HUAWEI_AUTH_TOKEN
    #: Every account, the default one (the fields above) first.
    accounts: tuple[AccountInfo, ...] = field(default=())
    #: The international site's port (Dysmsapi 2018-05-01, its Dybaseapi and its MNS):
    #: "http://HOST:PORT2"; the owner uid of its MNS (the real host's first label).
    intl_endpoint: str = ""
    intl_mns_owner_uid: str = INTL_MNS_OWNER_UID

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["accounts"] = [a.as_dict() for a in self.accounts]
        return values

    @property
    def pop_endpoint(self) -> str:
        """`host:port`, the form `alibabacloud_tea_openapi` Config(endpoint=...) expects."""
        return f"{self.host}:{self.port}"

    @property
    def intl_pop_endpoint(self) -> str:
        """The international site's `host:port` for Config(endpoint=...)."""
        return self.intl_endpoint.removeprefix("http://")


def emulator_info(
    host: str,
    port: int,
    intl_port: int,
    accounts: tuple[AccountInfo, ...],
    profile: str,
    token_lifetime: float,
) -> EmulatorInfo:
    """The info of a running emulator; the top-level account fields are the default's."""
    base = f"http://{host}:{port}"
    default = accounts[0]
    return EmulatorInfo(
        mns_endpoint=base,
        dysms_endpoint=base,
        dybase_endpoint=base,
        koomessage_endpoint=base,
        control_endpoint=f"{base}/_emulator",
        access_key_id=default.access_key_id,
        access_key_secret=default.access_key_secret,
        account_uid=default.uid,
        queue_prefix=default.queue_prefix,
        report_queue=default.report_queue,
        up_queue=default.up_queue,
        sign_name=default.sign_name,
        template_code=default.template_code,
        mns_owner_access_key_id=MNS_OWNER_KEY_ID,
        mns_owner_access_key_secret=MNS_OWNER_KEY_SECRET,
        host=host,
        port=port,
        profile=profile,
        token_lifetime=token_lifetime,
        accounts=accounts,
        intl_endpoint=f"http://{host}:{intl_port}",
    )


def default_account(profile: Profile) -> AccountInfo:
    """The `default` account: the profile's uid and the fixed keys above."""
    keys = {
        "access_key_id": ACCESS_KEY_ID,
        "access_key_secret": ACCESS_KEY_SECRET,
        "mns_access_key_id": MNS_ACCESS_KEY_ID,
        "mns_access_key_secret": MNS_ACCESS_KEY_SECRET,
        "huawei_access_key_id": HUAWEI_ACCESS_KEY_ID,
        "huawei_secret_access_key": HUAWEI_SECRET_ACCESS_KEY,
        "huawei_auth_token": HUAWEI_AUTH_TOKEN,
    }
    return derive_info(DEFAULT_ACCOUNT, profile.account_uid, profile, keys)
