"""MNS authentication: HMAC-SHA1 signatures, STS tokens from QueryTokenForMnsQueue, clocks."""

from __future__ import annotations

import base64
import http.client
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from alibabacloud_dybaseapi20170525.client import Client as DybaseClient
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Message, Queue

from receiptd_emulator import Emulator, EmulatorInfo, ManualClock

from .conftest import query_token


@contextmanager
def sts_queue(
    info: EmulatorInfo, key_id: str, secret: str, token: str, queue: str | None = None
) -> Iterator[Queue]:
    account = Account(info.mns_endpoint, key_id, secret, token)
    q = account.get_queue(queue or info.report_queue)
    q.set_encoding(False)
    try:
        yield q
    finally:
        account.mns_client.close_connection()


def error_type(call: object) -> str:
    with pytest.raises(MNSServerException) as error:
        call()  # type: ignore[operator]
    return str(error.value.type)


def test_token_from_dybase_reads_and_deletes(
    emu: Emulator, info: EmulatorInfo, dybase: DybaseClient
) -> None:
    emu.enqueue_report({"biz_id": "1^0"})
    token = query_token(dybase, "SmsReport", info.report_queue)
    assert token.access_key_id.startswith("STS.")
    with sts_queue(info, token.access_key_id, token.access_key_secret, token.security_token) as q:
        got = q.batch_receive_message(16, 1)
        assert len(got) == 1
        q.batch_delete_message([m.receipt_handle for m in got])
    assert any(c.access_key_id == token.access_key_id for c in emu.calls("MNS.BatchDeleteMessage"))


def test_sms_up_token_reads_only_its_own_queue(
    emu: Emulator, info: EmulatorInfo, dybase: DybaseClient
) -> None:
    emu.enqueue_up({"content": "退订"})
    token = query_token(dybase, "SmsUp")
    creds = (token.access_key_id, token.access_key_secret, token.security_token)
    with sts_queue(info, *creds, queue=info.up_queue) as q:
        assert len(q.batch_receive_message(16, 1)) == 1
    with sts_queue(info, *creds, queue=info.report_queue) as q:
        assert error_type(lambda: q.batch_receive_message(16, 0)) == "AccessDenied"


def test_sts_token_cannot_send(info: EmulatorInfo, dybase: DybaseClient) -> None:
    token = query_token(dybase)
    with sts_queue(info, token.access_key_id, token.access_key_secret, token.security_token) as q:
        assert error_type(lambda: q.send_message(Message("forged receipt"))) == "AccessDenied"


def test_expired_token_is_rejected(emu: Emulator, info: EmulatorInfo, dybase: DybaseClient) -> None:
    token = query_token(dybase)
    with sts_queue(info, token.access_key_id, token.access_key_secret, token.security_token) as q:
        with pytest.raises(MNSServerException) as empty:
            q.receive_message(wait_seconds=0)
        assert empty.value.type == "MessageNotExist"  # the token works...
        assert emu.expire_tokens() >= 1
        with pytest.raises(MNSServerException) as expired:
            q.receive_message(wait_seconds=0)
    assert expired.value.type == "SecurityTokenExpired"  # ...until it expires
    fresh = query_token(dybase)  # a new token works again
    with sts_queue(info, fresh.access_key_id, fresh.access_key_secret, fresh.security_token) as q:
        assert error_type(lambda: q.receive_message(wait_seconds=0)) == "MessageNotExist"


def test_token_expires_after_its_lifetime() -> None:
    """On a clock the test moves: valid for exactly its lifetime, expired from then on (on the
    real clock a loaded machine could spend the whole second before the first receive)."""
    clock = ManualClock(1_800_000_000.0)
    with Emulator(token_lifetime=1, clock=clock) as emu:
        token = emu.issue_token()
        assert token.expires_at - token.created_at == 1
        creds = (token.access_key_id, token.access_key_secret, token.security_token)
        with sts_queue(emu.info, *creds) as q:
            assert error_type(lambda: q.receive_message(wait_seconds=0)) == "MessageNotExist"
            clock.advance(0.5)
            assert error_type(lambda: q.receive_message(wait_seconds=0)) == "MessageNotExist"
            clock.advance(0.5)  # exactly ExpireTime: refused from this instant
            assert error_type(lambda: q.receive_message(wait_seconds=0)) == "SecurityTokenExpired"


def test_missing_or_wrong_security_token(info: EmulatorInfo, dybase: DybaseClient) -> None:
    token = query_token(dybase)
    with sts_queue(info, token.access_key_id, token.access_key_secret, "") as q:
        assert error_type(lambda: q.receive_message(wait_seconds=0)) == "InvalidSecurityToken"
    with sts_queue(info, token.access_key_id, token.access_key_secret, "CAISwrong") as q:
        assert error_type(lambda: q.receive_message(wait_seconds=0)) == "InvalidSecurityToken"


def test_wrong_secret_is_signature_mismatch(info: EmulatorInfo) -> None:
    with sts_queue(info, info.mns_owner_access_key_id, "not-the-secret", "") as q:
        assert error_type(lambda: q.receive_message(wait_seconds=0)) == "SignatureDoesNotMatch"


def test_unknown_and_customer_keys_are_invalid_in_alicom_account(info: EmulatorInfo) -> None:
    with sts_queue(info, "LTAI5tNoSuchKey000000000", "x", "") as q:
        assert error_type(lambda: q.receive_message(wait_seconds=0)) == "InvalidAccessKeyId"
    # The customer's own key lives in the customer's account, not in Alicom's MNS account.
    with sts_queue(info, info.access_key_id, info.access_key_secret, "") as q:
        assert error_type(lambda: q.receive_message(wait_seconds=0)) == "InvalidAccessKeyId"


def test_clock_skew_beyond_15_minutes_is_time_expired(
    info: EmulatorInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mns.mns_client

    skewed = time.gmtime(time.time() - 16 * 60)
    clock = types.SimpleNamespace(strftime=time.strftime, gmtime=lambda *_: skewed)
    monkeypatch.setattr(mns.mns_client, "time", clock)  # the SDK's Date header source
    with sts_queue(info, info.mns_owner_access_key_id, info.mns_owner_access_key_secret, "") as q:
        assert error_type(lambda: q.receive_message(wait_seconds=0)) == "TimeExpired"


def raw_request(info: EmulatorInfo, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
    connection = http.client.HTTPConnection(info.host, info.port, timeout=10)
    try:
        connection.request("GET", f"/queues/{info.report_queue}/messages", headers=headers)
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


def test_missing_headers_get_mns_errors(info: EmulatorInfo) -> None:
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    status, body, headers = raw_request(info, {"x-mns-version": "2015-06-06", "date": date})
    assert (status, b"<Code>MissingAuthorizationHeader</Code>" in body) == (400, True)
    assert "x-mns-request-id" in headers
    bad = {"Authorization": "MNS nocolon", "x-mns-version": "2015-06-06", "date": date}
    status, body, _ = raw_request(info, bad)
    assert (status, b"<Code>InvalidAuthorizationHeader</Code>" in body) == (400, True)
    signed = {
        "Authorization": "MNS a:" + base64.b64encode(b"x").decode(),
        "x-mns-version": "2015-06-06",
    }
    status, body, _ = raw_request(info, signed)
    assert (status, b"<Code>MissingDateHeader</Code>" in body) == (400, True)
