"""The 2018-05-01 handlers without sockets: per-account limits counted on the provider's
clock, which actions each site serves, and the versions the gateway routes on."""

from __future__ import annotations

from receiptd_emulator.clock import ManualClock
from receiptd_emulator.credentials import Credential, CredentialStore, KeyKind
from receiptd_emulator.delivery import Courier
from receiptd_emulator.faults import QpsLimiter
from receiptd_emulator.globe import Globe
from receiptd_emulator.globe_provider import GlobeProvider
from receiptd_emulator.mns import MnsService
from receiptd_emulator.pop import PopCall, PopGateway
from receiptd_emulator.pop_signing import PopVerifier
from receiptd_emulator.profiles import DEFAULT_GLOBE_QPS, Profile
from receiptd_emulator.scheduler import Scheduler


def handlers(site: str = "intl") -> tuple[PopGateway, ManualClock, dict[str, GlobeProvider]]:
    clock = ManualClock(1_700_000_000.0)
    mns = MnsService(CredentialStore())
    limiter = QpsLimiter(clock)
    for api, qps in DEFAULT_GLOBE_QPS.items():
        limiter.set_limit(api, qps)
    providers = {
        name: GlobeProvider(Profile(), site, Courier(mns, Scheduler(clock), clock), "q", clock)
        for name in ("a", "b")
    }
    gateway = PopGateway(PopVerifier(CredentialStore()))
    Globe(site, lambda cred: providers[cred.account], limiter, clock).register(gateway)
    return gateway, clock, providers


def call(gateway: PopGateway, action: str, account: str = "a", **params: str) -> dict[str, object]:
    versions = gateway._actions[action]
    _, handler = versions["2018-05-01"]
    key = Credential("k" + account, "s", KeyKind.ACCOUNT, account=account)
    return handler(PopCall(action, params, key))


def test_send_limit_per_account_on_the_clock() -> None:
    gateway, clock, _ = handlers()
    codes = [
        call(gateway, "SendMessageToGlobe", To="85212345678", Message="m")["ResponseCode"]
        for _ in range(2001)
    ]
    assert codes.count("OK") == 2000 and codes[-1] == "QPS_LIMIT_CONTROL"
    assert (
        call(gateway, "SendMessageToGlobe", "b", To="85212345678", Message="m")["ResponseCode"]
        == "OK"
    )
    clock.advance(0.01)  # 20 calls' worth of allowance comes back
    assert (
        call(gateway, "SendMessageToGlobe", To="85212345678", Message="m")["ResponseCode"] == "OK"
    )


def test_query_limit_is_300_per_second() -> None:
    gateway, clock, _ = handlers()
    codes = [call(gateway, "QueryMessage", MessageId="1")["ResponseCode"] for _ in range(301)]
    assert codes.count("DATA_NOT_EXIST") == 300 and codes[-1] == "QPS_LIMIT_CONTROL"
    clock.advance(1.0)
    assert call(gateway, "QueryMessage", MessageId="1")["ResponseCode"] == "DATA_NOT_EXIST"


def test_sites_serve_their_actions() -> None:
    intl, _, _ = handlers("intl")
    cn, _, _ = handlers("cn")
    assert set(intl._actions) == {
        "SendMessageToGlobe",
        "QueryMessage",
        "BatchSendMessageToGlobe",
        "SendMessageWithTemplate",
    }
    assert set(cn._actions) == {"SendMessageToGlobe", "QueryMessage"}
    assert all(set(v) == {"2018-05-01"} for v in intl._actions.values())


def test_a_send_answers_response_code_and_records_the_truth() -> None:
    gateway, _, providers = handlers()
    answer = call(gateway, "SendMessageToGlobe", To="6591234567", Message="m", TaskId="t")
    assert "Code" not in answer
    assert answer["ResponseCode"] == "OK"
    (record,) = providers["a"].records.snapshot()
    assert (record.message_id, record.task_id, record.to) == (
        answer["MessageId"],
        "t",
        "6591234567",
    )
    assert providers["b"].records.snapshot() == []
