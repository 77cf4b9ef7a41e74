"""`python -m receiptd` runs the CLI."""

from receiptd.cli import main

main()
