"""Several accounts on one port, through the real SDKs over sockets: each account sees only its
own sends, tokens, queues and receipts, and the call log names the account of every call."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alibabacloud_dybaseapi20170525 import models as base_models
from alibabacloud_dybaseapi20170525.client import Client as DybaseClient
from alibabacloud_dysmsapi20170525 import models as sms_models
from alibabacloud_dysmsapi20170525.client import Client as DysmsClient
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkkoomessage.v1 import KooMessageClient, ListAimSendDetailsRequest
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Queue
from Tea.exceptions import TeaException

from receiptd import domain, errors, ports, wiring
from receiptd.testing.emulated import emulator_settings
from receiptd_emulator import AccountInfo, Emulator, ManualClock, Profile, SeedSend
from receiptd_emulator.koomessage_store import SendDetail
from receiptd_emulator.push import PushSpec
from tests.peers import Answer, MisbehavingServer

from .conftest import CST, china_day, pop_config, query_token, today_cst
from .test_control_and_cli import ROOT, call
from .test_mns_auth import error_type, sts_queue

PHONE = "13800138000"
#: Every recipient delivered, every receipt to the queue: outcomes are not what is tested here.
SURE = Profile(name="sure", delivered=1.0, failed=0.0, seed=7)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(time.time())


@pytest.fixture
def emu(clock: ManualClock) -> Iterator[Emulator]:
    with Emulator(profile=SURE, clock=clock) as emulator:
        yield emulator


@pytest.fixture
def brand_b(emu: Emulator) -> AccountInfo:
    return emu.add_account("brand_b")  # after start(): the same port serves it at once


def sms_client(emu: Emulator, account: AccountInfo) -> DysmsClient:
    config = pop_config(emu.info, access_key_id=account.access_key_id)
    config.access_key_secret = account.access_key_secret
    return DysmsClient(config)


def dybase_client(emu: Emulator, account: AccountInfo) -> DybaseClient:
    config = pop_config(emu.info, access_key_id=account.access_key_id)
    config.access_key_secret = account.access_key_secret
    return DybaseClient(config)


def send(client: DysmsClient, account: AccountInfo) -> str:
    request = sms_models.SendSmsRequest(
        phone_numbers=PHONE,
        sign_name=account.sign_name,
        template_code=account.template_code,
        template_param='{"code":"1234"}',
    )
    body = client.send_sms(request).body
    assert body.code == "OK", body.message
    return str(body.biz_id)


def query(client: DysmsClient, biz_id: str, day: str | None = None) -> tuple[str, int, list[int]]:
    """QuerySendDetails of ``biz_id`` sent on ``day`` (China's date; default today's)."""
    request = sms_models.QuerySendDetailsRequest(
        phone_number=PHONE, biz_id=biz_id, send_date=day or today_cst(), page_size=10,
        current_page=1,
    )  # fmt: skip
    body = client.query_send_details(request).body
    rows = body.sms_send_detail_dtos.sms_send_detail_dto or []
    return body.code, int(body.total_count), [row.send_status for row in rows]


def receive_biz_ids(queue: Queue) -> list[str]:
    messages = queue.batch_receive_message(16, 0)
    return [json.loads(base64.b64decode(m.message_body))["biz_id"] for m in messages]


@contextmanager
def token_queue(emu: Emulator, account: AccountInfo) -> Iterator[Queue]:
    """The account's SmsReport queue, read as receiptd reads it: with a token for it."""
    token = query_token(dybase_client(emu, account), "SmsReport", account.report_queue)
    key = (token.access_key_id, token.access_key_secret, token.security_token)
    with sts_queue(emu.info, *key, account.report_queue) as queue:
        yield queue


