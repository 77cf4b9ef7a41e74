"""The error tree (``receiptd.errors``) and its one describer, as each caller uses it."""

from __future__ import annotations

import pytest
import sqlalchemy.exc
import urllib3.exceptions

from receiptd import errors, ports
from receiptd.db import store

STORE = (ports.StoreUnavailable, ports.StoreWriteError)
LOOKUP = (ports.LookupFailed, ports.LookupThrottled, ports.LookupUnavailable)
QUEUE = (ports.QueueError, ports.QueueAuthError, ports.QueueNotFound)


@pytest.mark.parametrize("error", [*STORE, *LOOKUP, *QUEUE])
def test_every_port_error_is_a_receiptd_error(error: type[Exception]) -> None:
    assert issubclass(error, errors.ReceiptdError)
    assert error.__module__ == "receiptd.errors"


def test_ports_re_exports_the_tree() -> None:
    for name in ("ReceiptdError", "StoreError", "StatusLookupError", "QueueError"):
        assert getattr(ports, name) is getattr(errors, name)


@pytest.mark.parametrize("error", STORE)
def test_one_except_store_error_catches_both(error: type[Exception]) -> None:
    with pytest.raises(errors.StoreError) as caught:
        raise error("down")
    assert type(caught.value) is error


def test_store_error_covers_exactly_the_pair() -> None:
    assert set(errors.StoreError.__subclasses__()) == set(STORE)
    assert not issubclass(ports.StoreUnavailable, ports.StoreWriteError)
    assert not issubclass(ports.StoreWriteError, ports.StoreUnavailable)


@pytest.mark.parametrize("error", LOOKUP)
def test_lookup_errors_share_a_base_that_is_not_the_builtin(error: type[Exception]) -> None:
    assert issubclass(error, errors.StatusLookupError)
    assert not issubclass(error, LookupError)  # the builtin: KeyError, IndexError
    assert not issubclass(error, errors.StoreError)


def test_families_do_not_overlap() -> None:
    families = (errors.StoreError, errors.StatusLookupError, errors.QueueError)
    for error in (*STORE, *LOOKUP, *QUEUE):
        assert sum(issubclass(error, f) for f in families) == 1


# --- the describer, as each caller uses it ----------------------------------------------------


def _db_error(message: str) -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError(message))


def test_store_describes_the_drivers_first_line_not_sqlalchemys_wrapper() -> None:
    exc = _db_error("connection refused\nIs the server running on that host?")
    assert store.describe_error(exc) == "ConnectionRefusedError: connection refused"


def test_store_cuts_the_line_not_the_type_name() -> None:
    described = store.describe_error(_db_error("x" * 500))
    assert described == "ConnectionRefusedError: " + "x" * 300


def test_store_describes_an_error_that_wraps_nothing_by_itself() -> None:
    assert store.describe_error(
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
    ) == (
        "UnicodeEncodeError: 'utf-8' codec can't encode character '\\ud800' in position 0:"
        " surrogates not allowed"
    )
    assert store.describe_error(ValueError()) == "ValueError: "


def test_webhook_attempt_describes_urllib3s_reason_cut_whole() -> None:
    reason = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection")
    exc = urllib3.exceptions.MaxRetryError(None, "/hook", reason)  # type: ignore[arg-type]
    described = errors.describe(exc, cause="reason", limit=300)
    assert described == "NewConnectionError: None: Failed to establish a new connection"
    long = errors.describe(OSError("y" * 500), cause="reason", limit=300)
    assert long == ("OSError: " + "y" * 500)[:300]
    assert errors.describe(OSError(), cause="reason", limit=300) == "OSError: "


def test_koomessage_describes_the_sdks_answer_by_its_fields() -> None:
    pytest.importorskip("huaweicloudsdkcore")
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException, SdkError

    from receiptd.providers.huawei import koomessage

    answer = SdkError(request_id="r-1", error_code="AIM.0001", error_msg="bad task id")
    failed = koomessage._client_error(ClientRequestException(400, answer))
    assert type(failed) is ports.LookupFailed
    assert str(failed) == (
        "KooMessage send-details answered HTTP 400 AIM.0001: bad task id (request id r-1)"
    )
    throttled = koomessage._client_error(ClientRequestException(429, answer))
    assert type(throttled) is ports.LookupThrottled
    assert str(throttled).startswith("KooMessage send-details answered HTTP 429 AIM.0001")
