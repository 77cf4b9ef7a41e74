"""Dybaseapi QueryTokenForMnsQueue: temporary credentials for one of the caller's Alicom queues.

The token API answers for the calling account's own queues only: a QueueName that is not the
caller's queue of that MessageType is refused with the business error `isv.INVALID_PARAMETERS`.

Each site has its own: the China site's (`dybaseapi.aliyuncs.com`: SmsReport, SmsUp and
GlobeSmsReport, times in Asia/Shanghai) and the international site's
(`dybaseapi.ap-southeast-1.aliyuncs.com`: SmsReport, versions 2017-05-25 and 2018-05-01; the
zone of its times is undocumented, and the emulator prints them in UTC, so a client that
assumes Shanghai is 8 hours off and must use ExpireTime - CreateTime).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from receiptd_emulator import timeutil
from receiptd_emulator.credentials import Credential, CredentialStore
from receiptd_emulator.pop import (
    API_VERSION,
    GLOBE_VERSION,
    PopCall,
    PopGateway,
    business_error,
    require,
)

MESSAGE_TYPES = ("SmsReport", "SmsUp", "GlobeSmsReport")
INTL_MESSAGE_TYPES = ("SmsReport",)


def utc_text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(timeutil.DATETIME_FORMAT)


class Dybase:
    def __init__(
        self,
        store: CredentialStore,
        queue_prefix: Callable[[Credential], str],
        lifetime: Callable[[], float],
        *,
        message_types: tuple[str, ...] = MESSAGE_TYPES,
        versions: tuple[str, ...] = (API_VERSION,),
        time_text: Callable[[dt.datetime], str] = timeutil.cst_text,
    ) -> None:
        """`queue_prefix`: the caller's account's queue prefix, from its key; `store`: the
        site's keys (where the tokens are issued); `time_text`: how the site prints times."""
        self._store = store
        self._prefix = queue_prefix
        self._lifetime = lifetime
        self._types = message_types
        self._versions = versions
        self._time_text = time_text

    @classmethod
    def international(
        cls,
        store: CredentialStore,
        queue_prefix: Callable[[Credential], str],
        lifetime: Callable[[], float],
    ) -> Dybase:
        return cls(
            store,
            queue_prefix,
            lifetime,
            message_types=INTL_MESSAGE_TYPES,
            versions=(API_VERSION, GLOBE_VERSION),
            time_text=utc_text,
        )

    def register(self, gateway: PopGateway) -> None:
        gateway.register("QueryTokenForMnsQueue", "dybase", self.query_token, self._versions)

    def query_token(self, call: PopCall) -> dict[str, Any]:
        message_type = require(call.params, "MessageType")
        if message_type not in self._types:
            return business_error("isv.INVALID_PARAMETERS", f"MessageType must be {self._types}")
        queue = self._prefix(call.credential) + message_type
        asked = call.params.get("QueueName", "")
        if asked and asked != queue:
            return business_error(
                "isv.INVALID_PARAMETERS",
                f"QueueName {asked} does not match MessageType: it is not this account's queue",
            )
        account = call.credential.account
        credential = self._store.issue_sts(queue, self._lifetime(), account=account)
        return {
            "Code": "OK",
            "Message": "OK",
            "MessageTokenDTO": {
                "AccessKeyId": credential.access_key_id,
                "AccessKeySecret": credential.access_key_secret,
                "SecurityToken": credential.security_token,
                # Printed without a zone (China site: Asia/Shanghai, like the real service).
                "CreateTime": self._time_text(timeutil.from_epoch(credential.created_at)),
                "ExpireTime": self._time_text(timeutil.from_epoch(credential.expires_at)),
            },
        }
