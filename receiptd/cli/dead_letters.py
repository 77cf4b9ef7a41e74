"""`receiptd dead-letters`: dead-letter tools."""

from __future__ import annotations

from receiptd.cli.common import not_yet

commands = [not_yet("dead-letters", "dead-letter tools")]
