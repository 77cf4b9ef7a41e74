"""MNS queue operations through the real aliyun-mns-sdk 1.3.0 over real sockets."""

from __future__ import annotations

import base64
import hashlib
import threading
import warnings

import pytest
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.mns_request import SendMessageRequest, SendMessageResponse
from mns.queue import Message, Queue, QueueMeta

from receiptd_emulator import Emulator, EmulatorInfo


@pytest.fixture
def queue(owner: Account) -> Queue:
    q = owner.get_queue("work-queue")
    q.create(QueueMeta())
    q.set_encoding(False)
    return q


def counts(q: Queue) -> tuple[int, int, int]:
    """(active, inactive, delayed) from GetQueueAttributes through the SDK.

    The SDK marks these three attributes deprecated; the warning is expected here.
    """
    attributes = q.get_attributes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return (
            attributes.active_messages,
            attributes.inactive_messages,
            attributes.delay_messages,
        )


def send(q: Queue, *bodies: str) -> None:
    for body in bodies:
        q.send_message(Message(body))


def test_send_receive_delete_single(queue: Queue) -> None:
    sent = queue.send_message(Message("hello <x> & ü"))
    assert (
        sent.message_body_md5
        == hashlib.md5("hello <x> & ü".encode(), usedforsecurity=False).hexdigest().upper()
    )
    got = queue.receive_message(wait_seconds=1)
    assert got.message_id == sent.message_id
    assert got.message_body == "hello <x> & ü"
    assert got.dequeue_count == 1
    assert got.enqueue_time <= got.first_dequeue_time < got.next_visible_time
    assert got.priority == 8
    queue.delete_message(got.receipt_handle)
    with pytest.raises(MNSServerException) as empty:
        queue.receive_message(wait_seconds=0)
    assert empty.value.type == "MessageNotExist"


def test_sdk_base64_encoding_round_trip(owner: Account) -> None:
    q = owner.get_queue("encoded")
    q.create(QueueMeta())  # encoding on (the SDK default): bodies travel base64-encoded
    q.send_message(Message("中文 body"))
    assert q.receive_message(wait_seconds=1).message_body == "中文 body".encode()


def test_batch_send_receive_delete(queue: Queue) -> None:
    sent = queue.batch_send_message([Message(f"m{i}") for i in range(16)])
    assert len(sent) == 16
    got = queue.batch_receive_message(16, 1)
    assert sorted(m.message_body for m in got) == sorted(f"m{i}" for i in range(16))
    queue.batch_delete_message([m.receipt_handle for m in got])
    assert counts(queue) == (0, 0, 0)


def test_receipt_handles_are_base64_with_plus_slash_equals(queue: Queue) -> None:
    """Handles go unencoded into the query string; the emulator must parse the raw query."""
    send(queue, *[f"b{i}" for i in range(16)])
    got = queue.batch_receive_message(16, 1)
    handles = [m.receipt_handle for m in got]
    assert all(h.endswith("=") for h in handles)
    assert any("+" in h or "/" in h for h in handles)
    for handle in handles:  # single deletes put the raw handle in ?ReceiptHandle=
        queue.delete_message(handle)
    assert counts(queue) == (0, 0, 0)


def test_peek_does_not_change_state(queue: Queue) -> None:
    send(queue, "a", "b")
    assert queue.peek_message().message_body == "a"
    assert [m.message_body for m in queue.batch_peek_message(16)] == ["a", "b"]
    got = queue.receive_message(wait_seconds=0)
    assert got.dequeue_count == 1


def test_batch_limits_are_enforced(queue: Queue) -> None:
    send(queue, "a")
    for call in (
        lambda: queue.batch_receive_message(17, 1),
        lambda: queue.batch_receive_message(0, 1),
        lambda: queue.batch_receive_message(16, 31),
        lambda: queue.receive_message(wait_seconds=31),
        lambda: queue.batch_peek_message(17),
        lambda: queue.batch_send_message([Message("x")] * 17),
        lambda: queue.batch_delete_message(["h"] * 17),
    ):
        with pytest.raises(MNSServerException) as error:
            call()
        assert error.value.type == "InvalidArgument"


def test_body_larger_than_maximum_message_size_is_rejected(owner: Account) -> None:
    q = owner.get_queue("small")
    meta = QueueMeta()
    meta.set_maximum_message_size(1024)
    q.create(meta)
    q.set_encoding(False)
    q.send_message(Message("x" * 1024))
    with pytest.raises(MNSServerException) as error:
        q.send_message(Message("x" * 1025))
    assert error.value.type == "InvalidArgument"
    assert "1024" in error.value.message


def test_batch_delete_reports_stale_and_deleted_handles(queue: Queue) -> None:
    send(queue, "a", "b", "c")
    first = {m.message_body: m for m in queue.batch_receive_message(16, 1)}
    stale = first["a"].receipt_handle
    fresh = queue.change_message_visibility(stale, 30).receipt_handle
    queue.delete_message(first["b"].receipt_handle)
    with pytest.raises(MNSServerException) as error:
        queue.batch_delete_message(
            [stale, first["b"].receipt_handle, first["c"].receipt_handle, "garbage"]
        )
    codes = {e["ReceiptHandle"]: e["ErrorCode"] for e in error.value.sub_errors}
    assert codes == {
        stale: "ReceiptHandleError",  # superseded by ChangeMessageVisibility
        first["b"].receipt_handle: "MessageNotExist",  # already deleted
        "garbage": "ReceiptHandleError",
    }
    assert error.value.type == "ReceiptHandleError"
    # The valid handle in the same batch was deleted; the superseded one's message remains.
    assert counts(queue) == (0, 1, 0)
    queue.delete_message(fresh)


