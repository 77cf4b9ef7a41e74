"""Alibaba's legacy V1 Python SDKs against the emulator, as the provider's Python demo uses them:
``aliyunsdkcore`` with ``aliyun-python-sdk-dysmsapi`` / ``aliyun-python-sdk-dybaseapi``, and the
MNS copy bundled in the latter. Success and error paths: an error must surface as the SDK's own
exception with the service's code, never as a crash inside the SDK."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import AcsRequest
from aliyunsdkdybaseapi.mns.account import Account as BundledAccount
from aliyunsdkdybaseapi.mns.mns_exception import MNSServerException as BundledServerException
from aliyunsdkdybaseapi.request.v20170525.QueryTokenForMnsQueueRequest import (
    QueryTokenForMnsQueueRequest,
)
from aliyunsdkdysmsapi.request.v20170525.QuerySendDetailsRequest import QuerySendDetailsRequest
from aliyunsdkdysmsapi.request.v20170525.SendSmsRequest import SendSmsRequest

from receiptd_emulator import Emulator, EmulatorInfo
from receiptd_emulator.profiles import Profile

from .conftest import today_cst

PHONE = "13800000000"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    # Receipts at once, so the demo loop's first long poll finds one.
    profile = Profile.load("default").with_overrides(
        receipt_delay=(0.0, 0.0), delivered=1.0, failed=0.0
    )
    with Emulator(profile=profile) as emulator:
        yield emulator


def client(info: EmulatorInfo, secret: str | None = None, key: str | None = None) -> AcsClient:
    return AcsClient(
        key or info.access_key_id,
        secret or info.access_key_secret,
        "cn-hangzhou",
        auto_retry=False,
    )


def call(acs: AcsClient, info: EmulatorInfo, request: AcsRequest) -> dict[str, object]:
    request.set_endpoint(info.pop_endpoint)
    request.set_protocol_type("http")
    return dict(json.loads(acs.do_action_with_exception(request)))


def send_sms(info: EmulatorInfo, phone: str = PHONE) -> SendSmsRequest:
    request = SendSmsRequest()
    request.set_PhoneNumbers(phone)
    request.set_SignName(info.sign_name)
    request.set_TemplateCode(info.template_code)
    request.set_TemplateParam(json.dumps({"code": "1234"}))
    request.set_OutId("legacy-1")
    return request


def query_details(phone: str = PHONE, biz_id: str | None = None) -> QuerySendDetailsRequest:
    request = QuerySendDetailsRequest()
    request.set_PhoneNumber(phone)
    request.set_SendDate(today_cst())
    request.set_PageSize(10)
    request.set_CurrentPage(1)
    if biz_id:
        request.set_BizId(biz_id)
    return request


def token_request(info: EmulatorInfo, message_type: str = "SmsReport") -> AcsRequest:
    request = QueryTokenForMnsQueueRequest()
    request.set_MessageType(message_type)
    request.set_QueueName(info.queue_prefix + message_type)
    return request


def test_send_sms_and_query_send_details(emu: Emulator) -> None:
    info = emu.info
    acs = client(info)
    sent = call(acs, info, send_sms(info))
    assert sent["Code"] == "OK" and str(sent["BizId"]).endswith("^0")
    details = call(acs, info, query_details(biz_id=str(sent["BizId"])))
    assert details["Code"] == "OK" and details["TotalCount"] == 1
    [row] = details["SmsSendDetailDTOs"]["SmsSendDetailDTO"]  # type: ignore[index]
    assert row["PhoneNum"] == PHONE and row["OutId"] == "legacy-1"


@pytest.mark.parametrize(
    "request_for",
    [send_sms, lambda info: query_details(), token_request],
    ids=["SendSms", "QuerySendDetails", "QueryTokenForMnsQueue"],
)
def test_wrong_secret_is_a_server_exception_not_an_index_error(
    emu: Emulator, request_for: object
) -> None:
    info = emu.info
    with pytest.raises(ServerException) as raised:
        call(client(info, secret="not-the-secret"), info, request_for(info))  # type: ignore[operator]
    # The SDK found its own string to sign in the service's message: the secret is wrong.
    assert raised.value.get_error_code() == "InvalidAccessKeySecret"
    assert raised.value.get_http_status() == 400
    [recorded] = [c for c in emu.calls() if c.outcome == "SignatureDoesNotMatch"]
    assert recorded.status == 400


def test_unknown_key_business_error_and_throttling(emu: Emulator) -> None:
    info = emu.info
    with pytest.raises(ServerException) as unknown:
        call(client(info, key="LTAI5tNoSuchKey000000000"), info, send_sms(info))
    assert unknown.value.get_error_code() == "InvalidAccessKeyId.NotFound"
    # Business errors are HTTP 200 with a code: no exception, as with the current SDKs.
    illegal = call(client(info), info, send_sms(info, phone="12345"))
    assert illegal["Code"] == "isv.MOBILE_NUMBER_ILLEGAL"
    emu.set_qps_limit("QuerySendDetails", 1)
    codes = []
    for _ in range(4):
        try:
            codes.append(call(client(info), info, query_details())["Code"])
        except ServerException as error:
            codes.append(error.get_error_code())
    assert codes[0] == "OK" and "Throttling.User" in codes


def test_demo_loop_with_the_bundled_mns_client(emu: Emulator) -> None:
    """The provider's Python demo: token, batch receive (base64 bodies), JSON, batch delete."""
    info = emu.info
    acs = client(info)
    sent = call(acs, info, send_sms(info))
    token = call(acs, info, token_request(info))["MessageTokenDTO"]
    assert isinstance(token, dict)
    expires = datetime.strptime(str(token["ExpireTime"]), "%Y-%m-%d %H:%M:%S")  # noqa: DTZ007
    assert expires.year >= 2026  # Asia/Shanghai wall time, as the demo parses it
    account = BundledAccount(
        info.mns_endpoint, token["AccessKeyId"], token["AccessKeySecret"], token["SecurityToken"]
    )
    queue = account.get_queue(info.report_queue)
    try:
        [message] = queue.batch_receive_message(10, 3)
        receipt = json.loads(message.message_body)  # the SDK base64-decoded it (bytes)
        assert receipt["biz_id"] == sent["BizId"] and receipt["success"] is True
        queue.batch_delete_message([message.receipt_handle])
        assert emu.queue_depth("report") == {"visible": 0, "inflight": 0, "delayed": 0}

        # Error paths, as the demo reads them from e.type.
        started = time.monotonic()
        with pytest.raises(BundledServerException) as empty:
            queue.batch_receive_message(10, 1)
        assert empty.value.type == "MessageNotExist"
        assert time.monotonic() - started >= 0.9  # a real long poll, not a refusal
        with pytest.raises(BundledServerException) as stale:
            queue.batch_delete_message([message.receipt_handle])
        assert stale.value.type in ("MessageNotExist", "ReceiptHandleError")
        assert stale.value.sub_errors
        other = account.get_queue(info.up_queue)  # the token is for SmsReport only
        with pytest.raises(BundledServerException) as denied:
            other.batch_receive_message(10, 0)
        assert denied.value.type == "AccessDenied"
        emu.expire_tokens()
        with pytest.raises(BundledServerException) as expired:
            queue.batch_receive_message(10, 0)
        assert expired.value.type == "SecurityTokenExpired"
    finally:
        account.mns_client.close_connection()


def test_bundled_mns_client_with_a_wrong_secret(emu: Emulator) -> None:
    info = emu.info
    token = emu.issue_token("SmsReport")
    account = BundledAccount(
        info.mns_endpoint, token.access_key_id, "wrong-secret", token.security_token
    )
    try:
        with pytest.raises(BundledServerException) as raised:
            account.get_queue(info.report_queue).batch_receive_message(10, 0)
        assert raised.value.type == "SignatureDoesNotMatch"
    finally:
        account.mns_client.close_connection()
