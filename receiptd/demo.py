"""`receiptd demo`: the whole product on embedded defaults, in well under 30 seconds.

It starts the provider emulator in-process, uses a fresh SQLite file, sends a few hundred SMS
with a realistic mix (delivered, failed, lost receipts, replies, a malformed message), runs the
consumers and the compensator until every send is settled, and prints a summary.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from receiptd import api, config, domain
from receiptd.compensator import Compensator, build_lookups
from receiptd.consumer import Consumer
from receiptd.db import migrate
from receiptd.db.engine import create_db_engine
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.emulator import Emulator
from receiptd.health import Health
from receiptd.providers.aliyun import mns
from receiptd.ratelimit import TokenBucket

Echo = Callable[[str], None]


@dataclass(frozen=True)
class DemoResult:
    sends: int
    counts: dict[tuple[str, str], int]
    settled_by: dict[str, int]
    inbound: int
    dead_letters: int
    api_calls: dict[str, int]
    seconds: float
    settled_all: bool


def _settings(emu: Emulator, db_path: Path) -> config.Settings:
    info = emu.info
    env = {
        "RECEIPTD_DATABASE_URL": f"sqlite:///{db_path}",
        "RECEIPTD_ALIYUN_ACCESS_KEY_ID": info.access_key_id,
        "RECEIPTD_ALIYUN_ACCESS_KEY_SECRET": info.access_key_secret,
        "RECEIPTD_ALIYUN_QUEUE_PREFIX": info.queue_prefix,
        "RECEIPTD_ALIYUN_ALICOM_MNS_ENDPOINT": info.mns_endpoint,
        "RECEIPTD_ALIYUN_DYSMS_ENDPOINT": info.dysms_endpoint,
        "RECEIPTD_ALIYUN_DYBASE_ENDPOINT": info.dybase_endpoint,
        "RECEIPTD_CONSUMER_WAIT_SECONDS": "1",
        "RECEIPTD_COMPENSATOR_GRACE": "0",
        "RECEIPTD_COMPENSATOR_RATE_LIMIT": "500",
    }
    return config.Settings(**{k.removeprefix("RECEIPTD_").lower(): v for k, v in env.items()})
