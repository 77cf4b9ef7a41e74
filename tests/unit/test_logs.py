"""The logging pipeline (receiptd.logs): masking, JSON lines, the stdlib loggers routed through."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from receiptd import logs


@pytest.fixture
def restored() -> Iterator[None]:
    """``configure`` changes process-wide state: put structlog and the root logger back."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {n: logging.getLogger(n).level for n in ("sqlalchemy", "apscheduler", "urllib3")}
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)


def redact(event: dict[str, Any], **kwargs: Any) -> Any:
    return logs.Redactor(**kwargs)(None, "info", dict(event))


def test_secret_named_keys_are_masked_whatever_their_value() -> None:
    out = redact({"api_token": "abc", "Authorization": "Bearer x", "db_password": 12, "ok": 1})
    assert out == {
        "api_token": logs.MASK,
        "Authorization": logs.MASK,
        "db_password": logs.MASK,
        "ok": 1,
    }


def test_empty_secret_named_values_stay_visible_as_empty() -> None:
    assert redact({"token": "", "secret": None}) == {"token": "", "secret": None}


def test_known_secret_values_are_masked_inside_any_text_longest_first() -> None:
    out = redact(
        {"error": "auth failed for key-123456 and key-1234"},
        secrets=["key-1234", "key-123456", "abc"],  # under 4 characters: not a secret to hunt
    )
    assert out["error"] == f"auth failed for {logs.MASK} and {logs.MASK}"
    assert redact({"error": "abc"}, secrets=["abc"])["error"] == "abc"


def test_phone_numbers_are_masked_in_strings_and_lists_unless_disabled() -> None:
    event = {"phone": "13812345678", "to": ["+8613912345678", "x", 3], "n": "1381234567890"}
    out = redact(event)
    assert out["phone"] == "138****5678"
    assert out["to"] == [logs.domain.mask_phone("+8613912345678"), "x", 3]
    assert out["n"] == "1381234567890"  # 13 digits: not a mobile number
    assert redact(event, mask_phones=False) == event


def test_configure_writes_json_lines_off_a_tty_for_structlog_and_stdlib(restored: None) -> None:
    stream = io.StringIO()
    logs.configure(level="INFO", fmt="auto", secrets=["s3cr3t-value"], stream=stream)
    logs.get_logger("receiptd.test_logs_own").info("thing_done", detail="s3cr3t-value", n=2)
    logging.getLogger("some.sdk").warning("sdk says %s", "13812345678")
    logs.get_logger("receiptd.test_logs_own").debug("below_level")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "thing_done" and first["level"] == "info"
    assert first["detail"] == logs.MASK and first["n"] == 2
    assert first["logger"] == "receiptd.test_logs_own" and first["timestamp"].endswith("Z")
    assert second["event"] == "sdk says 138****5678" and second["logger"] == "some.sdk"


def test_chatty_libraries_stay_at_warning_unless_debugging(restored: None) -> None:
    logs.configure(level="INFO", fmt="json", stream=io.StringIO())
    assert logging.getLogger("sqlalchemy").level == logging.WARNING
    logging.getLogger("sqlalchemy").setLevel(logging.NOTSET)
    logs.configure(level="DEBUG", fmt="json", stream=io.StringIO())
    assert logging.getLogger("sqlalchemy").level == logging.DEBUG


def test_a_logger_used_between_two_configures_is_still_captured() -> None:
    """tests/conftest.py turns logs.CACHE_LOGGERS off: a logger first used after one
    configure() and captured after another (two in-process CLI tests, then a capture) is
    seen; with caching it kept the first configuration's processors and the capture was
    empty (the push_stored test failed by module order)."""
    from receiptd.ingest.push import listener

    assert logs.CACHE_LOGGERS is False
    logs.configure(stream=io.StringIO())
    listener.log.info("first_use")
    logs.configure(stream=io.StringIO())
    with structlog.testing.capture_logs() as captured:
        listener.log.info("after_reconfigure")
    assert [e["event"] for e in captured] == ["after_reconfigure"]
