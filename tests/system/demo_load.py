"""Demo-like load on a running `receiptd run`, as an application makes it.

* ``Sender``: SendSms through the real Dysmsapi SDK to the emulator, then ``POST /v1/sends``
  to the daemon (so the daemon's own registration counters move, as when another system
  registers its sends), in batches of ``RECIPIENTS`` numbers like ``receiptd demo``;
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from receiptd import wiring
from receiptd.providers.aliyun import dysms
from receiptd.testing import emulated
from receiptd_emulator import Emulator
from tests.system.daemon import Daemon

RECIPIENTS = 10  # numbers per SendSms, as in receiptd/demo.py
TEMPLATE = "SMS_200000001"


def v1(daemon: Daemon, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    """A /v1 request with the status token: GET, or POST of ``body`` as JSON."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{daemon.port}{path}",
        data=data,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - local
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class Sender:
    """Sends through the emulator and registers each send with the daemon."""

    def __init__(self, emu: Emulator, daemon: Daemon, token: str) -> None:
        self._client = wiring.dysms_client(emulated.settings(emu.info))
        self._sign = emu.info.sign_name
        self._daemon = daemon
        self._token = token
        self.registered = 0

    def batch(self, first: int, sends: int) -> None:
        """``sends`` SendSms calls of RECIPIENTS numbers each, numbered from ``first``."""
        for i in range(first, first + sends):
            numbers = [f"13{i:03d}{j:06d}" for j in range(RECIPIENTS)]
            sent_at = datetime.now(UTC)
            param = json.dumps({"name": "张三", "order": f"E2E{i:04d}"}, ensure_ascii=False)
            receipt = dysms.send_sms(self._client, numbers, self._sign, TEMPLATE, param, f"e2e-{i}")
            records = [
                {"biz_id": receipt.biz_id, "phone_number": n, "sent_at": sent_at.isoformat()}
                for n in numbers
            ]
            code, answer = v1(self._daemon, "/v1/sends", self._token, records)
            assert code == 200, (code, answer)
            self.registered += int(answer["registered"])