def test_accounts_have_their_own_uid_keys_and_queues(emu: Emulator, brand_b: AccountInfo) -> None:
    default, listed_b = emu.info.accounts
    assert (default.name, default.uid) == ("default", emu.info.account_uid)
    assert (default.access_key_id, default.report_queue) == (
        emu.info.access_key_id,
        emu.info.report_queue,
    )
    assert listed_b == brand_b == emu.account("brand_b")
    assert brand_b.report_queue == f"Alicom-Queue-{brand_b.uid}-SmsReport"
    assert brand_b.up_queue == brand_b.queue_prefix + "SmsUp"
    assert len({default.uid, brand_b.uid}) == 2
    assert len({default.access_key_id, brand_b.access_key_id}) == 2
    # Keys follow from the name, so another emulator (a restarted one) gives the same.
    with Emulator() as other:
        assert other.add_account("brand_b") == brand_b
        assert other.add_account("brand_c", uid="1092397003988387").uid == "1092397003988387"
        with pytest.raises(ValueError, match="already"):
            other.add_account("brand_b")
        with pytest.raises(ValueError, match="uid"):
            other.add_account("brand_d", uid="1092397003988387")
        with pytest.raises(ValueError, match="account name"):
            other.add_account("Brand-B")


def test_the_same_biz_id_asked_by_both_accounts(
    emu: Emulator, brand_b: AccountInfo, clock: ManualClock
) -> None:
    a, b = emu.account(), brand_b
    sms_a, sms_b = sms_client(emu, a), sms_client(emu, b)
    biz_a = send(sms_a, a)
    today = china_day(clock)  # the emulator's
    assert query(sms_a, biz_a, today) == ("OK", 1, [1])  # waiting for its receipt
    assert query(sms_b, biz_a, today) == ("OK", 0, [])  # B has no such send: "no record"
    assert [r.biz_id for r in emu.records()] == [biz_a]
    assert emu.records("brand_b") == []

    # The same (BizId, phone) in both accounts, with different outcomes: each its own. Sent
    # by the emulator's clock and asked for on the send's own China date: "5 minutes ago" by
    # the wall clock was yesterday there just after its midnight (a CI failure at 00:05 CST).
    sent = dt.datetime.fromtimestamp(clock() - 300, dt.UTC)
    day = sent.astimezone(CST).strftime("%Y%m%d")
    same = {"phone": PHONE, "sign_name": a.sign_name, "template_code": a.template_code}
    emu.seed_sends([SeedSend(**same, biz_id="77^0", send_time=sent, receipt_delay=1)])
    emu.seed_sends(
        [SeedSend(**same, biz_id="77^0", send_time=sent, receipt_delay=1, outcome="failed")],
        account="brand_b",
    )
    assert query(sms_a, "77^0", day) == ("OK", 1, [3])
    assert query(sms_b, "77^0", day) == ("OK", 1, [2])


def test_receipts_land_on_the_sending_accounts_queue(
    emu: Emulator, brand_b: AccountInfo, clock: ManualClock
) -> None:
    biz_b = send(sms_client(emu, brand_b), brand_b)
    clock.advance(SURE.receipt_delay[1] + 1)
    assert emu.scheduler.wait_idle(timeout=10)
    assert emu.queue_depth("report", account="brand_b")["visible"] == 1
    assert emu.queue_depth("report")["visible"] == 0
    with token_queue(emu, brand_b) as queue:
        assert receive_biz_ids(queue) == [biz_b]


def test_push_targets_are_per_account(emu: Emulator, clock: ManualClock) -> None:
    with MisbehavingServer([], then=Answer()) as peer_a, MisbehavingServer([]) as peer_b:
        emu.set_push("SmsReport", PushSpec(url=peer_a.url, schedule="none", linger=0))
        spec = PushSpec(url=peer_b.url, schedule="none", linger=0)
        brand_b = emu.add_account("brand_b", push_specs={"SmsReport": spec})
        biz_a = send(sms_client(emu, emu.account()), emu.account())
        biz_b = send(sms_client(emu, brand_b), brand_b)
        clock.advance(SURE.receipt_delay[1] + 1)
        assert emu.scheduler.wait_idle(timeout=10)
        assert emu.wait_push_idle("SmsReport") and emu.wait_push_idle(
            "SmsReport", account="brand_b"
        )
        (seen_a,) = peer_a.wait_connections(1)
        (seen_b,) = peer_b.wait_connections(1)
    assert biz_a.encode() in seen_a.request and biz_b.encode() not in seen_a.request
    assert biz_b.encode() in seen_b.request and biz_a.encode() not in seen_b.request
    assert emu.push_stats("brand_b")["SmsReport"]["delivered"] == 1
    assert emu.queue_depth("report", account="brand_b")["visible"] == 0


