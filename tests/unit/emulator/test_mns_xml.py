"""MNS request bodies (receiptd_emulator.mns_xml): malformed XML, batch deletes."""

from __future__ import annotations

import pytest

from receiptd_emulator import mns_xml
from receiptd_emulator.mns_queue import MnsError


@pytest.mark.parametrize(
    "body",
    [b"", b"<Message>", b'<!DOCTYPE x [<!ENTITY a "b">]><Message/>', b"<Other/>"],
)
def test_bad_xml_is_malformed(body: bytes) -> None:
    with pytest.raises(MnsError) as error:
        mns_xml.parse_messages(body)
    assert error.value.code == "MalformedXML"


def test_parses_the_sdk_batch_delete_body() -> None:
    body = (
        b'<?xml version="1.0" encoding="utf-8"?><ReceiptHandles xmlns="http://mns.aliyuncs.com/doc/v1/">'
        b"<ReceiptHandle>a</ReceiptHandle><ReceiptHandle>b+/=</ReceiptHandle></ReceiptHandles>"
    )
    assert mns_xml.parse_receipt_handles(body) == ["a", "b+/="]
