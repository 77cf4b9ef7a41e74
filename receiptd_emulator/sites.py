"""Alibaba's two sites, each on its own port of the emulator.

- **cn**, the China site (dysmsapi/dybaseapi.aliyuncs.com, Alicom's MNS in cn-hangzhou): the
  first port. Dysmsapi 2017-05-25 (SendSms, QuerySendDetails), 2018-05-01 SendMessageToGlobe
  and QueryMessage; tokens for SmsReport, SmsUp and GlobeSmsReport queues.
- **intl**, the international site (dysmsapi/dybaseapi.ap-southeast-1.aliyuncs.com, MNS at
  1493622401794734.mns.ap-southeast-1.aliyuncs.com): the second port. Dysmsapi 2018-05-01
  only; tokens for the SmsReport queue; its own MNS with its own queues.

Each site has its own keys (`CredentialStore`): an account's AccessKey, tokens and direct MNS
key exist on its own site only, so on the other port they are unknown keys, refused as such.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from receiptd_emulator.credentials import Credential, CredentialStore
from receiptd_emulator.dybase import Dybase
from receiptd_emulator.dysms import Dysms
from receiptd_emulator.faults import QpsLimiter
from receiptd_emulator.globe import Globe
from receiptd_emulator.mns import MnsService
from receiptd_emulator.pop import PopGateway
from receiptd_emulator.pop_signing import PopVerifier
from receiptd_emulator.profiles import SITES

if TYPE_CHECKING:
    from receiptd_emulator.accounts import Account

__all__ = ["INTL_MNS_OWNER_UID", "SITES", "Site", "pop_gateway"]

#: The owner uid of the international site's MNS (its host's first label).
INTL_MNS_OWNER_UID = "1493622401794734"


@dataclass(frozen=True)
class Site:
    """One site's keys and MNS."""

    name: str
    credentials: CredentialStore
    mns: MnsService


def pop_gateway(
    site: Site,
    account: Callable[[str], Account],
    globe_limiter: QpsLimiter,
    clock: Callable[[], float],
    token_lifetime: Callable[[], float],
) -> PopGateway:
    """The site's Dysmsapi and Dybaseapi actions behind its POP gateway; `account` maps an
    account name (of the signing key) to the account."""

    def of(credential: Credential) -> Account:
        return account(credential.account)

    def prefix(credential: Credential) -> str:
        return of(credential).info.queue_prefix

    gateway = PopGateway(PopVerifier(site.credentials))
    if site.name == "cn":
        Dysms(lambda cred: of(cred).provider, clock=clock).register(gateway)
        Dybase(site.credentials, prefix, token_lifetime).register(gateway)
    else:
        Dybase.international(site.credentials, prefix, token_lifetime).register(gateway)
    Globe(site.name, lambda cred: of(cred).globe, globe_limiter, clock).register(gateway)
    return gateway
