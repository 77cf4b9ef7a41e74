"""Dysmsapi 2018-05-01 (SendMessageToGlobe, BatchSendMessageToGlobe, SendMessageWithTemplate,
QueryMessage) through the unmodified alibabacloud-dysmsapi20180501 client on both sites and with
both signatures, and the receipts read with aliyun-mns-sdk using Dybaseapi tokens."""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from alibabacloud_dybaseapi20170525 import models as base_models
from alibabacloud_dybaseapi20170525.client import Client as DybaseClient
from alibabacloud_dysmsapi20180501 import models as globe_models
from alibabacloud_dysmsapi20180501.client import Client as GlobeClient
from alibabacloud_tea_openapi import models as openapi_models
from alibabacloud_tea_openapi.client import Client as OpenApiClient
from alibabacloud_tea_util import models as util_models
from mns.account import Account
from mns.queue import Queue
from Tea.exceptions import TeaException

from receiptd_emulator import AccountInfo, Emulator, ManualClock, Profile, SeedGlobeSend

from .conftest import pop_config

HK = "85212345678"
SG = "6591234567"
#: Every recipient delivered, its receipt due at once: outcomes are not what is tested here.
SURE = Profile(name="sure", delivered=1.0, failed=0.0, receipt_delay=(0.0, 0.0), seed=3)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(time.time())


@pytest.fixture
def emu(clock: ManualClock) -> Iterator[Emulator]:
    with Emulator(profile=SURE, clock=clock) as emulator:
        yield emulator


@pytest.fixture
def intl(emu: Emulator) -> AccountInfo:
    return emu.add_account("global_co", site="intl")


def config(
    emu: Emulator, account: AccountInfo, *, algorithm: str | None = None, port: str | None = None
) -> openapi_models.Config:
    """A Config for `account` on its own site's port (or `port`: "cn" / "intl")."""
    site = port or account.site
    endpoint = emu.info.intl_pop_endpoint if site == "intl" else emu.info.pop_endpoint
    cfg = pop_config(emu.info, endpoint=endpoint, signature_algorithm=algorithm)
    cfg.access_key_id, cfg.access_key_secret = account.access_key_id, account.access_key_secret
    cfg.region_id = "ap-southeast-1" if site == "intl" else "cn-hangzhou"
    return cfg


def globe(emu: Emulator, account: AccountInfo, **options: Any) -> GlobeClient:
    return GlobeClient(config(emu, account, **options))


def send(client: GlobeClient, to: str = HK, **extra: Any) -> Any:
    request = globe_models.SendMessageToGlobeRequest(to=to, message="Your code is 1234", **extra)
    return client.send_message_to_globe(request).body


def query(client: GlobeClient, message_id: str) -> Any:
    return client.query_message(globe_models.QueryMessageRequest(message_id=message_id)).body


def account_of(emu: Emulator, site: str) -> AccountInfo:
    return emu.account() if site == "cn" else emu.add_account("global_co", site="intl")


@pytest.mark.parametrize("algorithm", [None, "v2"])
@pytest.mark.parametrize("site", ["cn", "intl"])
def test_send_and_query_on_both_sites(emu: Emulator, site: str, algorithm: str | None) -> None:
    account = account_of(emu, site)
    client = globe(emu, account, algorithm=algorithm)
    body = send(client, from_="Receiptd", task_id="task-7")
    assert (body.response_code, body.response_description) == (
        "OK",
        "The SMS Send Request was accepted",
    )
    assert re.fullmatch(r"\d{14,20}", body.message_id)
    assert (body.to, body.from_, body.segments) == (HK, "Receiptd", "1")
    detail = body.number_detail
    assert (detail.country, detail.region, detail.carrier) == ("China", "HongKong", "CMI")
    assert body.request_id
    answer = query(client, body.message_id)
    assert (answer.response_code, answer.status, answer.error_code) == ("OK", "1", "DELIVERED")
    assert (answer.message, answer.message_id, answer.to) == (
        "Your code is 1234",
        body.message_id,
        HK,
    )
    for text in (answer.send_date, answer.receive_date):
        assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0800", text)
        assert abs(email.utils.parsedate_to_datetime(text).timestamp() - time.time()) < 60
    assert answer.number_detail.country == "China"
    (record,) = emu.globe_records(account.name)
    assert (record.message_id, record.site, record.status) == (body.message_id, site, "1")
    assert [c.account for c in emu.calls("SendMessageToGlobe")] == [account.name]
    assert [c.account for c in emu.calls("QueryMessage")] == [account.name]


