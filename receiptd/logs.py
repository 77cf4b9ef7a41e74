"""Logging: one structlog pipeline for receiptd and for every stdlib logger (SDKs, SQLAlchemy,
APScheduler), JSON lines off a TTY, console output on one, secrets and phone numbers masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from receiptd import domain

# Mainland mobile numbers, optionally with a country code; masked unless explicitly enabled.
_PHONE = re.compile(r"(?<!\d)(?:\+?86)?1[3-9]\d{9}(?!\d)")
_SECRET_KEYS = re.compile(r"(secret|password|token|authorization|credential)", re.IGNORECASE)
MASK = "**********"


class Redactor:
    """A structlog processor masking known secret values, secret-named keys and phone numbers."""

    def __init__(self, secrets: Iterable[str] = (), mask_phones: bool = True) -> None:
        # Longest first so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._mask_phones = mask_phones

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
        for key, value in list(event.items()):
            if _SECRET_KEYS.search(key) and value not in (None, ""):
                event[key] = MASK
            elif isinstance(value, str):
                event[key] = self.redact(value)
            elif isinstance(value, list | tuple) and value and isinstance(value[0], str):
                event[key] = [self.redact(v) if isinstance(v, str) else v for v in value]
        return event

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if self._mask_phones:
            text = _PHONE.sub(lambda m: domain.mask_phone(m.group(0)), text)
        return text


# structlog binds each logger for good on its first use once configured: faster, and right
# for a process that configures logging once. A test process configures it again and again
# (every in-process CLI test) and captures logs in between (structlog.testing.capture_logs),
# which a logger frozen by an earlier test would bypass: tests/conftest.py turns it off.
CACHE_LOGGERS = True


def configure(
    level: str = "INFO",
    fmt: str = "auto",
    secrets: Iterable[str] = (),
    mask_phones: bool = True,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and route the stdlib root logger through the same processors.

    Call once, before any logger is bound (structlog caches loggers on first use).
    """
    stream = stream or sys.stdout
    json_output = fmt == "json" or (fmt == "auto" and not stream.isatty())
    redactor = Redactor(secrets, mask_phones)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json_output
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=CACHE_LOGGERS,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Chatty libraries stay at WARNING unless receiptd itself is debugging.
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("sqlalchemy", "apscheduler", "urllib3", "waitress", "alembic"):
        logging.getLogger(name).setLevel(max(quiet, logging.getLogger(name).level))


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)