def test_a_token_is_issued_for_the_callers_own_queues_only(
    emu: Emulator, brand_b: AccountInfo
) -> None:
    a = emu.account()
    request = base_models.QueryTokenForMnsQueueRequest(
        message_type="SmsReport", queue_name=a.report_queue
    )
    body = dybase_client(emu, brand_b).query_token_for_mns_queue(request).body
    assert body.code == "isv.INVALID_PARAMETERS"
    assert body.message_token_dto is None
    # Without a queue name B's token is for B's queue: A's queue refuses it, B's takes it.
    token = query_token(dybase_client(emu, brand_b), "SmsReport")
    key = (token.access_key_id, token.access_key_secret, token.security_token)
    with sts_queue(emu.info, *key, a.report_queue) as foreign:
        assert error_type(lambda: foreign.receive_message(wait_seconds=0)) == "AccessDenied"
        assert error_type(foreign.get_attributes) == "AccessDenied"
    emu.enqueue_report({"biz_id": "1^0"}, account="brand_b")
    with sts_queue(emu.info, *key, brand_b.report_queue) as own:
        assert own.receive_message(wait_seconds=0).message_body


def test_direct_keys_open_their_own_accounts_queues_only(
    emu: Emulator, brand_b: AccountInfo
) -> None:
    a = emu.account()
    b_key = (brand_b.mns_access_key_id, brand_b.mns_access_key_secret, "")
    with sts_queue(emu.info, *b_key, a.report_queue) as foreign:
        assert error_type(lambda: foreign.receive_message(wait_seconds=0)) == "AccessDenied"
    with sts_queue(emu.info, *b_key, a.up_queue) as foreign:
        assert error_type(foreign.get_attributes) == "AccessDenied"
    emu.enqueue_report({"biz_id": "2^0"}, account="brand_b")
    with sts_queue(emu.info, *b_key, brand_b.report_queue) as own:
        message = own.receive_message(wait_seconds=0)
        own.delete_message(message.receipt_handle)
    # An account's own AccessKey does not exist in Alicom's MNS account, as today.
    with sts_queue(emu.info, brand_b.access_key_id, brand_b.access_key_secret, "") as q:
        assert error_type(lambda: q.receive_message(wait_seconds=0)) == "InvalidAccessKeyId"
    assert emu.queue_depth("report") == emu.queue_depth("report", account="brand_b")


