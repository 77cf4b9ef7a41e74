"""`receiptd run`: the daemon."""

from __future__ import annotations

from receiptd.cli.common import not_yet

commands = [not_yet("run", "the daemon")]
