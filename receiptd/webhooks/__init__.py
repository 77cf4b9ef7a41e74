"""Webhooks: the dispatcher that POSTs each committed event to every endpoint, signed the
Standard Webhooks way, with retries until the retry period ends (``dispatcher``)."""

from typing import Any


def __getattr__(name: str) -> Any:
    # The names of the module this package replaced (receiptd/__init__.py): one more release.
    from receiptd import _webhooks_attribute

    return _webhooks_attribute(name)
