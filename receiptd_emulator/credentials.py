"""Access keys the emulator knows: each customer account's key, Alicom's MNS owner key, each
account's direct MNS key, and the temporary (STS) credentials that QueryTokenForMnsQueue hands out.

Every key but Alicom's owner key belongs to one account (`Credential.account`, its name), which
is what keeps one account's key off another account's sends, tokens and queues.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_ALNUM = string.ascii_letters + string.digits


class KeyKind(enum.Enum):
    ACCOUNT = "account"  # the customer's AccessKey: Dysmsapi + Dybaseapi, not Alicom's queues
    MNS_OWNER = "mns_owner"  # Alicom's own MNS account key: every MNS operation (tests, tools)
    STS = "sts"  # temporary: consume one Alicom queue until ExpireTime
    MNS_ACCOUNT = "mns_account"  # emulator-only direct MNS key: its own account's queues only


@dataclass(frozen=True, slots=True)
class Credential:
    access_key_id: str
    access_key_secret: str = dataclasses.field(repr=False)
    kind: KeyKind
    security_token: str = dataclasses.field(default="", repr=False)
    queue: str = ""  # STS: the one queue the token may read; MNS_ACCOUNT: the queue prefix
    account: str = ""  # the owning account's name ("" for Alicom's owner key)
    created_at: float = 0.0
    expires_at: float = math.inf


class CredentialStore:
    """Thread-safe lookup by AccessKeyId; issues and expires STS credentials."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, Credential] = {}

    def add(self, credential: Credential) -> None:
        with self._lock:
            self._keys[credential.access_key_id] = credential

    def get(self, access_key_id: str) -> Credential | None:
        return self._keys.get(access_key_id)

    def account_of(self, access_key_id: str) -> str:
        """The name of the account that owns ``access_key_id`` ("" if none or unknown)."""
        credential = self._keys.get(access_key_id)
        return "" if credential is None else credential.account

    def issue_sts(self, queue: str, lifetime: float, account: str = "") -> Credential:
        """A new temporary credential for `queue`, valid `lifetime` seconds.

        Times are whole seconds, because ExpireTime is printed to the second: a client that
        parses ExpireTime sees exactly the instant the emulator starts rejecting the token.
        """
        created = float(math.floor(self._clock()))
        credential = Credential(
            access_key_id="STS." + _random_text(_ALNUM, 24),
            access_key_secret=_random_text(_ALNUM, 44),
            kind=KeyKind.STS,
            security_token="CAIS" + secrets.token_urlsafe(240).replace("-", "+").replace("_", "/"),
            queue=queue,
            account=account,
            created_at=created,
            expires_at=created + max(1, math.ceil(lifetime)),
        )
        self.add(credential)
        return credential

    def expire_sts(self) -> int:
        """Expire every temporary credential issued so far; returns how many."""
        now = self._clock()
        with self._lock:
            expired = {
                ak: dataclasses.replace(cred, expires_at=min(cred.expires_at, now - 1))
                for ak, cred in self._keys.items()
                if cred.kind is KeyKind.STS
            }
            self._keys.update(expired)
        return len(expired)

    def is_expired(self, credential: Credential) -> bool:
        return self._clock() >= credential.expires_at


def _random_text(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))
