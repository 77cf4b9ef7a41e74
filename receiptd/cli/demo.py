"""`receiptd demo`: one-command demo."""

from __future__ import annotations

from receiptd.cli.common import not_yet

commands = [not_yet("demo", "one-command demo")]