def test_the_call_log_names_the_account_of_every_call(emu: Emulator, brand_b: AccountInfo) -> None:
    a = emu.account()
    sms_a, sms_b = sms_client(emu, a), sms_client(emu, brand_b)
    biz_ids = [send(sms_a, a) for _ in range(3)]
    for biz_id in biz_ids:
        query(sms_a, biz_id)
    query(sms_b, send(sms_b, brand_b))
    with token_queue(emu, brand_b) as queue:
        assert receive_biz_ids_or_empty(queue) == []
    owner = Account(
        emu.info.mns_endpoint,
        emu.info.mns_owner_access_key_id,
        emu.info.mns_owner_access_key_secret,
    )
    owner.get_queue(a.report_queue).get_attributes()
    owner.mns_client.close_connection()

    queries = emu.calls("QuerySendDetails")
    asked_by_a = [c for c in queries if c.params.get("BizId") in biz_ids]
    assert [c.account for c in asked_by_a] == ["default"] * 3
    assert all(c.access_key_id == a.access_key_id for c in asked_by_a)
    assert [c.account for c in emu.calls("QuerySendDetails", account="brand_b")] == ["brand_b"]
    assert [c.account for c in emu.calls("QueryTokenForMnsQueue")] == ["brand_b"]
    (receive,) = emu.calls("MNS.BatchReceiveMessage")
    assert (receive.account, receive.access_key_id[:4]) == ("brand_b", "STS.")
    (attributes,) = emu.calls("MNS.GetQueueAttributes")
    assert attributes.account == ""  # Alicom's owner key belongs to no customer account
    # The control endpoint answers the same question.
    status, answer = call(emu.info, "GET", "calls?api=QuerySendDetails&account=default")
    assert status == 200
    assert sorted(c["params"]["BizId"] for c in answer["calls"]) == sorted(biz_ids)
    assert {c["account"] for c in answer["calls"]} == {"default"}


def receive_biz_ids_or_empty(queue: Queue) -> list[str]:
    try:
        return receive_biz_ids(queue)
    except MNSServerException as error:
        assert error.type == "MessageNotExist"
        return []


def test_qps_limits_are_per_account(emu: Emulator, brand_b: AccountInfo) -> None:
    emu.set_qps_limit("QuerySendDetails", 1)
    sms_a, sms_b = sms_client(emu, emu.account()), sms_client(emu, brand_b)
    query(sms_a, "1^0")
    with pytest.raises(TeaException) as throttled:
        query(sms_a, "1^0")
    assert throttled.value.code == "Throttling.User"
    assert query(sms_b, "1^0") == ("OK", 0, [])  # B's allowance is its own


def test_koomessage_keys_read_their_own_accounts_details(
    emu: Emulator, brand_b: AccountInfo
) -> None:
    sent = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    emu.seed_koomessage([SendDetail("msg-a", "task-1", "a", sent, "success")])
    emu.seed_koomessage([SendDetail("msg-b", "task-1", "b", sent, "fail")], account="brand_b")

    def msg_ids(ak: str, sk: str) -> list[str]:
        client = (
            KooMessageClient.new_builder()
            .with_credentials(BasicCredentials(ak, sk))
            .with_endpoints([emu.info.koomessage_endpoint])
            .with_http_config(HttpConfig(timeout=(5, 5), retry_times=0))
            .build()
        )
        response = client.list_aim_send_details(ListAimSendDetailsRequest(task_id="task-1"))
        return [d.msg_id for d in response.send_details]

    default = emu.account()
    assert msg_ids(default.huawei_access_key_id, default.huawei_secret_access_key) == ["msg-a"]
    assert msg_ids(brand_b.huawei_access_key_id, brand_b.huawei_secret_access_key) == ["msg-b"]
    accounts = [c.account for c in emu.calls("koomessage")]
    assert accounts == ["default", "brand_b"]
    assert [d.msg_id for d in emu.koomessage_details("brand_b")] == ["msg-b"]


def test_control_endpoint_adds_and_inspects_accounts(emu: Emulator) -> None:
    status, created = call(emu.info, "POST", "accounts", {"name": "brand_c", "uid": "42"})
    assert (status, created["report_queue"]) == (200, "Alicom-Queue-42-SmsReport")
    assert call(emu.info, "POST", "accounts", {"name": "brand_c"})[0] == 400
    names = [a["name"] for a in call(emu.info, "GET", "accounts")[1]["accounts"]]
    assert names == ["default", "brand_c"]
    assert call(emu.info, "GET", "info")[1]["accounts"][1] == created
    fields = {"biz_id": "3^0"}
    body = {"fields": fields, "account": "brand_c"}
    assert call(emu.info, "POST", "enqueue_report", body)[0] == 200
    assert call(emu.info, "GET", "queue_depth?queue=report&account=brand_c")[1]["visible"] == 1
    assert call(emu.info, "GET", "queue_depth?queue=report")[1]["visible"] == 0
    seed = {"phone": PHONE, "sign_name": "阿里云短信测试", "template_code": "SMS_154950909"}
    assert call(emu.info, "POST", "seed_sends", {"sends": [seed], "account": "brand_c"})[0] == 200
    assert len(call(emu.info, "GET", "records?account=brand_c")[1]["records"]) == 1
    assert call(emu.info, "GET", "records")[1]["records"] == []
    assert call(emu.info, "GET", "records?account=nobody")[0] == 400


