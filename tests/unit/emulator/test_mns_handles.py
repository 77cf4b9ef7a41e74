"""MNS receipt handles (receiptd_emulator.mns_handles): opaque, decodable, unforgeable."""

from __future__ import annotations

import base64

import pytest

from receiptd_emulator.mns_handles import HandleCodec


def test_a_handle_decodes_to_its_message_and_differs_per_receive() -> None:
    codec = HandleCodec()
    first, second = codec.encode(42, 1), codec.encode(42, 2)
    assert first != second and first.startswith("1-")
    assert codec.decode(first) == codec.decode(second) == 42


def test_a_handle_of_another_queue_is_not_genuine() -> None:
    assert HandleCodec().decode(HandleCodec().encode(42, 1)) is None


@pytest.mark.parametrize(
    "handle", ["", "2-AAAA", "1-not base64!", "1-" + base64.b64encode(b"short").decode()]
)
def test_malformed_handles_are_not_genuine(handle: str) -> None:
    assert HandleCodec().decode(handle) is None


def test_a_tampered_handle_is_not_genuine() -> None:
    codec = HandleCodec()
    raw = bytearray(base64.b64decode(codec.encode(42, 1)[2:]))
    raw[0] ^= 1
    assert codec.decode("1-" + base64.b64encode(bytes(raw)).decode()) is None
