"""The Python API (receiptd.api): numbers, send then register, registration failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from receiptd import api, domain, ports
from receiptd.providers.aliyun import dysms
from receiptd.testing import InMemorySendStore

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


class FakeDysms:
    """A Dysmsapi client's ``send_sms`` as the SDK answers it: a response with a ``body``."""

    def __init__(self, code: str = "OK") -> None:
        self.code = code
        self.requests: list[Any] = []

    def send_sms(self, request: Any) -> Any:
        self.requests.append(request)
        body = SimpleNamespace(code=self.code, message="refused", biz_id="BIZ1", request_id="R1")
        return SimpleNamespace(body=body)


def send(
    client: FakeDysms, store: ports.SendStore, numbers: Any = "13800000001", **kw: Any
) -> api.SendResult:
    return api.send_and_register(client, store, numbers, "Sign", "SMS_1", clock=lambda: NOW, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "numbers"),
    [
        ("13800000001, 13800000002,,", ("13800000001", "13800000002")),
        (["13800000002", " 13800000001", "13800000002"], ("13800000002", "13800000001")),
    ],
)
def test_split_numbers_drops_blanks_and_repeats_and_keeps_order(
    given: Any, numbers: tuple[str, ...]
) -> None:
    assert api.split_numbers(given) == numbers


def test_split_numbers_needs_one_to_a_thousand_numbers() -> None:
    with pytest.raises(ValueError, match="at least one"):
        api.split_numbers(" , ")
    assert len(api.split_numbers([f"1380000{i:04d}" for i in range(1000)])) == 1000
    with pytest.raises(ValueError, match="at most 1,000"):
        api.split_numbers([f"1380000{i:04d}" for i in range(1001)])


def test_send_and_register_sends_once_and_registers_a_row_per_recipient() -> None:
    client, store = FakeDysms(), InMemorySendStore()
    result = send(
        client, store, "13800000001,+8613800000002", template_param={"code": "十二"}, out_id="o1"
    )
    assert result == api.SendResult("BIZ1", "R1", ("13800000001", "+8613800000002"), NOW, 2)
    (request,) = client.requests
    assert request.phone_numbers == "13800000001,+8613800000002"
    assert request.template_param == '{"code": "十二"}'  # JSON, not escaped
    rows = sorted(store.by_biz_id("BIZ1"), key=lambda r: r["phone_number"])
    assert [r["phone_number"] for r in rows] == ["13800000001", "13800000002"]
    assert {(r["status"], r["out_id"]) for r in rows} == {("pending", "o1")}


def test_a_template_param_string_is_passed_through() -> None:
    client = FakeDysms()
    send(client, InMemorySendStore(), template_param='{"a":1}')
    assert client.requests[0].template_param == '{"a":1}'


def test_a_refused_send_raises_dysms_error_and_registers_nothing() -> None:
    store = InMemorySendStore()
    with pytest.raises(dysms.DysmsError) as raised:
        send(FakeDysms(code="isv.MOBILE_NUMBER_ILLEGAL"), store)
    assert raised.value.code == "isv.MOBILE_NUMBER_ILLEGAL"
    assert store.rows == {}


def test_a_send_whose_row_cannot_be_written_says_what_to_register() -> None:
    store = InMemorySendStore()
    store.unavailable = True
    with pytest.raises(api.RegistrationFailed) as raised:
        send(FakeDysms(), store)
    assert raised.value.result == api.SendResult("BIZ1", "R1", ("13800000001",), NOW, 0)
    assert isinstance(raised.value.__cause__, ports.StoreUnavailable)


def test_register_send_is_idempotent_and_needs_an_aware_time() -> None:
    store = InMemorySendStore()
    kwargs: dict[str, Any] = {"biz_id": "T1", "phone_numbers": ["13800000001"], "now": NOW}
    sent = NOW - timedelta(minutes=1)
    assert api.register_send(store, sent_at=sent, provider=domain.Provider.HUAWEI, **kwargs) == 1
    assert api.register_send(store, sent_at=sent, provider=domain.Provider.HUAWEI, **kwargs) == 0
    (row,) = store.rows.values()
    assert row.send.provider is domain.Provider.HUAWEI
    with pytest.raises(ValueError, match="timezone-aware"):
        api.register_send(store, sent_at=datetime(2026, 11, 25, 8, 0), **kwargs)  # noqa: DTZ001


def test_a_send_is_registered_under_the_account_that_sent_it() -> None:
    store = InMemorySendStore()
    send(FakeDysms(), store, "13800000001,13800000002", account="brand_b")
    assert {r["account"] for r in store.by_biz_id("BIZ1")} == {"brand_b"}
    assert store.by_biz_id("BIZ1", account=domain.DEFAULT_ACCOUNT) == []


