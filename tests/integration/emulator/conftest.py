"""Fixtures: a running emulator and the real, unmodified SDK clients pointed at it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
from alibabacloud_dybaseapi20170525 import models as base_models
from alibabacloud_dybaseapi20170525.client import Client as DybaseClient
from alibabacloud_dysmsapi20170525.client import Client as DysmsClient
from alibabacloud_tea_openapi import models as openapi_models
from mns.account import Account
from mns.queue import Queue

from receiptd_emulator import Emulator, EmulatorInfo

CST = dt.timezone(dt.timedelta(hours=8))


def today_cst() -> str:
    return dt.datetime.now(CST).strftime("%Y%m%d")


def china_day(clock: Callable[[], float], days: int = 0) -> str:
    """China's date ``days`` from today by ``clock`` (an emulator's), as SendDate spells it."""
    return (dt.datetime.fromtimestamp(clock(), CST) + dt.timedelta(days=days)).strftime("%Y%m%d")


def pop_config(info: EmulatorInfo, **overrides: object) -> openapi_models.Config:
    values: dict[str, object] = {
        "access_key_id": info.access_key_id,
        "access_key_secret": info.access_key_secret,
        "endpoint": info.pop_endpoint,  # host:port, no scheme
        "protocol": "http",
        "region_id": "cn-hangzhou",
    }
    values.update(overrides)
    return openapi_models.Config(**values)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(profile="default") as emulator:
        yield emulator


@pytest.fixture
def info(emu: Emulator) -> EmulatorInfo:
    return emu.info


@pytest.fixture
def sms(info: EmulatorInfo) -> DysmsClient:
    """Dysmsapi 4.x client, default ACS3-HMAC-SHA256 signature."""
    return DysmsClient(pop_config(info))


@pytest.fixture
def sms_v2(info: EmulatorInfo) -> DysmsClient:
    """Dysmsapi client using the older RPC `Signature=` (HMAC-SHA1) form."""
    return DysmsClient(pop_config(info, signature_algorithm="v2"))


@pytest.fixture
def dybase(info: EmulatorInfo) -> DybaseClient:
    return DybaseClient(pop_config(info))


def query_token(
    dybase: DybaseClient, message_type: str = "SmsReport", queue_name: str | None = None
) -> base_models.QueryTokenForMnsQueueResponseBodyMessageTokenDTO:
    request = base_models.QueryTokenForMnsQueueRequest(
        message_type=message_type, queue_name=queue_name
    )
    response = dybase.query_token_for_mns_queue(request)
    assert response.body.code == "OK", response.body.message
    return response.body.message_token_dto


@pytest.fixture
def report_queue(info: EmulatorInfo, dybase: DybaseClient) -> Iterator[Queue]:
    """The SmsReport queue read the way receiptd reads it: STS token, raw (undecoded) bodies."""
    token = query_token(dybase, "SmsReport", info.report_queue)
    account = Account(
        info.mns_endpoint, token.access_key_id, token.access_key_secret, token.security_token
    )
    queue = account.get_queue(info.report_queue)
    queue.set_encoding(False)
    yield queue
    account.mns_client.close_connection()


@pytest.fixture
def owner(info: EmulatorInfo) -> Iterator[Account]:
    """Alicom's own MNS account key: every operation, every queue."""
    account = Account(
        info.mns_endpoint, info.mns_owner_access_key_id, info.mns_owner_access_key_secret
    )
    yield account
    account.mns_client.close_connection()