def test_message_ids_are_unique(emu: Emulator, intl: AccountInfo, clock: ManualClock) -> None:
    client = globe(emu, intl)
    ids = {send(client).message_id for _ in range(20)}
    assert len(ids) == 20


@pytest.mark.parametrize("site", ["cn", "intl"])
@pytest.mark.parametrize("to", ["8613800138000", "13800138000", "+85212345678", "0085212345678"])
def test_mainland_and_malformed_numbers_refused(emu: Emulator, site: str, to: str) -> None:
    body = send(globe(emu, account_of(emu, site)), to=to)
    assert body.response_code == "MOBILE_NUMBER_ILLEGAL"
    assert body.message_id is None
    assert emu.globe_records(account_of_name(site)) == []


def account_of_name(site: str) -> str | None:
    return None if site == "cn" else "global_co"


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"type": "ALERT"}, "INVALID_PARAMETERS"),
        ({"validity_period": -1}, "INVALID_PARAMETERS"),
        ({"task_id": "t" * 256}, "PARAM_LENGTH_LIMIT"),
        ({"from_": "A-very-long-sender"}, "INVALID_SENDERID"),
    ],
)
def test_option_errors_are_business_errors(
    emu: Emulator, intl: AccountInfo, extra: dict[str, Any], code: str
) -> None:
    assert send(globe(emu, intl), **extra).response_code == code


def test_missing_required_parameter_is_a_gateway_error(emu: Emulator, intl: AccountInfo) -> None:
    with pytest.raises(TeaException) as error:
        globe(emu, intl).send_message_to_globe(globe_models.SendMessageToGlobeRequest(to=HK))
    assert (error.value.code, error.value.status_code) == ("MissingMessage", 400)
    with pytest.raises(TeaException) as missing_id:
        globe(emu, intl).query_message(globe_models.QueryMessageRequest())
    assert missing_id.value.code == "MissingMessageId"


def batch(client: GlobeClient, numbers: list[str], **extra: Any) -> Any:
    request = globe_models.BatchSendMessageToGlobeRequest(
        to=json.dumps(numbers), message=json.dumps([f"hello {n}" for n in numbers]), **extra
    )
    return client.batch_send_message_to_globe(request).body


def test_batch_send_partial_success_limits_and_qps(
    emu: Emulator, intl: AccountInfo, clock: ManualClock
) -> None:
    client = globe(emu, intl, algorithm="v2")
    body = batch(client, [HK, "8613800138000", SG], type="NOTIFY")
    assert (body.response_code, body.success_count) == ("OK", "2")
    assert json.loads(body.failed_list) == ["8613800138000"]
    ids = json.loads(body.message_id_list)
    assert len(ids) == 2 and all(re.fullmatch(r"\d{14,20}", i) for i in ids)
    assert {r.to for r in emu.globe_records("global_co")} == {HK, SG}
    # One call per second per account, on the provider's clock.
    assert batch(client, [HK]).response_code == "QPS_LIMIT_CONTROL"
    clock.advance(1.0)
    assert batch(client, [HK] * 1001).response_code == "MOBILE_COUNT_OVER_LIMIT"
    clock.advance(1.0)
    assert batch(client, [HK], type="OTP").response_code == "INVALID_PARAMETERS"
    clock.advance(1.0)
    request = globe_models.BatchSendMessageToGlobeRequest(to="not json", message="[]")
    assert client.batch_send_message_to_globe(request).body.response_code == "INVALID_JSON_PARAM"


def test_send_with_template_only_to_the_mainland(emu: Emulator, intl: AccountInfo) -> None:
    client = globe(emu, intl)

    def with_template(to: str, **extra: Any) -> Any:
        values = {
            "to": to,
            "from_": intl.sign_name,
            "template_code": intl.template_code,
            "template_param": '{"code":"8888"}',
        }
        values.update(extra)
        request = globe_models.SendMessageWithTemplateRequest(**values)
        return client.send_message_with_template(request).body

    body = with_template("8613800138000")
    assert (body.response_code, body.to, body.segments) == ("OK", "8613800138000", "1")
    assert body.number_detail.country == "China"
    (record,) = emu.globe_records("global_co")
    assert record.message == f"【{intl.sign_name}】您的验证码为：8888，请勿泄露于他人！"
    assert record.template_code == intl.template_code
    assert with_template(HK).response_code == "MOBILE_NUMBER_ILLEGAL"
    assert with_template("13800138000").response_code == "MOBILE_NUMBER_ILLEGAL"
    assert with_template("8613800138000", from_="nope").response_code == "SMS_SIGN_NAME_ILLEGAL"
    assert with_template("8613800138000", template_param="{}").response_code == (
        "CONTENT_MISSING_PARAMETERS"
    )


