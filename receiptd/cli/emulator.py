"""`receiptd emulator`: placeholder until the emulator lands."""

from receiptd.cli.common import not_yet

command = not_yet("emulator", "provider emulator")
