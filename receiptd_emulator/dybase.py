"""Dybaseapi QueryTokenForMnsQueue: temporary credentials for one of the caller's Alicom queues.

The token API answers for the calling account's own queues only: a QueueName that is not the
caller's queue of that MessageType is refused with the business error `isv.INVALID_PARAMETERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from receiptd_emulator import timeutil
from receiptd_emulator.credentials import Credential, CredentialStore
from receiptd_emulator.pop import PopCall, PopGateway, business_error, require

MESSAGE_TYPES = ("SmsReport", "SmsUp")


class Dybase:
    def __init__(
        self,
        store: CredentialStore,
        queue_prefix: Callable[[Credential], str],
        lifetime: Callable[[], float],
    ) -> None:
        """`queue_prefix`: the caller's account's queue prefix, from its key."""
        self._store = store
        self._prefix = queue_prefix
        self._lifetime = lifetime

    def register(self, gateway: PopGateway) -> None:
        gateway.register("QueryTokenForMnsQueue", "dybase", self.query_token)

    def query_token(self, call: PopCall) -> dict[str, Any]:
        message_type = require(call.params, "MessageType")
        if message_type not in MESSAGE_TYPES:
            return business_error("isv.INVALID_PARAMETERS", f"MessageType must be {MESSAGE_TYPES}")
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
                # Printed without a zone, in Asia/Shanghai time, like the real service.
                "CreateTime": timeutil.cst_text(timeutil.from_epoch(credential.created_at)),
                "ExpireTime": timeutil.cst_text(timeutil.from_epoch(credential.expires_at)),
            },
        }
