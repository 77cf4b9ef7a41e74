"""QueryTokenForMnsQueue through alibabacloud-dybaseapi20170525."""

from __future__ import annotations

import datetime as dt

import pytest
from alibabacloud_dybaseapi20170525 import models as base_models
from alibabacloud_dybaseapi20170525.client import Client as DybaseClient
from Tea.exceptions import TeaException

from receiptd_emulator import Emulator, EmulatorInfo

from .conftest import pop_config, query_token


def cst(text: str) -> dt.datetime:
    """`yyyy-MM-dd HH:mm:ss` as printed by Alibaba: Asia/Shanghai wall time."""
    return dt.datetime.strptime(text + " +0800", "%Y-%m-%d %H:%M:%S %z")


def test_token_fields_and_shanghai_times(dybase: DybaseClient, info: EmulatorInfo) -> None:
    token = query_token(dybase, "SmsReport", info.report_queue)
    assert token.access_key_id.startswith("STS.")
    assert token.access_key_secret and token.security_token
    created = cst(token.create_time)
    expires = cst(token.expire_time)
    assert expires - created == dt.timedelta(seconds=info.token_lifetime)
    # Printed in China time, not UTC: read as CST it is "now" (within a generous minute).
    assert abs((created - dt.datetime.now(dt.UTC)).total_seconds()) < 60


def test_token_lifetime_is_configurable() -> None:
    with Emulator(token_lifetime=90) as emu:
        token = query_token(DybaseClient(pop_config(emu.info)))
        created = cst(token.create_time)
        expires = cst(token.expire_time)
        assert (expires - created).total_seconds() == 90


def test_queue_name_is_optional_and_checked(dybase: DybaseClient) -> None:
    assert query_token(dybase, "SmsUp").access_key_id.startswith("STS.")
    request = base_models.QueryTokenForMnsQueueRequest(
        message_type="SmsReport", queue_name="Alicom-Queue-1-SmsReport"
    )
    assert dybase.query_token_for_mns_queue(request).body.code == "isv.INVALID_PARAMETERS"


def test_message_type_required_and_validated(dybase: DybaseClient) -> None:
    with pytest.raises(TeaException) as missing:
        dybase.query_token_for_mns_queue(base_models.QueryTokenForMnsQueueRequest())
    assert (missing.value.code, missing.value.status_code) == ("MissingMessageType", 400)
    request = base_models.QueryTokenForMnsQueueRequest(message_type="VoiceReport")
    assert dybase.query_token_for_mns_queue(request).body.code == "isv.INVALID_PARAMETERS"


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_token_with_both_signatures_and_wrong_secret(
    info: EmulatorInfo, algorithm: str | None
) -> None:
    good = DybaseClient(pop_config(info, signature_algorithm=algorithm))
    assert query_token(good).security_token
    bad = DybaseClient(pop_config(info, access_key_secret="nope", signature_algorithm=algorithm))
    with pytest.raises(TeaException) as error:
        query_token(bad)
    assert error.value.code == "SignatureDoesNotMatch"


def test_sts_key_cannot_call_pop_apis(emu: Emulator, info: EmulatorInfo) -> None:
    token = emu.issue_token()
    client = DybaseClient(
        pop_config(
            info, access_key_id=token.access_key_id, access_key_secret=token.access_key_secret
        )
    )
    with pytest.raises(TeaException) as error:
        query_token(client)
    assert error.value.code == "InvalidAccessKeyId.NotFound"
