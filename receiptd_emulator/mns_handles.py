"""MNS receipt handles: opaque to clients, decodable (and unforgeable) by their queue."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import random
import struct

_HANDLE = struct.Struct(">QI8s")  # masked message seq, masked receive generation, MAC


class HandleCodec:
    """Receipt handles: `1-` + base64(masked seq, masked generation, 8-byte MAC).

    Base64 of binary, like real handles: they contain "+", "/" and "=", which the SDK sends
    unencoded. The MAC (per-queue key) tells a forged or foreign handle (ReceiptHandleError)
    from one whose message is gone (MessageNotExist), without keeping old handles around.
    """

    def __init__(self) -> None:
        self._key = os.urandom(16)
        self._seq_mask = random.getrandbits(64)
        self._gen_mask = random.getrandbits(32)

    def _mac(self, seq: int, gen: int) -> bytes:
        return hashlib.blake2b(
            seq.to_bytes(8, "big") + gen.to_bytes(4, "big"), key=self._key, digest_size=8
        ).digest()

    def encode(self, seq: int, gen: int) -> str:
        raw = _HANDLE.pack(seq ^ self._seq_mask, gen ^ self._gen_mask, self._mac(seq, gen))
        return "1-" + base64.b64encode(raw).decode()

    def decode(self, handle: str) -> int | None:
        """The message seq of a genuine handle of this queue, else None."""
        if not handle.startswith("1-"):
            return None
        try:
            raw = base64.b64decode(handle[2:], validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _HANDLE.size:
            return None
        masked_seq, masked_gen, mac = _HANDLE.unpack(raw)
        seq, gen = masked_seq ^ self._seq_mask, masked_gen ^ self._gen_mask
        return seq if hmac.compare_digest(mac, self._mac(seq, gen)) else None
