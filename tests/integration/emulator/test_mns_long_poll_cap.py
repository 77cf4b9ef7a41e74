"""The MNS long-poll cap through the real aliyun-mns-sdk, and receiptd's adapter cutting an idle
long poll short on stop."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Queue

from receiptd import ports
from receiptd.providers.aliyun import credentials, mns
from receiptd_emulator import Emulator, EmulatorInfo
from receiptd_emulator.profiles import Profile


def owner_queue(info: EmulatorInfo, name: str) -> tuple[Account, Queue]:
    account = Account(
        info.mns_endpoint, info.mns_owner_access_key_id, info.mns_owner_access_key_secret
    )
    queue = account.get_queue(name)
    queue.set_encoding(False)
    return account, queue


def error_code(call: Callable[[], object]) -> str:
    with pytest.raises(MNSServerException) as raised:
        call()
    return str(raised.value.type)


@pytest.fixture
def capped() -> Iterator[Emulator]:
    profile = Profile.load("default").with_overrides(long_polls_per_queue=1)
    with Emulator(profile=profile) as emulator:
        yield emulator


def test_past_the_cap_a_long_poll_is_answered_at_once_and_frees_on_return(
    capped: Emulator,
) -> None:
    info = capped.info
    holder_account, holder = owner_queue(info, info.report_queue)
    other_account, other = owner_queue(info, info.report_queue)
    got: list[bytes | str] = []
    thread = threading.Thread(target=lambda: got.append(holder.receive_message(10).message_body))
    thread.start()
    assert capped.wait_long_polls("report", holding=1)

    started = time.monotonic()
    assert error_code(lambda: other.receive_message(wait_seconds=10)) == "MessageNotExist"
    assert time.monotonic() - started < 5  # answered at once, not held for its 10 s
    capped.enqueue("report", "visible now")
    thread.join(5)
    assert got == ["visible now"]  # the held long poll returned with it, freeing its slot
    capped.enqueue("report", "second")
    assert other.batch_receive_message(16, 10)[0].message_body == "second"
    stats = capped.long_polls()
    assert (stats["refused"], stats["held"], stats["peak"][info.report_queue]) == (1, 2, 1)
    # The other queue has its own slots.
    capped.enqueue("up", "reply")
    up_account, up = owner_queue(info, info.up_queue)
    assert up.receive_message(wait_seconds=5).message_body == "reply"
    up_account.mns_client.close_connection()
    holder_account.mns_client.close_connection()
    other_account.mns_client.close_connection()


def test_cap_per_access_key_and_control_api(capped: Emulator) -> None:
    control = capped.info.control_endpoint

    def post(path: str, body: dict[str, int]) -> dict[str, object]:
        request = urllib.request.Request(  # noqa: S310 - the local emulator
            f"{control}/{path}", json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - local
            return dict(json.loads(response.read()))

    stats = post("long_polls", {"per_queue": 0, "per_key": 1})
    assert (stats["per_queue"], stats["per_key"]) == (0, 1)
    token = capped.issue_token("SmsReport")

    def sts_account() -> Account:
        info = capped.info
        return Account(
            info.mns_endpoint, token.access_key_id, token.access_key_secret, token.security_token
        )

    a, b = sts_account(), sts_account()
    queue = a.get_queue(capped.info.report_queue)
    queue.set_encoding(False)
    held: list[str] = []
    # Held until the message at the end, however slow the machine: the cap stays taken.
    holder = threading.Thread(target=lambda: held.append(queue.receive_message(30).message_body))
    holder.start()
    assert capped.wait_long_polls("report", holding=1)
    # Same key, another connection: refused; the owner key is another user: held.
    same_key = b.get_queue(capped.info.report_queue)
    assert error_code(lambda: same_key.receive_message(wait_seconds=3)) == "MessageNotExist"
    assert capped.long_polls()["refused"] == 1
    owner_account, owner = owner_queue(capped.info, capped.info.report_queue)
    assert error_code(lambda: owner.receive_message(wait_seconds=1)) == "MessageNotExist"
    assert capped.long_polls()["refused"] == 1
    owner_account.mns_client.close_connection()
    capped.enqueue("report", "release")
    holder.join(10)
    assert held == ["release"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        post("long_polls", {"per_queue": -1})
    refused.value.close()  # it holds the answer's connection open
    post("long_polls", {})
    assert capped.long_polls()["per_key"] == 0
    a.mns_client.close_connection()
    b.mns_client.close_connection()


def test_adapter_abort_ends_an_idle_long_poll_without_a_second_one(capped: Emulator) -> None:
    info = capped.info
    token = capped.issue_token("SmsReport")
    creds = credentials.StaticCredentials(
        credentials.MnsCredentials(
            token.access_key_id, token.access_key_secret, token.security_token
        )
    )
    adapter = mns.MnsReceiptQueue(info.mns_endpoint, info.report_queue, creds, 45.0)
    assert adapter.receive(16, 0) == []  # connects
    outcome: list[object] = []

    def poll() -> None:
        try:
            outcome.append(adapter.receive(16, 30))
        except ports.QueueError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=poll)
    started = time.monotonic()
    thread.start()
    assert capped.wait_long_polls("report", holding=1)
    adapter.abort()
    thread.join(20)
    assert time.monotonic() - started < 20  # cut short: not the 30 s the poll asked for
    assert isinstance(outcome[0], ports.QueueError)
    # The SDK's one resend after a dropped connection did not open a second long poll.
    assert capped.long_polls()["held"] == 1
    with pytest.raises(ports.QueueError):
        adapter.receive(16, 30)
    adapter.close()