def test_profile_accounts_and_the_cli_json_line(tmp_path: Path) -> None:
    profile = tmp_path / "two.toml"
    profile.write_text(
        'name = "two"\n[[accounts]]\nname = "brand_b"\nuid = "1092397003988387"\n'
        '[[accounts]]\nname = "brand_c"\n',
        encoding="utf-8",
    )
    assert [a.name for a in Profile.load(profile).accounts] == ["brand_b", "brand_c"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[accounts]]\nname = "default"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="unique"):
        Profile.load(bad)
    command = "from receiptd.cli.emulator import command; command()"
    process = subprocess.Popen(
        [sys.executable, "-c", command, "--port", "0", "--profile", str(profile)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        names = [(a["name"], a["report_queue"]) for a in info["accounts"]]
        assert names[0] == ("default", info["report_queue"])
        assert names[1] == ("brand_b", "Alicom-Queue-1092397003988387-SmsReport")
        assert names[2][0] == "brand_c"
        assert info["accounts"][0]["access_key_id"] == info["access_key_id"]
    finally:
        process.terminate()
        process.communicate(timeout=20)


def test_receiptds_queue_adapter_reads_only_its_own_accounts_queue(
    emu: Emulator, brand_b: AccountInfo
) -> None:
    def report_queue(prefix: str) -> ports.ReceiptQueue:
        settings = emulator_settings(
            emu.info,
            aliyun_access_key_id=brand_b.access_key_id,
            aliyun_access_key_secret=brand_b.access_key_secret,
            aliyun_queue_prefix=prefix,
        )
        return wiring.queue_factory(settings, domain.MessageType.REPORT)()

    emu.enqueue_report({"biz_id": "5^0"}, account="brand_b")
    emu.enqueue_report({"biz_id": "6^0"})
    own = report_queue(brand_b.queue_prefix)
    try:
        (message,) = own.receive(16, 0)
        assert json.loads(base64.b64decode(message.body))["biz_id"] == "5^0"
    finally:
        own.close()
    foreign = report_queue(emu.info.queue_prefix)  # B's key, A's queue: no token for it
    try:
        with pytest.raises(errors.QueueError, match=r"isv\.INVALID_PARAMETERS"):
            foreign.receive(16, 0)
    finally:
        foreign.close()
    assert emu.queue_depth("report")["visible"] == 1


def test_records_answer_at_the_emulators_time_as_queries_do(
    emu: Emulator, brand_b: AccountInfo, clock: ManualClock
) -> None:
    """``records()`` (the tests' view) and QuerySendDetails read the same clock: a send whose
    receipt is due in 60 s of the emulator's time is still waiting until that clock moves."""
    sms_b = sms_client(emu, brand_b)
    now = dt.datetime.fromtimestamp(clock(), dt.UTC)
    same = {"phone": PHONE, "sign_name": brand_b.sign_name, "template_code": brand_b.template_code}
    seed = SeedSend(**same, biz_id="88^0", send_time=now, receipt_delay=60)
    emu.seed_sends([seed], account="brand_b")
    assert [r.status for r in emu.records("brand_b")] == [1]
    assert query(sms_b, "88^0") == ("OK", 1, [1])
    clock.advance(61)
    assert [r.status for r in emu.records("brand_b")] == [3]
    assert query(sms_b, "88^0") == ("OK", 1, [3])