def test_change_visibility_issues_new_handle_and_invalidates_old(queue: Queue) -> None:
    send(queue, "a")
    got = queue.receive_message(wait_seconds=0)
    changed = queue.change_message_visibility(got.receipt_handle, 60)
    assert changed.receipt_handle != got.receipt_handle
    assert int(changed.next_visible_time) > got.next_visible_time
    with pytest.raises(MNSServerException) as error:
        queue.delete_message(got.receipt_handle)
    assert error.value.type == "ReceiptHandleError"
    queue.delete_message(changed.receipt_handle)


def test_visibility_timeout_redelivers_and_old_handle_dies(queue: Queue) -> None:
    send(queue, "a")
    first = queue.receive_message(wait_seconds=0)
    queue.change_message_visibility(first.receipt_handle, 1)
    again = queue.receive_message(wait_seconds=5)  # long poll returns when it reappears
    assert again.message_id == first.message_id
    assert again.dequeue_count == 2
    assert again.first_dequeue_time == first.first_dequeue_time
    with pytest.raises(MNSServerException) as error:
        queue.delete_message(first.receipt_handle)
    assert error.value.type == "ReceiptHandleError"
    queue.delete_message(again.receipt_handle)


def test_long_poll_returns_as_soon_as_a_message_arrives(queue: Queue, emu: Emulator) -> None:
    results: list[str] = []
    poller = threading.Thread(
        target=lambda: results.append(queue.receive_message(wait_seconds=30).message_body)
    )
    poller.start()
    assert emu.wait_long_polls("work-queue")  # the poll is waiting: the message comes after
    emu.enqueue("work-queue", "wake up")
    poller.join(timeout=15)  # far less than the 30 s wait: it must have returned early
    assert not poller.is_alive()
    assert results == ["wake up"]


def test_delayed_message_becomes_visible(queue: Queue) -> None:
    message = Message("later")
    message.set_delayseconds(1)
    queue.send_message(message)
    assert counts(queue) == (0, 0, 1)
    with pytest.raises(MNSServerException):
        queue.peek_message()
    assert queue.receive_message(wait_seconds=5).message_body == "later"


def test_queue_lifecycle(owner: Account, info: EmulatorInfo) -> None:
    q = owner.get_queue("lifecycle")
    meta = QueueMeta()
    meta.set_visibilitytimeout(60)
    url = q.create(meta)
    assert url == f"{info.mns_endpoint}/queues/lifecycle"
    assert q.create(meta) == url  # identical attributes: 204, still a Location
    other = QueueMeta()
    other.set_visibilitytimeout(61)
    with pytest.raises(MNSServerException) as error:
        q.create(other)
    assert error.value.type == "QueueAlreadyExist"
    attributes = q.get_attributes()
    assert (attributes.queue_name, attributes.visibility_timeout) == ("lifecycle", 60)
    assert attributes.maximum_message_size == 65536
    assert attributes.message_retention_period == 345600
    assert attributes.polling_wait_seconds == 0
    assert attributes.logging_enabled is False
    assert attributes.create_time > 0
    q.delete()
    with pytest.raises(MNSServerException) as gone:
        q.get_attributes()
    assert gone.value.type == "QueueNotExist"


def test_invalid_queue_attribute_is_rejected(owner: Account) -> None:
    meta = QueueMeta()
    meta.set_polling_wait_seconds(31)
    with pytest.raises(MNSServerException) as error:
        owner.get_queue("bad").create(meta)
    assert error.value.type == "InvalidArgument"


def test_alicom_queues_exist_with_default_attributes(owner: Account, info: EmulatorInfo) -> None:
    for name in (info.report_queue, info.up_queue):
        attributes = owner.get_queue(name).get_attributes()
        assert attributes.visibility_timeout == 30
    assert info.report_queue == "Alicom-Queue-1234567890-SmsReport"
    assert info.up_queue == "Alicom-Queue-1234567890-SmsUp"


def test_absolute_uri_request_line_is_accepted(emu: Emulator, info: EmulatorInfo) -> None:
    """The Alicom demo's MNS fork signs the path but sends `GET http://host/queues/...`."""
    token = emu.issue_token("SmsReport")
    emu.enqueue("report", base64.b64encode(b'{"a":1}').decode())
    account = Account(
        info.mns_endpoint, token.access_key_id, token.access_key_secret, token.security_token
    )
    http = account.mns_client.http
    original = http.send_request

    def absolute(request):  # type: ignore[no-untyped-def]
        request.uri = f"{info.mns_endpoint}{request.uri}"  # after signing, like the fork
        return original(request)

    http.send_request = absolute
    queue = account.get_queue(info.report_queue)
    got = queue.batch_receive_message(10, 1)
    assert [m.message_body for m in got] == [b'{"a":1}']
    queue.batch_delete_message([m.receipt_handle for m in got])
    account.mns_client.close_connection()
    assert emu.queue_depth("report") == {"visible": 0, "inflight": 0, "delayed": 0}


def test_every_response_carries_lowercase_request_id(owner: Account, info: EmulatorInfo) -> None:
    request = SendMessageRequest(info.report_queue, "eA==")
    response = SendMessageResponse()
    owner.mns_client.send_message(request, response)
    assert response.get_requestid()  # the SDK reads the exact lower-case header name
    with pytest.raises(MNSServerException) as error:
        owner.get_queue("missing").get_attributes()
    assert error.value.req_id
