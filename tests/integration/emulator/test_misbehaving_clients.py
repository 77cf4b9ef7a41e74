"""The emulator's server threads against clients that misbehave (tests/peers.py): every
connection is its own thread, a torn request is never dispatched, and a long poll whose client
went away releases its slot and hands its message back after the visibility timeout."""

from __future__ import annotations

import socket
import threading

import pytest
from mns.account import Account
from mns.mns_exception import MNSExceptionBase
from mns.queue import Queue

from receiptd_emulator import Emulator, EmulatorInfo
from tests.peers import MISBEHAVIOURS, Act, MisbehavingClients, close


@pytest.mark.parametrize("act", MISBEHAVIOURS, ids=lambda a: a.value)
def test_a_misbehaving_client_gets_no_dispatch_and_others_are_served(
    emu: Emulator, info: EmulatorInfo, report_queue: Queue, act: Act
) -> None:
    emu.reset_calls()  # the fixture's token query
    with MisbehavingClients(emu.port, f"/queues/{info.report_queue}/messages") as clients:
        answer = clients.act(act)
        emu.enqueue_report({"biz_id": "1^0"})
        got = report_queue.batch_receive_message(16, 1)  # served beside the misbehaviour
    assert len(got) == 1
    apis = [c.api for c in emu.calls()]
    if act is Act.BAD_BODY:  # a whole request: the route answers it (unsigned: 400)
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert apis == ["MNS.SendMessage", "MNS.BatchReceiveMessage"]
        return
    # A torn request (half a body, a reset) is not a request: nothing but the SDK's call
    # reached a route (before the fix, half a POST body was dispatched as if whole).
    assert apis == ["MNS.BatchReceiveMessage"]
    if act is Act.GARBAGE:  # not a request line: a clean 400, then close
        assert answer.startswith(b"HTTP/1.1 400 ")


def test_an_over_long_request_line_is_refused(emu: Emulator) -> None:
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(b"GET /" + b"x" * 70_000 + b" HTTP/1.1\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 414 ")
    assert emu.calls() == []


def test_long_poll_of_a_vanished_client_frees_its_slot_and_its_message_comes_back(
    emu: Emulator, info: EmulatorInfo, report_queue: Queue
) -> None:
    emu.set_queue_attributes("report", visibility_timeout=1)
    account = Account(
        info.mns_endpoint, info.mns_owner_access_key_id, info.mns_owner_access_key_secret
    )
    queue = account.get_queue(info.report_queue)
    queue.set_encoding(False)
    failures: list[BaseException] = []

    def poll() -> None:
        try:
            queue.batch_receive_message(16, 30)
        except MNSExceptionBase as exc:  # the connection went away under it
            failures.append(exc)

    poller = threading.Thread(target=poll)
    poller.start()
    assert emu.wait_long_polls("report", holding=1)
    conn = account.mns_client.http.conn
    conn.connect = refuse  # the SDK would resend once on a dropped connection
    close(conn.sock)  # the client is gone, its long poll still held by the emulator
    poller.join(10)
    assert not poller.is_alive() and failures
    emu.enqueue_report({"biz_id": "2^0"})  # the abandoned poll takes it, answers nobody...
    assert emu.wait_long_polls("report", holding=0)  # ...and lets go of its slot
    assert emu.queue_depth("report")["inflight"] == 1
    again = report_queue.batch_receive_message(16, 10)  # back after the 1 s visibility
    assert [m.dequeue_count for m in again] == [2]


def refuse() -> None:
    raise OSError("this test's client is gone")
