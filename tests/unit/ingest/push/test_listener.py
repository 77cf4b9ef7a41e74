"""The push WSGI app without sockets: routes, token, allowlist, answers, dead letters."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import structlog

from receiptd import config, ports
from receiptd.ingest.push import listener as push
from receiptd.ingest.push import routes
from receiptd.testing.queues import InMemorySink
from receiptd.wiring import daemon
from tests.unit.ingest.push.test_formats import REPORT_OLD, SMS, UP, envelope

TOKEN = "t0ken-0123456789abcdef"


def call(
    app: push.PushApp,
    path: str,
    data: bytes = b"[]",
    method: str = "POST",
    content_type: str = "application/json",
    **environ: Any,
) -> tuple[int, dict[str, Any]]:
    seen: list[str] = []
    env = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(data)),
        "REMOTE_ADDR": "192.0.2.10",
        "wsgi.input": io.BytesIO(data),
        **environ,
    }
    out = b"".join(app(env, lambda status, headers: seen.append(status)))
    return int(seen[0].split()[0]), json.loads(out)


def make(
    sink: InMemorySink | None = None,
    accounts: tuple[routes.PushAccount, ...] = (),
    **cfg: Any,
) -> tuple[push.PushApp, InMemorySink]:
    """The app with the ``default`` accounts (token TOKEN) and ``accounts``."""
    sink = sink or InMemorySink()
    everyone = (*routes.default_accounts(TOKEN), *accounts)
    return push.PushApp(sink, push.PushConfig(everyone, **cfg)), sink


def js(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def test_reports_stored_then_code_0() -> None:
    app, sink = make()
    status, answer = call(app, f"/push/{TOKEN}/aliyun/SmsReport", js([REPORT_OLD]))
    assert (status, answer) == (200, {"code": 0, "msg": "接收成功"})
    (record,) = sink.reports.values()
    assert record.channel.value == "push"
    status, _ = call(app, f"/push/{TOKEN}/aliyun/SmsUp", js([UP, UP]))
    assert status == 200 and len(sink.inbound) == 1


def test_koomessage_callback() -> None:
    app, sink = make()
    assert call(app, f"/push/{TOKEN}/v1/aim/send-status", envelope([SMS]))[0] == 200
    (record,) = sink.reports.values()
    assert record.report.provider.value == "huawei"


@pytest.mark.parametrize(
    "path",
    [
        "/push/wrong-token-0123456789/aliyun/SmsReport",
        "/push//aliyun/SmsReport",
        f"/push/{TOKEN}/aliyun/Other",
        f"/push/{TOKEN}",
        "/push/aliyun/SmsReport",
        f"/x/{TOKEN}/aliyun/SmsReport",
        "/",
    ],
)
def test_wrong_token_or_path_is_a_bare_404(path: str) -> None:
    app, sink = make()
    assert call(app, path, js([REPORT_OLD])) == (404, {"code": 404, "msg": "not found"})
    assert call(app, path, method="GET")[0] == 404
    assert sink.writes == 0


def test_method_and_content_type() -> None:
    app, _ = make()
    assert call(app, f"/push/{TOKEN}/aliyun/SmsReport", method="GET")[0] == 405
    path = f"/push/{TOKEN}/aliyun/SmsReport"
    assert call(app, path, content_type="application/x-www-form-urlencoded")[0] == 415
    assert (
        call(app, path, js([REPORT_OLD]), content_type="application/json;charset=UTF-8")[0] == 200
    )


def test_malformed_element_dead_lettered_rest_stored() -> None:
    app, sink = make()
    data = js([REPORT_OLD, {**REPORT_OLD, "success": "yes"}, 7])
    assert call(app, f"/push/{TOKEN}/aliyun/SmsReport", data)[0] == 200
    assert len(sink.reports) == 1
    assert {d.queue for d in sink.dead.values()} == {"push:aliyun/SmsReport"}
    assert len(sink.dead) == 2


def test_push_stored_logs_the_documented_fields_per_request() -> None:
    """docs/operations.md: push_stored with account, queue, elements, new, dead_letters,
    ignored, settled."""
    app, _ = make()
    data = envelope([SMS, {**SMS, "send_status": "sending"}, {**SMS, "send_status": "Weird"}])
    with structlog.testing.capture_logs() as logs:
        assert call(app, f"/push/{TOKEN}/v1/aim/send-status", data)[0] == 200
    (stored,) = [e for e in logs if e["event"] == "push_stored"]
    assert {k: v for k, v in stored.items() if k not in ("event", "log_level")} == {
        "account": "default",
        "queue": "push:huawei/send-status",
        "elements": 3,
        "new": 1,
        "dead_letters": 1,  # the unknown status
        "ignored": 1,  # "sending" settles nothing
        "settled": 0,  # no send registered
    }


def test_unreadable_body_dead_lettered_then_400_and_retries_are_one_row() -> None:
    app, sink = make()
    for _ in range(3):
        status, answer = call(app, f"/push/{TOKEN}/aliyun/SmsReport", b"\xff not json")
        assert status == 400 and "UTF-8" in answer["msg"]
    (dead,) = sink.dead.values()
    assert dead.raw_body == b"\xff not json" and len(dead.message_id) == 64


def test_limits() -> None:
    app, sink = make(max_body=1024, max_elements=3)
    path = f"/push/{TOKEN}/aliyun/SmsReport"
    assert call(app, path, b"[" + b" " * 2000 + b"]")[0] == 413
    assert call(app, path, js([REPORT_OLD] * 4))[0] == 413
    assert len(sink.dead) == 1  # the over-long array is kept; the over-size body never read


def test_database_unavailable_is_503_and_nothing_stored() -> None:
    app, _ = make(InMemorySink(unavailable=True))
    status, answer = call(app, f"/push/{TOKEN}/aliyun/SmsReport", js([REPORT_OLD]))
    assert status == 503 and "code" in answer
    assert call(app, f"/push/{TOKEN}/aliyun/SmsReport", b"garbage")[0] == 503


def test_a_record_the_database_refuses_becomes_a_dead_letter() -> None:
    class Refusing(InMemorySink):
        def write_batch(self, batch: ports.Batch, now: Any) -> ports.BatchResult:
            if any(r.report.biz_id == "bad" for r in batch.reports):
                raise ports.StoreWriteError("value too long")
            return super().write_batch(batch, now)

    app, sink = make(Refusing())
    data = js([REPORT_OLD, {**REPORT_OLD, "biz_id": "bad"}])
    assert call(app, f"/push/{TOKEN}/aliyun/SmsReport", data)[0] == 200
    assert len(sink.reports) == 1
    (dead,) = sink.dead.values()
    assert "store refused" in dead.error


def test_allowlist_and_trusted_proxy() -> None:
    nets = config.parse_networks
    app, _ = make(allow=nets("198.51.100.0/24"), trusted_proxies=nets("10.0.0.1"))
    path = f"/push/{TOKEN}/aliyun/SmsReport"
    assert call(app, path)[0] == 403  # 192.0.2.10 is outside
    assert call(app, path, REMOTE_ADDR="198.51.100.7")[0] == 200
    # X-Forwarded-For only counts from the trusted proxy, right-most untrusted hop first.
    forwarded = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "1.2.3.4, 198.51.100.7"}
    assert call(app, path, **forwarded)[0] == 200
    spoofed = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "198.51.100.7, 1.2.3.4"}
    assert call(app, path, **spoofed)[0] == 403
    direct = {"REMOTE_ADDR": "192.0.2.10", "HTTP_X_FORWARDED_FOR": "198.51.100.7"}
    assert call(app, path, **direct)[0] == 403


def test_settings() -> None:
    with pytest.raises(ValueError, match="push_token is required"):
        config.Settings(push_addr="127.0.0.1:9500")
    with pytest.raises(ValueError, match="at least 16"):
        config.Settings(push_addr="127.0.0.1:9500", push_token="short")
    with pytest.raises(ValueError, match="not an IP"):
        config.Settings(push_allow_cidrs="10.0.0.0/8, nonsense")
    settings = config.Settings(push_addr="127.0.0.1:0", push_token=TOKEN)
    (listener,) = daemon.push_listener(settings, InMemorySink())
    listener.start()
    listener.stop()
    assert listener.join(2) and listener.failed is None
    assert daemon.push_listener(config.Settings(), InMemorySink()) == []


def test_push_dead_letters_replay_after_a_fix() -> None:
    tz = routes.PushAccount("default", "aliyun", "x").tz
    element = js({**REPORT_OLD, "sms_size": "1"})
    (record,) = push.replay_batch("push:aliyun/SmsReport", element, tz).reports
    assert record.report.biz_id == REPORT_OLD["biz_id"] and record.channel.value == "push"
    (huawei,) = push.replay_batch("push:huawei/send-status", js(SMS), tz).reports
    assert huawei.report.provider.value == "huawei" and huawei.account == "default"
    (named,) = push.replay_batch("push:aliyun/SmsReport", element, tz, "brand_a").reports
    assert named.account == "brand_a"  # the dead letter's account
    with pytest.raises(ValueError, match="boolean"):
        push.replay_batch("push:aliyun/SmsReport", js({**REPORT_OLD, "success": "x"}), tz)
    with pytest.raises(ValueError, match="not a push channel"):
        push.replay_batch("push:other", b"[]", tz)
