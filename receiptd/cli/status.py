"""`receiptd status`: status report."""

from __future__ import annotations

from receiptd.cli.common import not_yet

commands = [not_yet("status", "status report")]
