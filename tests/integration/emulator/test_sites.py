"""The two sites on their two ports: keys, tokens and queues of one site are unknown on the
other, international accounts from a profile, the CLI's JSON line, the control API for
international sends, receipt fates on the new queues, push mode and misbehaving clients."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alibabacloud_dysmsapi20180501 import models as globe_models
from alibabacloud_dysmsapi20180501.client import Client as GlobeClient
from mns.account import Account
from mns.mns_exception import MNSServerException

from receiptd_emulator import AccountInfo, Emulator, ManualClock, SeedGlobeSend
from receiptd_emulator.push import PushSpec
from tests.peers import MISBEHAVIOURS, Act, MisbehavingClients, MisbehavingServer

from .test_control_and_cli import ROOT, call
from .test_globe_sdk import HK, config, token

INTL_PROFILE = """
name = "two_sites"
seed = 5
[outcomes]
delivered = 1.0
failed = 0.0
[receipts]
delay = [0.0, 0.0]
[[accounts]]
name = "global_co"
site = "intl"
[globe_qps]
QueryMessage = 5
"""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(time.time())


@pytest.fixture
def emu(clock: ManualClock, tmp_path: Path) -> Iterator[Emulator]:
    path = tmp_path / "two_sites.toml"
    path.write_text(INTL_PROFILE, encoding="utf-8")
    with Emulator(profile=path, clock=clock) as emulator:
        yield emulator


@pytest.fixture
def intl(emu: Emulator) -> AccountInfo:
    return emu.account("global_co")


def send(emu: Emulator, account: AccountInfo) -> str:
    client = GlobeClient(config(emu, account))
    request = globe_models.SendMessageToGlobeRequest(to=HK, message="hi")
    body = client.send_message_to_globe(request).body
    assert body.response_code == "OK"
    return str(body.message_id)


def test_a_profiles_intl_account_and_its_info(emu: Emulator, intl: AccountInfo) -> None:
    assert (intl.site, intl.globe_queue, intl.up_queue) == ("intl", "", "")
    assert intl.report_queue == f"Alicom-Queue-{intl.uid}-SmsReport"
    info = emu.info
    assert info.intl_endpoint == f"http://127.0.0.1:{emu.intl_port}" != info.mns_endpoint
    assert info.as_dict()["accounts"][1]["site"] == "intl"
    assert emu.profile.globe_qps["QueryMessage"] == 5
    assert emu.profile.globe_qps["SendMessageToGlobe"] == 2000  # the rest keep their defaults
    # The account's queue is on the international MNS only.
    assert emu.intl_mns.queue(intl.report_queue)
    with pytest.raises(Exception, match="not exist"):
        emu.mns.queue(intl.report_queue)


def mns_error(endpoint: str, key: tuple[str, str, str], queue: str) -> str:
    account = Account(endpoint, *key)
    try:
        with pytest.raises(MNSServerException) as error:
            account.get_queue(queue).batch_receive_message(16, 0)
    finally:
        account.mns_client.close_connection()
    return str(error.value.type)


def test_tokens_and_direct_keys_open_their_own_sites_mns_only(
    emu: Emulator, intl: AccountInfo
) -> None:
    default = emu.account()
    intl_token = token(emu, intl, "SmsReport")
    cn_token = token(emu, default, "GlobeSmsReport")
    intl_key = (intl_token.access_key_id, intl_token.access_key_secret, intl_token.security_token)
    cn_key = (cn_token.access_key_id, cn_token.access_key_secret, cn_token.security_token)
    info = emu.info
    assert mns_error(info.mns_endpoint, intl_key, intl.report_queue) == "InvalidAccessKeyId"
    assert mns_error(info.intl_endpoint, cn_key, default.globe_queue) == "InvalidAccessKeyId"
    direct = (intl.mns_access_key_id, intl.mns_access_key_secret, "")
    assert mns_error(info.mns_endpoint, direct, intl.report_queue) == "InvalidAccessKeyId"
    # A token opens only its own queue on its own site.
    assert mns_error(info.intl_endpoint, intl_key, default.report_queue) == "AccessDenied"
    with pytest.raises(ValueError, match="site"):
        emu.add_account("elsewhere", site="mars")


def test_control_api_seeds_and_lists_globe_sends(emu: Emulator, intl: AccountInfo) -> None:
    info = emu.info
    status, seeded = call(
        info,
        "POST",
        "seed_globe_sends",
        {
            "account": "global_co",
            "sends": [{"to": HK, "outcome": "expired", "task_id": "t9", "receipt_delay": 0}],
        },
    )
    assert status == 200
    (message_id,) = seeded["message_ids"]
    status, listed = call(info, "GET", "globe_records?account=global_co")
    (record,) = listed["records"]
    assert (record["message_id"], record["status"], record["outcome"]) == (
        message_id,
        "2",
        "expired",
    )
    assert call(info, "POST", "seed_globe_sends", {"sends": [{"to": HK, "colour": 1}]})[0] == 400
    assert call(info, "POST", "globe_qps", {"api": "QueryMessage", "qps": 1})[0] == 200
    assert call(info, "POST", "globe_qps", {"api": "SendSms", "qps": 1})[0] == 400
    status, added = call(info, "POST", "accounts", {"name": "global_b", "site": "intl"})
    assert (status, added["site"], added["globe_queue"]) == (200, "intl", "")
    fields = {"To": HK, "Status": "1", "MessageId": "1"}
    assert call(info, "POST", "enqueue_globe_report", {"fields": fields})[0] == 200
    assert emu.queue_depth("globe")["visible"] == 1
    # The expired send's receipt reached the intl queue with Status 6.
    owner = Account(
        info.intl_endpoint, info.mns_owner_access_key_id, info.mns_owner_access_key_secret
    )
    try:
        queue = owner.get_queue(intl.report_queue)
        queue.set_encoding(False)
        (message,) = queue.batch_receive_message(16, 1)
    finally:
        owner.mns_client.close_connection()
    receipt = json.loads(base64.b64decode(message.message_body))
    assert (receipt["Status"], receipt["ErrorCode"], receipt["TaskId"]) == ("6", "EXPIRED", "t9")


@pytest.mark.parametrize("fate", ["lost", "duplicate", "malformed"])
def test_receipt_fates_apply_to_the_new_queues(
    emu: Emulator, intl: AccountInfo, clock: ManualClock, fate: str
) -> None:
    for account in (None, "global_co"):
        emu.seed_globe_sends([SeedGlobeSend(HK, receipt=fate, receipt_delay=0)], account)
        clock.advance(1.0)  # a duplicate's second copy comes within a second here
        assert emu.scheduler.wait_idle()
        expected = {"lost": 0, "duplicate": 2, "malformed": 1}[fate]
        assert emu.queue_depth("globe", account)["visible"] == expected
    assert emu.queue_depth("report")["visible"] == 0  # the China SmsReport queue: untouched


def test_malformed_bodies_in_the_new_shapes(emu: Emulator, intl: AccountInfo) -> None:
    shapes = set()
    for _ in range(30):
        body = emu.inject_malformed("globe", account="global_co")
        try:
            shapes.add(tuple(sorted(json.loads(base64.b64decode(body, validate=True)))))
        except ValueError:
            continue
    assert ("SmsSize", "Status", "To") in shapes  # PascalCase, no MessageId


def test_cli_json_line_carries_the_intl_site() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from receiptd.cli.emulator import command; command()",
            "--port",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = json.loads(process.stdout.readline())
        assert line["intl_endpoint"].startswith("http://127.0.0.1:")
        assert line["intl_endpoint"] != line["mns_endpoint"]
        assert line["intl_mns_owner_uid"] == "1493622401794734"
        assert line["accounts"][0]["site"] == "cn"
    finally:
        process.terminate()
        process.communicate(timeout=20)


@pytest.mark.parametrize("act", MISBEHAVIOURS, ids=lambda a: a.value)
def test_misbehaving_clients_on_the_intl_port(emu: Emulator, intl: AccountInfo, act: Act) -> None:
    with MisbehavingClients(emu.intl_port, "/") as clients:
        answer = clients.act(act)
        message_id = send(emu, intl)  # served beside the misbehaviour
    assert message_id
    if act in (Act.GARBAGE, Act.BAD_BODY):
        assert answer.startswith(b"HTTP/1.1 4")


def test_intl_push_posts_pascal_case_arrays_on_the_short_schedule(
    emu: Emulator, intl: AccountInfo, clock: ManualClock
) -> None:
    """1 and 5 minutes after a failure, 3 attempts in all, then dropped (no schedule named:
    the international site's)."""
    with MisbehavingServer([Act.GARBAGE] * 5) as peer:
        spec = PushSpec(url=f"{peer.url}/push", linger=0.0, senders=1, timeout=0.5)
        emu.set_push("SmsReport", spec, account="global_co")
        message_id = send(emu, intl)
        for attempt, delay in enumerate((60.0, 300.0), start=1):
            peer.wait_connections(attempt)
            assert emu.scheduler.wait_pending() == pytest.approx(clock() + delay)
            clock.advance(delay)
        assert emu.wait_push_idle("SmsReport", 10, "global_co")
        requests = peer.requests()
    stats = emu.push_stats("global_co")["SmsReport"]
    assert (stats["requests"], stats["given_up"]) == (3, 1)
    (element,) = json.loads(requests[0].partition(b"\r\n\r\n")[2])
    assert (element["MessageId"], element["Status"], element["To"]) == (message_id, "1", HK)
    assert emu.queue_depth("globe", "global_co")["visible"] == 0  # pushed, not queued
