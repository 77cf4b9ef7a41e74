"""`receiptd send`: send registry."""

from __future__ import annotations

from receiptd.cli.common import not_yet

commands = [not_yet("send", "send registry")]