def test_intl_only_actions_are_unknown_on_the_china_site(emu: Emulator) -> None:
    client = globe(emu, emu.account())
    with pytest.raises(TeaException) as error:
        batch(client, [HK])
    assert (error.value.code, error.value.status_code) == ("InvalidAction.NotFound", 404)


def test_query_status_follows_the_outcome(emu: Emulator, intl: AccountInfo) -> None:
    now = dt.datetime.now(dt.UTC)
    seeds = [
        SeedGlobeSend(HK, outcome="expired", receipt="lost", receipt_delay=0),
        SeedGlobeSend(HK, outcome="failed", err_code="UNDELIV", receipt="lost", receipt_delay=0),
        SeedGlobeSend(HK, outcome="pending"),
        SeedGlobeSend(HK, receipt_delay=3600),
        SeedGlobeSend(HK, send_time=now - dt.timedelta(days=31), receipt_delay=0),
    ]
    expired, failed, pending, later, old = emu.seed_globe_sends(seeds, "global_co")
    client = globe(emu, intl)
    answers = {name: query(client, mid) for name, mid in [("expired", expired), ("failed", failed)]}
    assert (answers["expired"].status, answers["expired"].error_code) == ("2", "EXPIRED")
    assert (answers["failed"].status, answers["failed"].error_code) == ("2", "UNDELIV")
    for waiting in (pending, later):
        answer = query(client, waiting)
        assert (answer.status, answer.error_code, answer.receive_date) == ("3", "", "")
    assert query(client, old).response_code == "DATA_NOT_EXIST"
    assert query(client, "10080303003003").response_code == "DATA_NOT_EXIST"
    # Another account's MessageId is no record for this one.
    other = emu.add_account("other_intl", site="intl")
    assert query(globe(emu, other), expired).response_code == "DATA_NOT_EXIST"


def test_qps_limits_on_the_providers_clock(
    emu: Emulator, intl: AccountInfo, clock: ManualClock
) -> None:
    emu.set_globe_qps("SendMessageToGlobe", 2)
    client = globe(emu, intl)
    assert [send(client).response_code for _ in range(3)] == ["OK", "OK", "QPS_LIMIT_CONTROL"]
    clock.advance(1.0)
    assert send(client).response_code == "OK"
    # Per account: the China-site account's allowance is its own.
    assert send(globe(emu, emu.account())).response_code == "OK"
    (refused,) = [c for c in emu.calls("SendMessageToGlobe") if c.outcome != "OK"]
    assert (refused.status, refused.outcome) == (200, "QPS_LIMIT_CONTROL")


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_keys_work_only_on_their_own_site(
    emu: Emulator, intl: AccountInfo, algorithm: str | None
) -> None:
    for account, port in ((intl, "cn"), (emu.account(), "intl")):
        client = GlobeClient(config(emu, account, algorithm=algorithm, port=port))
        with pytest.raises(TeaException) as error:
            send(client)
        assert error.value.code == "InvalidAccessKeyId.NotFound"
    wrong = config(emu, intl, algorithm=algorithm)
    wrong.access_key_secret = "wrong"
    with pytest.raises(TeaException) as mismatch:
        send(GlobeClient(wrong))
    assert mismatch.value.code == "SignatureDoesNotMatch"


def test_2017_actions_are_unknown_on_the_intl_site(emu: Emulator, intl: AccountInfo) -> None:
    from alibabacloud_dysmsapi20170525 import models as sms_models
    from alibabacloud_dysmsapi20170525.client import Client as DysmsClient

    client = DysmsClient(config(emu, intl))
    request = sms_models.SendSmsRequest(
        phone_numbers="13800138000", sign_name=intl.sign_name, template_code=intl.template_code
    )
    with pytest.raises(TeaException) as error:
        client.send_sms(request)
    assert (error.value.code, error.value.status_code) == ("InvalidAction.NotFound", 404)


