"""`receiptd consume`: receipt consumer."""

from __future__ import annotations

from receiptd.cli.common import not_yet

commands = [not_yet("consume", "receipt consumer")]
