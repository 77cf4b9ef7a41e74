"""MNS XML: parsing request bodies and rendering responses exactly as the SDK decodes them."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from xml.sax.saxutils import escape

from receiptd_emulator.mns_queue import MessageView, MnsError, QueueMeta

XMLNS = "http://mns.aliyuncs.com/doc/v1/"
_HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n'
_DOCTYPE = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)
#: Characters XML 1.0 cannot carry: a body with them could never be received.
INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def malformed() -> MnsError:
    return MnsError(400, "MalformedXML", "The XML you provided was not well-formed.")


# ------------------------------------------------------------------------------- parsing


def _root(body: bytes) -> ET.Element:
    if not body or _DOCTYPE.search(body):
        raise malformed()  # no DTDs: nothing to expand, so plain ElementTree is safe here
    try:
        return ET.fromstring(body)  # noqa: S314 - DTDs rejected above
    except ET.ParseError:
        raise malformed() from None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _fields(element: ET.Element) -> dict[str, str]:
    return {_local(child.tag): child.text or "" for child in element}


def parse_queue_meta(body: bytes) -> dict[str, str]:
    """The attributes a CreateQueue/SetQueueAttributes body sets (an empty body sets none)."""
    if not body.strip():
        return {}
    root = _root(body)
    if _local(root.tag) != "Queue":
        raise malformed()
    return _fields(root)


def parse_messages(body: bytes) -> tuple[bool, list[dict[str, str]]]:
    """(is_batch, message fields) from a `<Message>` or `<Messages>` body."""
    root = _root(body)
    name = _local(root.tag)
    if name == "Message":
        return False, [_fields(root)]
    if name == "Messages":
        return True, [_fields(child) for child in root if _local(child.tag) == "Message"]
    raise malformed()


def parse_receipt_handles(body: bytes) -> list[str]:
    root = _root(body)
    if _local(root.tag) != "ReceiptHandles":
        raise malformed()
    return [(child.text or "") for child in root if _local(child.tag) == "ReceiptHandle"]


# ----------------------------------------------------------------------------- rendering


def _doc(root: str, inner: str) -> bytes:
    return f'{_HEADER}<{root} xmlns="{XMLNS}">{inner}</{root}>'.encode()


def _leaves(pairs: Iterable[tuple[str, object]]) -> str:
    return "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in pairs)


def error_xml(code: str, message: str, request_id: str, host_id: str) -> bytes:
    return _doc(
        "Error",
        _leaves(
            (("Code", code), ("Message", message), ("RequestId", request_id), ("HostId", host_id))
        ),
    )


_RECEIVED = (
    "<MessageId>{0}</MessageId><ReceiptHandle>{1}</ReceiptHandle>"
    "<MessageBodyMD5>{2}</MessageBodyMD5><MessageBody>{3}</MessageBody>"
    "<EnqueueTime>{4}</EnqueueTime><NextVisibleTime>{5}</NextVisibleTime>"
    "<FirstDequeueTime>{6}</FirstDequeueTime><DequeueCount>{7}</DequeueCount>"
    "<Priority>{8}</Priority>"
)
_PEEKED = (
    "<MessageId>{0}</MessageId><MessageBodyMD5>{2}</MessageBodyMD5>"
    "<MessageBody>{3}</MessageBody><EnqueueTime>{4}</EnqueueTime>"
    "<FirstDequeueTime>{6}</FirstDequeueTime><DequeueCount>{7}</DequeueCount>"
    "<Priority>{8}</Priority>"
)


def _message_leaves(view: MessageView, received: bool) -> str:
    # A template rather than per-leaf escaping: this runs for every message received. Only
    # the body can hold markup characters; ids, handles (base64) and numbers cannot.
    return (_RECEIVED if received else _PEEKED).format(
        view.message_id,
        view.receipt_handle,
        view.body_md5,
        escape(view.body),
        view.enqueue_ms,
        view.next_visible_ms,
        view.first_dequeue_ms,
        view.dequeue_count,
        view.priority,
    )


def messages_xml(views: list[MessageView], *, batch: bool, received: bool) -> bytes:
    """Receive/peek answers: `<Message>` alone, or `<Messages>` for the batch calls."""
    if not batch:
        return _doc("Message", _message_leaves(views[0], received))
    inner = "".join(f"<Message>{_message_leaves(v, received)}</Message>" for v in views)
    return _doc("Messages", inner)


def sent_xml(views: list[MessageView | MnsError], *, batch: bool) -> bytes:
    """SendMessage / BatchSendMessage answers; a batch may mix sent messages and errors."""

    def leaves(item: MessageView | MnsError) -> str:
        if isinstance(item, MnsError):
            return _leaves((("ErrorCode", item.code), ("ErrorMessage", item.message)))
        return _leaves((("MessageId", item.message_id), ("MessageBodyMD5", item.body_md5)))

    if not batch:
        return _doc("Message", leaves(views[0]))
    return _doc("Messages", "".join(f"<Message>{leaves(v)}</Message>" for v in views))


def delete_errors_xml(failed: list[tuple[str, MnsError]]) -> bytes:
    inner = "".join(
        "<Error>"
        + _leaves(
            (("ErrorCode", e.code), ("ErrorMessage", e.message), ("ReceiptHandle", handle or "-"))
        )
        + "</Error>"
        for handle, e in failed
    )
    return _doc("Errors", inner)


def visibility_xml(view: MessageView) -> bytes:
    return _doc(
        "ChangeVisibility",
        _leaves(
            (("ReceiptHandle", view.receipt_handle), ("NextVisibleTime", view.next_visible_ms))
        ),
    )


def queue_attributes_xml(
    name: str, meta: QueueMeta, depth: dict[str, int], created: int, modified: int
) -> bytes:
    pairs: list[tuple[str, object]] = [
        ("QueueName", name),
        ("CreateTime", created),
        ("LastModifyTime", modified),
        ("DelaySeconds", meta.delay_seconds),
        ("MaximumMessageSize", meta.maximum_message_size),
        ("MessageRetentionPeriod", meta.message_retention_period),
        ("VisibilityTimeout", meta.visibility_timeout),
        ("PollingWaitSeconds", meta.polling_wait_seconds),
        ("ActiveMessages", depth["visible"]),
        ("InactiveMessages", depth["inflight"]),
        ("DelayMessages", depth["delayed"]),
        ("LoggingEnabled", "True" if meta.logging_enabled else "False"),
    ]
    return _doc("Queue", _leaves(pairs))
