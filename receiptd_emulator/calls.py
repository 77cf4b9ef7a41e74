"""The call log: what clients asked the emulator, when, and what they got."""

from __future__ import annotations

import datetime as dt
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The log keeps the most recent calls only, so a long benchmark cannot exhaust memory.
DEFAULT_CAPACITY = 200_000


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One API call.

    api: "SendSms", "QuerySendDetails", "QueryTokenForMnsQueue", "MNS.<Operation>", ...
    params: the request parameters (POP: decoded, without signature fields; MNS: queue + query).
    monotonic / wall: when the request arrived (time.monotonic() and an aware UTC datetime).
    status: HTTP status sent, or 0 when the connection was reset.
    outcome: "OK", an error code, or "reset".
    fault: the injected fault kind ("none", "error", "throttle", "reset_before", "reset_after").
    account: the name of the account whose key signed the call (its AccessKey, a token it was
    issued, its direct MNS key, its KooMessage AK or IAM token); "" for Alicom's owner key and
    for keys the emulator does not know.
    """

    api: str
    params: Mapping[str, Any]
    monotonic: float
    wall: dt.datetime
    status: int
    outcome: str
    access_key_id: str = ""
    fault: str = "none"
    duration: float = 0.0
    account: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "params": dict(self.params),
            "monotonic": self.monotonic,
            "wall": self.wall.isoformat(),
            "status": self.status,
            "outcome": self.outcome,
            "access_key_id": self.access_key_id,
            "fault": self.fault,
            "duration": self.duration,
            "account": self.account,
        }


class CallLog:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._calls: deque[RecordedCall] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def record(self, call: RecordedCall) -> None:
        self._calls.append(call)  # deque.append is atomic under the GIL

    def calls(self, api: str | None = None, account: str | None = None) -> list[RecordedCall]:
        """Calls in arrival order, optionally of one API and/or one account ("" for none)."""
        with self._lock:
            snapshot = list(self._calls)
        return [
            c
            for c in snapshot
            if (api is None or c.api == api) and (account is None or c.account == account)
        ]

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