# -- receipts through Dybaseapi tokens and aliyun-mns-sdk ----------------------------------


def token(emu: Emulator, account: AccountInfo, message_type: str, queue: str | None = None) -> Any:
    client = DybaseClient(config(emu, account))
    request = base_models.QueryTokenForMnsQueueRequest(message_type=message_type, queue_name=queue)
    body = client.query_token_for_mns_queue(request).body
    assert body.code == "OK", body.message
    return body.message_token_dto


@contextmanager
def token_queue(endpoint: str, dto: Any, name: str) -> Iterator[Queue]:
    account = Account(endpoint, dto.access_key_id, dto.access_key_secret, dto.security_token)
    queue = account.get_queue(name)
    queue.set_encoding(False)
    try:
        yield queue
    finally:
        account.mns_client.close_connection()


def bodies(queue: Queue) -> list[dict[str, Any]]:
    messages = queue.batch_receive_message(16, 1)
    queue.batch_delete_message([m.receipt_handle for m in messages])
    return [json.loads(base64.b64decode(m.message_body)) for m in messages]


def test_intl_receipt_read_with_an_intl_token(emu: Emulator, intl: AccountInfo) -> None:
    body = send(globe(emu, intl), task_id="t-1")
    dto = token(emu, intl, "SmsReport")  # the intl demo sends no QueueName
    # The zone of the international site's token times is undocumented: UTC here, so only
    # ExpireTime - CreateTime tells the lifetime; read as Shanghai time it is 8 h off.
    created = dt.datetime.strptime(dto.create_time, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
    expires = dt.datetime.strptime(dto.expire_time, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
    assert abs((created - dt.datetime.now(dt.UTC)).total_seconds()) < 60
    assert (expires - created).total_seconds() == emu.token_lifetime
    with token_queue(emu.info.intl_endpoint, dto, intl.report_queue) as queue:
        (receipt,) = bodies(queue)
    assert receipt == {
        "To": HK,
        "Status": "1",
        "MessageId": body.message_id,
        "TaskId": "t-1",
        "SmsSize": "1",
        "SendDate": receipt["SendDate"],
        "ReceiveDate": receipt["ReceiveDate"],
        "ErrorCode": "success",
        "ErrorDescription": "success",
    }
    assert receipt["SendDate"].endswith(" +0800")
    assert emu.info.intl_mns_owner_uid == "1493622401794734"


def test_intl_token_with_the_2018_version_via_call_api(emu: Emulator, intl: AccountInfo) -> None:
    client = OpenApiClient(config(emu, intl))
    params = openapi_models.Params(
        action="QueryTokenForMnsQueue",
        version="2018-05-01",
        protocol="HTTP",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    request = openapi_models.OpenApiRequest(query={"MessageType": "SmsReport"})
    answer = client.call_api(params, request, util_models.RuntimeOptions())
    dto = answer["body"]["MessageTokenDTO"]
    assert answer["body"]["Code"] == "OK"
    assert dto["AccessKeyId"].startswith("STS.")


def test_intl_token_types_and_queue_names(emu: Emulator, intl: AccountInfo) -> None:
    client = DybaseClient(config(emu, intl))
    for message_type, queue in (
        ("GlobeSmsReport", None),
        ("SmsReport", "Alicom-Queue-1-SmsReport"),
    ):
        request = base_models.QueryTokenForMnsQueueRequest(
            message_type=message_type, queue_name=queue
        )
        assert client.query_token_for_mns_queue(request).body.code == "isv.INVALID_PARAMETERS"


def test_globe_sms_report_on_the_china_site(emu: Emulator) -> None:
    default = emu.account()
    assert default.globe_queue == f"Alicom-Queue-{default.uid}-GlobeSmsReport"
    body = send(globe(emu, default))
    dto = token(emu, default, "GlobeSmsReport", default.globe_queue)
    with token_queue(emu.info.mns_endpoint, dto, default.globe_queue) as queue:
        (receipt,) = bodies(queue)
    assert receipt == {
        "to": HK,
        "status": "1",
        "message_id": body.message_id,
        "send_date": receipt["send_date"],
        "receive_date": receipt["receive_date"],
        "error_code": "DELIVERED",
        "error_description": "用户接收成功",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", receipt["receive_date"])
    assert emu.queue_depth("report") == {"visible": 0, "inflight": 0, "delayed": 0}