def test_register_send_takes_an_account_id_and_refuses_a_malformed_one() -> None:
    store = InMemorySendStore()
    kwargs: dict[str, Any] = {"biz_id": "T1", "phone_numbers": "13800000001", "sent_at": NOW}
    assert api.register_send(store, account="brand_b", **kwargs) == 1
    assert api.register_send(store, **kwargs) == 1  # the default account's: another send
    assert sorted(r["account"] for r in store.by_biz_id("T1")) == ["brand_b", "default"]
    with pytest.raises(ValueError, match="not an account id"):
        api.register_send(store, account="Brand B", **kwargs)


def test_send_sms_refuses_an_account_that_cannot_send_before_any_call() -> None:
    from receiptd import config

    settings = config.Settings(
        aliyun_access_key_id="ak",
        aliyun_access_key_secret="secret",
        accounts={
            "hw": {"provider": "huawei", "access_key_id": "k", "secret_access_key": "s",
                   "project_id": "p"},
        },
    )  # fmt: skip
    for name in ("hw", "nobody"):
        with pytest.raises(config.ConfigError, match=rf"unknown aliyun account '{name}'"):
            api.send_sms(settings, "13800000001", "Sign", "SMS_1", account=name)


class FakeGlobe:
    """A Dysmsapi 2018-05-01 client's ``send_message_to_globe``: per number, an answer code
    (``OK`` gives a MessageId) or an exception to raise (a transport failure)."""

    def __init__(self, outcomes: dict[str, str | Exception]) -> None:
        self.outcomes = outcomes
        self.sent: list[str] = []

    def send_message_to_globe(self, request: Any) -> Any:
        self.sent.append(request.to)
        outcome = self.outcomes[request.to]
        if isinstance(outcome, Exception):
            raise outcome
        body = SimpleNamespace(
            response_code=outcome,
            response_description="d",
            message_id=f"M{request.to}" if outcome == "OK" else None,
            to=request.to,
            segments="1",
            request_id="R",
        )
        return SimpleNamespace(body=body)


class NoLimit:
    def acquire(self) -> None:
        return None


def test_globe_sends_register_what_went_out_and_report_the_rest() -> None:
    client = FakeGlobe(
        {
            "85200000001": "OK",
            "85200000002": "MOBILE_NUMBER_ILLEGAL",  # refused: the next number still goes
            "85200000003": OSError("connection reset"),  # sent or not: unknown, never resent
            "85200000004": "OK",  # not attempted after an outage
        }
    )
    store = InMemorySendStore()
    numbers = ["+852 0000 0001", "85200000002", "85200000003", "85200000004"]
    result = api.globe_send_and_register(
        client,  # type: ignore[arg-type]
        store,
        numbers,
        api.GlobeMessage("hi", task_id="T"),
        NoLimit(),
        account="intl",
        clock=lambda: NOW,
    )
    assert client.sent == ["85200000001", "85200000002", "85200000003"]
    assert result.message_ids == ("M85200000001",) and result.registered == 1
    assert result.refused == (
        ("85200000002", "MOBILE_NUMBER_ILLEGAL"),
        ("85200000003", "Network (unknown)"),
        ("85200000004", "Network (not sent)"),
    )
    (row,) = store.rows.values()
    assert (row.send.matched_by, row.send.biz_id, row.send.phone_number, row.send.task_id) == (
        domain.SendKey.MESSAGE_ID,
        "M85200000001",
        "85200000001",
        "T",
    )
    assert row.send.account == "intl"


@pytest.mark.parametrize(
    ("text", "template", "sender", "reason"),
    [
        (None, None, None, "not both or neither"),
        ("hi", "SMS_1", "Sign", "not both or neither"),
        (None, "SMS_1", None, "approved signature"),
    ],
)
def test_a_globe_message_is_text_or_a_signed_template(
    text: str | None, template: str | None, sender: str | None, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        api.GlobeMessage(text, sender, template_code=template)


@pytest.mark.parametrize(
    ("numbers", "batchable"),
    [
        (["85200000001", "6580000001"], True),
        (["85200000001"], False),  # one number: SendMessageToGlobe
        (["85200000001", "8613812345678"], False),  # a mainland number would be in FailedList
        (["85200000001", "+86 138 1234 5678"], False),
        (["85200000001", "12025550123"], False),  # 11 digits from 1: it might be refused too
    ],
)
def test_a_batch_is_used_only_where_every_number_will_pair(
    numbers: list[str], batchable: bool
) -> None:
    assert api._batchable(numbers, api.GlobeMessage("hi")) is batchable
    assert api._batchable(numbers, api.GlobeMessage(None, "S", template_code="T")) is False
