"""Webhooks: the dispatcher that POSTs each committed event to every endpoint, signed the
Standard Webhooks way, with retries until the retry period ends (``dispatcher``)."""

from typing import Any


def __getattr__(name: str) -> Any:
    # The names of the module this package replaced (receiptd._moved): one more release.
    from receiptd import _moved

    return _moved.webhooks_attribute(name)
