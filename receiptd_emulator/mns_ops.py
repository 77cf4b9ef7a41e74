"""One function per MNS operation: validate like the service, act on the queue, answer XML."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from receiptd_emulator import mns_xml
from receiptd_emulator.http_types import Request, Response
from receiptd_emulator.mns_queue import MessageView, MnsError, QueueMeta, message_not_exist

if TYPE_CHECKING:
    from receiptd_emulator.mns import MnsService

MAX_BATCH = 16
MAX_WAIT_SECONDS = 30
MAX_BATCH_BYTES = 65536
_QUEUE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
#: Queue attribute element -> (QueueMeta field, low, high), ranges from the CreateQueue doc.
_META_RANGES = {
    "VisibilityTimeout": ("visibility_timeout", 1, 43200),
    "MaximumMessageSize": ("maximum_message_size", 1024, 65536),
    "MessageRetentionPeriod": ("message_retention_period", 60, 604800),
    "DelaySeconds": ("delay_seconds", 0, 604800),
    "PollingWaitSeconds": ("polling_wait_seconds", 0, MAX_WAIT_SECONDS),
}


class Respond(Protocol):
    def __call__(
        self,
        status: int,
        body: bytes = b"",
        headers: tuple[tuple[str, str], ...] = (),
        outcome: str = "OK",
    ) -> Response: ...


Op = Callable[["MnsService", str, Request, Respond], Response]


def invalid_argument(name: str, low: int, high: int) -> MnsError:
    return MnsError(400, "InvalidArgument", f"The value of {name} should between {low} and {high}.")


def int_value(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise invalid_argument(name, low, high) from None
    if not low <= value <= high:
        raise invalid_argument(name, low, high)
    return value


def meta_from_fields(fields: dict[str, str], base: QueueMeta) -> QueueMeta:
    changes: dict[str, object] = {}
    for element, text in fields.items():
        if element in _META_RANGES:
            attr, low, high = _META_RANGES[element]
            changes[attr] = int_value(element, text, low, high)
        elif element == "LoggingEnabled":
            if text.lower() not in ("true", "false"):
                raise MnsError(400, "InvalidArgument", "LoggingEnabled should be True or False.")
            changes["logging_enabled"] = text.lower() == "true"
    return replace(base, **changes)  # type: ignore[arg-type]


def _check_queue_name(name: str) -> None:
    if not 1 <= len(name) <= 256:
        raise MnsError(400, "QueueNameLengthError", "Queue name length should between 1 and 256.")
    if not _QUEUE_NAME.fullmatch(name):
        raise MnsError(
            400,
            "InvalidQueueName",
            "The queue name you provided is invalid. QueueName should start with alpha and "
            "contain only alpha, digit or -.",
        )


# ------------------------------------------------------------------------------ queues


def create_queue(service: MnsService, name: str, request: Request, respond: Respond) -> Response:
    _check_queue_name(name)
    meta = meta_from_fields(mns_xml.parse_queue_meta(request.body), QueueMeta())
    _, created = service.create_queue(name, meta)
    # The SDK reads the Location header after any 2xx, so 204 carries it too.
    location = ("Location", f"http://{request.host}/queues/{name}")
    return respond(201 if created else 204, headers=(location,))


def set_queue_attributes(
    service: MnsService, name: str, request: Request, respond: Respond
) -> Response:
    queue = service.queue(name)
    queue.meta = meta_from_fields(mns_xml.parse_queue_meta(request.body), queue.meta)
    return respond(204)


def get_queue_attributes(
    service: MnsService, name: str, request: Request, respond: Respond
) -> Response:
    queue = service.queue(name)
    depth = queue.depth()
    body = mns_xml.queue_attributes_xml(name, queue.meta, depth, queue.created, queue.modified)
    return respond(200, body)


def delete_queue(service: MnsService, name: str, request: Request, respond: Respond) -> Response:
    service.delete_queue(name)
    return respond(204)


# ---------------------------------------------------------------------------- messages


def _outgoing(fields: dict[str, str], meta: QueueMeta) -> tuple[str, float | None, int]:
    body = fields.get("MessageBody", "")
    size = len(body.encode())
    if not 1 <= size <= meta.maximum_message_size:
        raise MnsError(
            400,
            "InvalidArgument",
            f"The length of message should be between 1 and {meta.maximum_message_size} bytes.",
        )
    delay = fields.get("DelaySeconds")
    priority = fields.get("Priority")
    return (
        body,
        int_value("DelaySeconds", delay, 0, 604800) if delay is not None else None,
        int_value("Priority", priority, 1, 16) if priority is not None else 8,
    )


def send_message(service: MnsService, name: str, request: Request, respond: Respond) -> Response:
    batch, items = mns_xml.parse_messages(request.body)
    queue = service.queue(name)
    if batch and not 1 <= len(items) <= MAX_BATCH:
        raise invalid_argument("the number of messages", 1, MAX_BATCH)
    if batch and sum(len(f.get("MessageBody", "").encode()) for f in items) > MAX_BATCH_BYTES:
        raise MnsError(400, "InvalidArgument", "The total size of a batch exceeds 65536 bytes.")
    results: list[MessageView | MnsError] = []
    for fields in items:
        try:
            results.append(queue.send(*_outgoing(fields, queue.meta)))
        except MnsError as error:
            if not batch:
                raise
            results.append(error)
    errors = [r for r in results if isinstance(r, MnsError)]
    body = mns_xml.sent_xml(results, batch=batch)
    if errors:
        return respond(400, body, outcome=errors[0].code)
    return respond(201, body)


def wait_seconds(request: Request) -> int | None:
    text = request.raw_params().get("waitseconds")
    return None if text is None else int_value("waitseconds", text, 0, MAX_WAIT_SECONDS)


def _batch_size(request: Request) -> int | None:
    text = request.raw_params().get("numOfMessages")
    return None if text is None else int_value("numOfMessages", text, 1, MAX_BATCH)


def receive_message(service: MnsService, name: str, request: Request, respond: Respond) -> Response:
    size = _batch_size(request)
    wait = wait_seconds(request)
    views = service.queue(name).receive(size or 1, wait)
    if not views:
        raise message_not_exist()
    return respond(200, mns_xml.messages_xml(views, batch=size is not None, received=True))


def peek_message(service: MnsService, name: str, request: Request, respond: Respond) -> Response:
    size = _batch_size(request)
    views = service.queue(name).peek(size or 1)
    if not views:
        raise message_not_exist()
    return respond(200, mns_xml.messages_xml(views, batch=size is not None, received=False))


def _receipt_handle(request: Request) -> str:
    handle = request.raw_params().get("ReceiptHandle", "")
    if not handle:
        raise MnsError(400, "MissingReceiptHandle", "ReceiptHandle is required.")
    return handle


def delete_message(service: MnsService, name: str, request: Request, respond: Respond) -> Response:
    service.queue(name).delete(_receipt_handle(request))
    return respond(204)


def batch_delete_message(
    service: MnsService, name: str, request: Request, respond: Respond
) -> Response:
    handles = mns_xml.parse_receipt_handles(request.body)
    queue = service.queue(name)
    if not 1 <= len(handles) <= MAX_BATCH:
        raise invalid_argument("the number of receipt handles", 1, MAX_BATCH)
    failed = queue.delete_many(handles)
    if failed:
        # Partial failure: 404 with one <Error> per handle not deleted; the rest are gone.
        return respond(404, mns_xml.delete_errors_xml(failed), outcome=failed[0][1].code)
    return respond(204)


def change_visibility(
    service: MnsService, name: str, request: Request, respond: Respond
) -> Response:
    handle = _receipt_handle(request)
    text = request.raw_params().get("VisibilityTimeout")
    if not text:
        raise MnsError(400, "MissingVisibilityTimeout", "VisibilityTimeout is required.")
    timeout = int_value("VisibilityTimeout", text, 1, 43200)
    view = service.queue(name).change_visibility(handle, timeout)
    return respond(200, mns_xml.visibility_xml(view))


OPERATIONS: dict[str, Op] = {
    "CreateQueue": create_queue,
    "SetQueueAttributes": set_queue_attributes,
    "GetQueueAttributes": get_queue_attributes,
    "DeleteQueue": delete_queue,
    "SendMessage": send_message,
    "BatchSendMessage": send_message,
    "ReceiveMessage": receive_message,
    "BatchReceiveMessage": receive_message,
    "PeekMessage": peek_message,
    "BatchPeekMessage": peek_message,
    "DeleteMessage": delete_message,
    "BatchDeleteMessage": batch_delete_message,
    "ChangeMessageVisibility": change_visibility,
}


def dispatch(
    service: MnsService, op: str, queue: str, request: Request, respond: Respond
) -> Response:
    handler = OPERATIONS.get(op)
    if handler is None:
        raise MnsError(400, "InvalidRequestURL", "Http request URL format invalid.")
    return handler(service, queue, request, respond)
