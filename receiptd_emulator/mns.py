"""The MNS queue HTTP API (as aliyun-mns-sdk 1.3.0 speaks it): routing, auth, error answers.

The operations themselves live in `mns_ops`; queue semantics in `mns_queue`.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable

from receiptd_emulator import mns_ops, mns_xml
from receiptd_emulator.credentials import Credential, CredentialStore, KeyKind
from receiptd_emulator.faults import FaultKind
from receiptd_emulator.http_types import Request, Response
from receiptd_emulator.mns_long_polls import LongPollCap, LongPollRefused, LongPolls
from receiptd_emulator.mns_queue import MnsError, MnsQueue, QueueMeta, message_not_exist
from receiptd_emulator.router import Params, Route
from receiptd_emulator.signing import AuthError, MnsVerifier

#: What an STS token from QueryTokenForMnsQueue may do, on its own queue only.
STS_OPERATIONS = frozenset(
    {
        "ReceiveMessage",
        "BatchReceiveMessage",
        "PeekMessage",
        "BatchPeekMessage",
        "DeleteMessage",
        "BatchDeleteMessage",
        "ChangeMessageVisibility",
        "GetQueueAttributes",
    }
)
_ACCESS_DENIED = (
    "The OwnerId that your Access Key Id associated to is forbidden for this operation."
)


def queue_not_exist() -> MnsError:
    return MnsError(404, "QueueNotExist", "The queue name you provided is not exist.")


def operation(request: Request) -> tuple[str, str]:
    """(operation name, queue name) from method + path + query, as the MNS API routes them."""
    parts = request.path.split("/")  # "", "queues", name, "messages"
    if len(parts) == 3 and parts[2]:
        name = {"PUT": "CreateQueue", "GET": "GetQueueAttributes", "DELETE": "DeleteQueue"}
        op = name.get(request.method, "Unknown")
        if op == "CreateQueue" and "metaoverride" in request.raw_params():
            op = "SetQueueAttributes"
        return op, parts[2]
    if len(parts) == 4 and parts[2] and parts[3] == "messages":
        return _message_operation(request), parts[2]
    return "Unknown", ""


def _message_operation(request: Request) -> str:
    params = request.raw_params()
    batch = "numOfMessages" in params
    if request.method == "GET":
        if params.get("peekonly") == "true":
            return "BatchPeekMessage" if batch else "PeekMessage"
        return "BatchReceiveMessage" if batch else "ReceiveMessage"
    if request.method == "POST":
        return "BatchSendMessage" if b"<Messages" in request.body[:256] else "SendMessage"
    if request.method == "DELETE":
        return "DeleteMessage" if "ReceiptHandle" in params else "BatchDeleteMessage"
    if request.method == "PUT":
        return "ChangeMessageVisibility"
    return "Unknown"


class MnsService:
    """Alicom's MNS account: its queues and the HTTP entry point to them."""

    def __init__(
        self,
        store: CredentialStore,
        clock: Callable[[], float] = time.time,
        long_poll_cap: LongPollCap | None = None,
    ) -> None:
        self._clock = clock
        self.long_polls = LongPolls(long_poll_cap)
        self._verifier = MnsVerifier(store, clock)
        self._lock = threading.Lock()
        self._queues: dict[str, MnsQueue] = {}
        self._rid_prefix = f"{random.getrandbits(64):016X}"
        self._rid = itertools.count(1)

    # -- queues ------------------------------------------------------------------------
    def create_queue(self, name: str, meta: QueueMeta | None = None) -> tuple[MnsQueue, bool]:
        """(queue, created); an existing queue with other attributes is QueueAlreadyExist."""
        meta = meta or QueueMeta()
        with self._lock:
            existing = self._queues.get(name)
            if existing is not None:
                if existing.meta != meta:
                    raise MnsError(
                        409, "QueueAlreadyExist", "The queue you want to create is already exist."
                    )
                return existing, False
            queue = self._queues[name] = MnsQueue(name, meta, self._clock)
            return queue, True

    def queue(self, name: str) -> MnsQueue:
        queue = self._queues.get(name)
        if queue is None:
            raise queue_not_exist()
        return queue

    def delete_queue(self, name: str) -> None:
        with self._lock:
            queue = self._queues.pop(name, None)
        if queue is None:
            raise queue_not_exist()
        queue.close()

    def close(self) -> None:
        """Wake every long poll (server shutdown)."""
        with self._lock:
            queues = list(self._queues.values())
        for queue in queues:
            queue.close()

    # -- HTTP --------------------------------------------------------------------------
    def route(self) -> Route:
        return Route("mns", "mns", _matches, self.classify, self.handle, self.fault_response)

    def classify(self, request: Request) -> tuple[str, Params]:
        op, queue = operation(request)
        params: Params = {"queue": queue}
        params.update(request.raw_params())
        return "MNS." + op, params

    def handle(self, request: Request, api: str) -> Response:
        op = api.removeprefix("MNS.")
        try:
            credential = self._verifier.verify(request)
        except AuthError as error:
            return self._error(request, error.status, error.code, error.message)
        _, queue_name = operation(request)
        try:
            self._authorize(credential, op, queue_name)
            respond = self._success(request)
            if not self._long_poll_wait(op, queue_name, request):
                return mns_ops.dispatch(self, op, queue_name, request, respond)
            with self.long_polls.hold(queue_name, credential.access_key_id):
                return mns_ops.dispatch(self, op, queue_name, request, respond)
        except LongPollRefused:
            # Past the long-poll cap MNS answers at once instead of holding the request.
            return self.error_response(request, message_not_exist())
        except MnsError as error:
            return self._error(request, error.status, error.code, error.message)

    def _long_poll_wait(self, op: str, queue_name: str, request: Request) -> int:
        """The wait of a receive (its own or the queue's PollingWaitSeconds); 0 otherwise."""
        if op not in ("ReceiveMessage", "BatchReceiveMessage"):
            return 0
        wait = mns_ops.wait_seconds(request)
        if wait is None:
            queue = self._queues.get(queue_name)
            wait = queue.meta.polling_wait_seconds if queue is not None else 0
        return wait

    def fault_response(self, kind: FaultKind, request: Request, api: str) -> Response:
        if kind is FaultKind.THROTTLE:
            return self._error(request, 400, "QpsLimitExceeded", "The qps limit is exceeded.")
        return self._error(request, 500, "InternalError", "Internal error.")

    @staticmethod
    def _authorize(credential: Credential, op: str, queue: str) -> None:
        """A token reaches its one queue; an account's direct key its account's queues only."""
        if credential.kind is KeyKind.STS and (
            op not in STS_OPERATIONS or queue != credential.queue
        ):
            raise MnsError(403, "AccessDenied", _ACCESS_DENIED)
        if credential.kind is KeyKind.MNS_ACCOUNT and not (
            queue and queue.startswith(credential.queue)
        ):
            raise MnsError(403, "AccessDenied", _ACCESS_DENIED)

    def _request_id(self) -> str:
        return f"{self._rid_prefix}{next(self._rid):08X}"

    def _success(self, request: Request) -> mns_ops.Respond:
        def respond(
            status: int,
            body: bytes = b"",
            headers: tuple[tuple[str, str], ...] = (),
            outcome: str = "OK",
        ) -> Response:
            all_headers = [("x-mns-request-id", self._request_id()), *headers]
            if body:
                all_headers.append(("Content-Type", "text/xml;charset=utf-8"))
            return Response(status, body, all_headers, outcome=outcome)

        return respond

    def _error(self, request: Request, status: int, code: str, message: str) -> Response:
        request_id = self._request_id()
        host_id = f"http://{request.host}" if request.host else "http://localhost"
        body = mns_xml.error_xml(code, message, request_id, host_id)
        headers = [("Content-Type", "text/xml;charset=utf-8"), ("x-mns-request-id", request_id)]
        return Response(status, body, headers, outcome=code)

    def error_response(self, request: Request, error: MnsError) -> Response:
        return self._error(request, error.status, error.code, error.message)


def _matches(request: Request) -> bool:
    return request.path.startswith("/queues/") or request.path == "/queues"
