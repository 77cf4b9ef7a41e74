"""The receipt-queue adapter over aliyun-mns-sdk (docs/consumer.md has the SDK's quirks).

One :class:`MnsReceiptQueue` owns one SDK ``Account`` and therefore one keep-alive HTTP
connection, which the SDK uses without a lock: build one adapter per thread (``receiptd.wiring``
builds a factory for exactly that). No SDK exception type leaves this module.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from mns.account import Account
from mns.mns_exception import MNSExceptionBase, MNSServerException

from receiptd import ports
from receiptd.providers.aliyun.credentials import CredentialSource, MnsCredentials

# Codes that mean "these credentials are refused": refresh the token, then retry.
AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidSecurityToken",
        "SecurityTokenExpired",
    }
)
# Batch-delete answers that mean "this handle is gone" rather than "the call failed".
_HANDLE_CODES = frozenset({"ReceiptHandleError", "MessageNotExist"})


class MnsReceiptQueue:
    """ReceiptQueue over one MNS queue; not thread-safe (one instance per thread)."""

    def __init__(
        self,
        endpoint: str,
        queue_name: str,
        credentials: CredentialSource,
        socket_timeout: float,
    ) -> None:
        self._endpoint = endpoint
        self._queue_name = queue_name
        self._source = credentials
        self._timeout = socket_timeout
        self._account: Any = None
        self._queue: Any = None
        self._creds: MnsCredentials | None = None
        self._aborted = False

    @property
    def name(self) -> str:
        return self._queue_name

    def receive(self, max_messages: int, wait_seconds: int) -> list[ports.QueueMessage]:
        if self._aborted:
            raise ports.QueueError(f"{self._queue_name}: receive aborted (stopping)")
        queue = self._sdk_queue()
        try:
            messages = queue.batch_receive_message(max_messages, wait_seconds)
        except MNSServerException as exc:
            if exc.type == "MessageNotExist":
                return []
            raise self._translate(exc) from exc
        except MNSExceptionBase as exc:
            raise self._translate(exc) from exc
        return [_message(m) for m in messages]

    def delete(self, receipt_handles: Sequence[str]) -> list[ports.DeleteFailure]:
        if not receipt_handles:
            return []
        queue = self._sdk_queue()
        try:
            queue.batch_delete_message(list(receipt_handles))
        except MNSServerException as exc:
            if exc.sub_errors:
                return [_delete_failure(e) for e in exc.sub_errors]
            if exc.type in _HANDLE_CODES:
                return [ports.DeleteFailure(h, exc.type, exc.message) for h in receipt_handles]
            raise self._translate(exc) from exc
        except MNSExceptionBase as exc:
            raise self._translate(exc) from exc
        return []

    def abort(self) -> None:
        """Shut the socket of a receive under way (from the stopping thread).

        The SDK resends a request once when the connection drops before an answer (its
        keep-alive recovery), which would open a new long poll: the connection is first
        made unable to reconnect.
        """
        self._aborted = True
        account = self._account
        if account is None:
            return
        conn = account.mns_client.http.conn
        conn.connect = _refuse_connect
        sock = conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: the receive has ended
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._account is not None:
            self._account.mns_client.close_connection()
        self._account = self._queue = self._creds = None

    # --- internals ---------------------------------------------------------------------

    def _sdk_queue(self) -> Any:
        """The SDK queue for the current credentials; a new token means a new Account."""
        creds = self._source.current()
        if creds != self._creds or self._queue is None:
            self.close()
            self._account = _account(self._endpoint, creds, self._timeout)
            queue = self._account.get_queue(self._queue_name)
            queue.set_encoding(False)  # bodies are decoded by receiptd.domain, one by one
            self._queue, self._creds = queue, creds
        return self._queue

    def _translate(self, exc: MNSExceptionBase) -> ports.QueueError:
        code = str(exc.type)
        text = f"{self._queue_name}: {code}: {exc.message}"
        if isinstance(exc, MNSServerException):
            if code in AUTH_CODES:
                if self._creds is not None:
                    self._source.invalidate(self._creds)
                self.close()
                return ports.QueueAuthError(text)
            if code == "QueueNotExist":
                return ports.QueueNotFound(text)
        return ports.QueueError(text)


def _refuse_connect() -> None:
    raise OSError("connection aborted: the consumer is stopping")


def _account(endpoint: str, creds: MnsCredentials, socket_timeout: float) -> Any:
    """An Account whose connection can never block longer than ``socket_timeout``.

    ``logger=None`` keeps the SDK from creating its default log file inside the package.
    Over http the SDK's own connection timeout covers connect and reads; over https the SDK
    sets none, so the timeout goes on the http.client connection it holds (used by its
    ``connect()`` through ``socket.create_connection``). A reconnect reuses both.
    """
    account = Account(
        endpoint,
        creds.access_key_id,
        creds.access_key_secret,
        creds.security_token,
        logger=None,
    )
    client = account.mns_client
    client.set_connection_timeout(socket_timeout)  # http: rebuilds the connection
    client.http.conn.timeout = socket_timeout  # https: http.client honours .timeout
    return account


def _message(m: Any) -> ports.QueueMessage:
    enqueued = None
    if m.enqueue_time:
        enqueued = datetime.fromtimestamp(int(m.enqueue_time) / 1000, UTC)
    return ports.QueueMessage(
        message_id=m.message_id,
        receipt_handle=m.receipt_handle,
        body=m.message_body,
        dequeue_count=int(m.dequeue_count),
        enqueued_at=enqueued,
    )


def _delete_failure(error: dict[str, str]) -> ports.DeleteFailure:
    return ports.DeleteFailure(
        error.get("ReceiptHandle", ""), error.get("ErrorCode", ""), error.get("ErrorMessage", "")
    )
