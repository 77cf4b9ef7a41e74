"""`receiptd demo` (the README's first command) settles everything and says so."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIPTD_")}
    return subprocess.run(
        [sys.executable, "-m", "receiptd", "demo", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_prints_summary_and_exits_0(tmp_path: Path) -> None:
    proc = run_demo(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    match = re.search(r"receiptd demo: (\d+) SMS settled in ([\d.]+) s", out)
    assert match, out
    assert int(match.group(1)) == 300
    print(f"demo settled 300 sends in {match.group(2)} s")
    status = re.search(r"delivered (\d+), failed (\d+), expired (\d+), pending (\d+)", out)
    assert status, out
    delivered, failed, expired, pending = map(int, status.groups())
    assert (delivered + failed, expired, pending) == (300, 0, 0)
    assert delivered > 0 and failed > 0
    by = re.search(r"settled by:\s+receipt (\d+), query (\d+), window (\d+)", out)
    assert by and int(by.group(1)) > 0 and int(by.group(2)) > 0  # lost receipts were queried
    assert re.search(r"dead letters .*: 1$", out, re.M)
    assert int(re.search(r"replies stored \(sms_inbound\): (\d+)", out).group(1)) > 0  # type: ignore[union-attr]
    assert (tmp_path / "receiptd-demo.db").exists()


def test_demo_push_settles_every_send_with_receipts_by_push(tmp_path: Path) -> None:
    proc = run_demo(tmp_path, "--push")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"receiptd demo: 300 SMS settled", out), out
    assert re.search(r"expired 0, pending 0", out), out
    by = re.search(r"settled by:\s+receipt (\d+), query (\d+)", out)
    assert by and int(by.group(1)) > 0  # receipts came by push: MNS was never read
    assert re.search(r"MNS 0$", out, re.M), out
    pushed = re.search(r"receipts pushed: (\d+) in (\d+) HTTP requests", out)
    assert pushed and int(pushed.group(1)) > int(pushed.group(2)) > 0  # merged arrays
    assert re.search(r"dead letters .*: 1$", out, re.M)  # the broken pushed element


def test_demo_webhook_receiver_gets_one_event_per_change(tmp_path: Path) -> None:
    proc = run_demo(tmp_path, "--webhook")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    got = re.search(r"webhooks received \(signatures verified\): (.*)$", out, re.M)
    want = re.search(r"equal to sends settled and replies stored: (.*)$", out, re.M)
    assert got and want, out
    assert got.group(1) == want.group(1)
    counts = dict(re.findall(r"([a-z.]+) (\d+)", got.group(1)))
    status = re.search(r"delivered (\d+), failed (\d+), expired (\d+), pending (\d+)", out)
    replies = re.search(r"replies stored \(sms_inbound\): (\d+)", out)
    assert status and replies
    assert counts["send.delivered"] == status.group(1) and counts["send.failed"] == status.group(2)
    assert counts["reply.received"] == replies.group(1) != "0"


def test_demo_international_settles_every_shape_by_receipt_and_by_query(tmp_path: Path) -> None:
    proc = run_demo(tmp_path, "--international")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"receiptd demo --international: 100 SMS settled", out), out
    shapes = re.findall(
        r"(\d+) sends: delivered (\d+), failed (\d+), pending (\d+); "
        r"by receipt (\d+), by query (\d+)",
        out,
    )
    assert [int(s[0]) for s in shapes] == [70, 20, 10], out  # mainland, China site, intl site
    for total, delivered, failed, pending, by_receipt, by_query in (map(int, s) for s in shapes):
        assert (delivered + failed, pending, by_receipt + by_query) == (total, 0, total)
        assert by_receipt > 0, out
    assert sum(int(s[5]) for s in shapes) > 0  # lost receipts were asked about
    calls = dict(re.findall(r"(\w+) (\d+)", out.split("API calls:")[1]))
    assert (calls["SendSms"], calls["SendMessageToGlobe"]) == ("7", "30"), calls
    # Every query settled its send: no more calls than sends settled by query, per API.
    assert int(calls["QuerySendDetails"]) <= int(shapes[0][5])
    assert int(calls["QueryMessage"]) <= int(shapes[1][5]) + int(shapes[2][5])
