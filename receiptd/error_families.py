"""Receipt error codes reduced to a bounded set of families, for metric labels.

A failed receipt's code is free text from a carrier: thousands of distinct values, a label
value each would be a series each. ``family(code)`` keeps what an operator acts on and
nothing more, the way Alibaba's receipt error-code page groups the codes ("Delivery receipt
error codes", https://help.aliyun.com/zh/sms/developer-reference/delivery-receipt-error-codes,
English: https://help.aliyun.com/en/sms/developer-reference/delivery-receipt-error-codes):

* **Carrier codes** ``XX:nnnn`` (``MK:0001``, ``MN:0001``, ``MI:0024``, ``DB:0141``,
  ``IA:0051``, ``SW:0011``): the family is the part before ``:``, one of
  :data:`CARRIER_PREFIXES`. These are the error classes of China Mobile's gateway (CMPP)
  status reports that the carriers pass through: ``CA``, ``CB`` (SCP); ``DA``, ``DB`` (DSMP);
  ``IA`` to ``ID`` (the next gateway); ``MA`` to ``MN`` (the SMS centre: ``MI`` expired,
  ``MJ`` deleted, ``MK`` undeliverable, ``ML`` accepted, ``MM`` unknown, ``MN`` rejected);
  and ``SW``. The same code written without the colon (``MK00001``, ``DB00141``: carriers
  send both) is the same family.
* **Plain codes** (:data:`PLAIN`): the word codes the page lists (``CONTENT_ERROR``,
  ``USER_REJECT``, ``NO_ROUTE``, ``UNKNOWN``, ``DELIVERED``), the SMS centre's final states
  (``UNDELIV``, ``EXPIRED``, ``REJECTD``, ``DELETED``, ``NOROUTE``, ``BLACK``, ``KEYWORD``),
  and the international receipts' ``SP_UNKNOW_ERROR`` (docs/international.md): each its own
  family.
* **Huawei / KooMessage**: a ``result_code`` ``E:<plain code>`` (``E:UNDELIV``,
  docs/huawei.md) is that plain code's family; Huawei's own platform codes (``E200024``,
  "SMS Status Error Codes", https://support.huaweicloud.com/intl/en-us/api-msgsms/sms_05_0051.html)
  are ``E``.
* No code at all (None, blank): ``none``. Anything else: ``other``.

The stored copy of Alibaba's page that this module was written from showed its introduction
and these plain codes, not its whole table; a code family the page adds later lands in
``other`` until it is added here (a one-line change, tested by the table in
tests/unit/test_error_families.py).
"""

from __future__ import annotations

import re

CARRIER_PREFIXES = frozenset(
    {
        "CA", "CB", "DA", "DB", "IA", "IB", "IC", "ID",
        "MA", "MB", "MC", "MI", "MJ", "MK", "ML", "MM", "MN", "SW",
    }
)  # fmt: skip
PLAIN = frozenset(
    {
        "CONTENT_ERROR", "USER_REJECT", "NO_ROUTE", "UNKNOWN", "DELIVERED",
        "UNDELIV", "EXPIRED", "REJECTD", "DELETED", "NOROUTE", "BLACK", "KEYWORD",
        "SP_UNKNOW_ERROR",
    }
)  # fmt: skip
HUAWEI = "E"
NONE = "none"
OTHER = "other"
#: Every value ``family`` can return: the ``code`` label of ``receiptd_receipt_errors_total``.
FAMILIES = CARRIER_PREFIXES | PLAIN | {HUAWEI, NONE, OTHER}

_CARRIER = re.compile(r"([A-Z]{2})(?::[A-Z0-9_]+|[0-9]{4,6})")
_HUAWEI_PLATFORM = re.compile(r"E[0-9]{6}")
_HUAWEI_WRAPPED = "E:"


def family(code: str | None) -> str:
    """The family of a receipt error code: always one of :data:`FAMILIES`."""
    if code is None or not code.strip():
        return NONE
    text = code.strip().upper()
    if text.startswith(_HUAWEI_WRAPPED) and text[len(_HUAWEI_WRAPPED) :] in PLAIN:
        return text[len(_HUAWEI_WRAPPED) :]
    if text in PLAIN:
        return text
    if _HUAWEI_PLATFORM.fullmatch(text):
        return HUAWEI
    carrier = _CARRIER.fullmatch(text)
    if carrier and carrier.group(1) in CARRIER_PREFIXES:
        return carrier.group(1)
    return OTHER
