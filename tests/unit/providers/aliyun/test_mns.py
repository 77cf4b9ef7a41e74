"""Every MNS call is bounded: a server that accepts and never answers cannot hang a consumer.

The SDK sets no socket timeout over https; receiptd puts one on the connection it holds.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from receiptd import ports
from receiptd.providers.aliyun.credentials import MnsCredentials, StaticCredentials
from receiptd.providers.aliyun.mns import MnsReceiptQueue


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A TCP server that accepts connections and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("scheme", ["https", "http"])
def test_receive_from_a_silent_server_fails_instead_of_hanging(
    black_hole: int, scheme: str
) -> None:
    creds = StaticCredentials(MnsCredentials("AKID", "secret"))
    queue = MnsReceiptQueue(f"{scheme}://127.0.0.1:{black_hole}", "q", creds, socket_timeout=1.0)
    try:
        with pytest.raises(ports.QueueError, match="q: "):
            queue.receive(16, 0)
    finally:
        queue.close()
