"""receiptd's errors: one tree, a base per port family, and one way to describe an error.

::

    ReceiptdError
    ├── QueueError            the receipt queue (ports.ReceiptQueue)
    │   ├── QueueAuthError
    │   └── QueueNotFound
    ├── StoreError            the database (ports.ReceiptSink, ports.SendStore)
    │   ├── StoreUnavailable
    │   └── StoreWriteError
    └── StatusLookupError     a provider's delivery-status lookup (ports.StatusLookup)
        ├── LookupFailed
        ├── LookupThrottled
        └── LookupUnavailable

Adapters raise these (never an SDK's or a driver's own type), so "retry on any store failure"
is one ``except errors.StoreError``; a place that must tell an outage from refused data
catches the two leaves. ``receiptd.ports`` re-exports every class, where the ports that raise
them are declared (``ports.StoreUnavailable`` is this module's class).
"""

from __future__ import annotations

from typing import Any


class ReceiptdError(Exception):
    """The root: every error receiptd's ports raise derives from it."""


# --- the receipt queue ----------------------------------------------------------------------


class QueueError(ReceiptdError):
    """The queue could not be reached or answered with an error; retry with backoff."""


class QueueAuthError(QueueError):
    """Credentials were refused (expired or revoked token); refresh them before retrying."""


class QueueNotFound(QueueError):
    """The queue does not exist: a configuration error, not a transient one."""


# --- the store ------------------------------------------------------------------------------


class StoreError(ReceiptdError):
    """The store wrote nothing: unavailable, or the data refused. Exactly these two leaves."""


class StoreUnavailable(StoreError):
    """The database cannot be reached right now; nothing was written."""


class StoreWriteError(StoreError):
    """The database refused the data itself (while reachable); nothing was written."""


# --- status lookups (QuerySendDetails, KooMessage send-details) -----------------------------


# Not ``LookupError``: that name is a builtin (the base of KeyError and IndexError), and a
# module defining its own would shadow it for every reader of that module.
class StatusLookupError(ReceiptdError):
    """A delivery-status lookup (``ports.StatusLookup.lookup``) found nothing this time."""


class LookupFailed(StatusLookupError):
    """A status lookup failed for a reason that will not pass by waiting (bad request, auth)."""


class LookupThrottled(StatusLookupError):
    """The provider asked us to slow down; back off and try again in a later cycle."""


class LookupUnavailable(StatusLookupError):
    """The provider is unreachable or answered 5xx; try again later."""


# --- describing an error --------------------------------------------------------------------


def describe(
    exc: BaseException,
    *,
    cause: str | None = None,
    form: str = "{kind}: {line}",
    line_limit: int | None = None,
    limit: int | None = None,
) -> str:
    """One line about ``exc`` for a log field, a health status or another error's message.

    ``cause`` names the attribute holding the underlying error when ``exc`` wraps one
    (SQLAlchemy's ``orig``, urllib3's ``reason``); the description is then the cause's.
    ``form`` is formatted with ``kind`` (the type name), ``line`` (the first line of the
    message, cut to ``line_limit``) and ``e`` (``exc`` itself, for an SDK error whose fields
    say more than its message); the result is cut to ``limit``.
    """
    wrapped: Any = getattr(exc, cause, None) if cause else None
    inner = wrapped or exc
    line = (str(inner).splitlines() or [""])[0][:line_limit]
    return form.format(kind=type(inner).__name__, line=line, e=exc)[:limit]
