"""Poison bodies over the in-memory twins: nothing a body holds stops a loop.

Issue 21: a receipt with an integer of more than 4,300 digits made ``json.loads`` raise a plain
``ValueError`` that the consumer's isolation did not catch; the loop died, the daemon exited,
and the redelivered message killed it again. Here every known extreme becomes a BodyError
with a clear reason, any other exception on one body (a planted defect) is dead-lettered
with the body's exact bytes, and a message delivered more than ``max_dequeue`` times is
dead-lettered unread.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from receiptd import domain, metrics, ports, receipt_shapes
from receiptd.daemon.health import Health
from receiptd.ingest import poison
from receiptd.ingest.mns import batch
from receiptd.ingest.mns.consumer import Backoff, Consumer
from receiptd.ingest.push import formats as push_formats
from receiptd.testing.queues import InMemoryQueue, InMemorySink
from tests.consuming import until_idle
from tests.unit.ingest.push.test_listener import TOKEN, call, make

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
FAST = Backoff(base=0.001, cap=0.002)
GOOD = {
    "phone_number": "13800000001",
    "success": True,
    "biz_id": "b^0",
    "send_time": "2026-11-25 16:00:00",
}
HUGE_INT = "1" + "0" * 5000  # past CPython's 4,300-digit limit for int(str)


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()


def report_text(**changes: Any) -> str:
    return json.dumps({**GOOD, **changes})


def sample(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


# --- the domain parser: known extremes are BodyErrors with a reason ----------------------------

EXTREMES = {
    "integer of 5,001 digits": (
        b64('{"phone_number":' + HUGE_INT + ',"biz_id":"1","success":true}'),
        "is not readable JSON: Exceeds the limit (4300 digits)",
    ),
    "integer of 5,001 digits in a field the parser never reads": (
        b64(report_text()[:-1] + ',"extra":' + HUGE_INT + "}"),
        "is not readable JSON",
    ),
    "nesting 100,000 deep": (b64('{"a":' + "[" * 100_000 + "]" * 100_000 + "}"), "nested"),
    "year 1 in Shanghai is before UTC's year 1": (
        b64(report_text(send_time="00010101000000")),
        "field 'send_time': 0001-01-01T00:00:00+08:05:43 is out of range in UTC",
    ),
    "report_time year 1": (
        b64(report_text(report_time="0001-01-01 00:00:00")),
        "field 'report_time'",
    ),
    "lone high surrogate (a JSON escape)": (
        b64(report_text(err_msg="ok \ud800")),
        "field 'err_msg' holds a lone surrogate (U+D800)",
    ),
    "lone low surrogate in the phone number": (
        b64(report_text(phone_number="\udfff")),
        "field 'phone_number' holds a lone surrogate (U+DFFF)",
    ),
    "a surrogate as raw bytes (CESU-8), not an escape": (
        b64(report_text().replace("b^0", "\ud800")),
        "decoded body is not UTF-8",
    ),
    "float overflow is not text": (b64(report_text(biz_id=1e400)), "must be a string"),
    "NaN is not text": (b64(report_text().replace('"b^0"', "NaN")), "must be a string"),
}


@pytest.mark.parametrize("name", list(EXTREMES))
def test_known_extremes_are_body_errors_with_a_reason(name: str) -> None:
    body, reason = EXTREMES[name]
    with pytest.raises(domain.BodyError) as caught:
        domain.parse_report(body)
    assert reason in str(caught.value)


def test_year_9999_west_of_greenwich_is_out_of_range() -> None:
    west = timezone(timedelta(hours=-8))
    with pytest.raises(domain.BodyError, match="out of range in UTC"):
        domain.parse_report(b64(report_text(send_time="9999-12-31 23:59:59")), west)
    # ... and in Shanghai it is a time like any other.
    parsed = domain.parse_report(b64(report_text(send_time="9999-12-31 23:59:59")))
    assert parsed.send_time == datetime(9999, 12, 31, 15, 59, 59, tzinfo=UTC)


def test_push_parsers_share_the_extremes() -> None:
    report = domain.MessageType.REPORT
    with pytest.raises(domain.BodyError, match="not readable JSON"):
        push_formats.parse_aliyun(f'[{{"biz_id":{HUGE_INT}}}]'.encode(), report)
    huge_body = json.dumps({"callback_type": "sms", "body": f"[{HUGE_INT}]"}).encode()
    with pytest.raises(domain.BodyError, match="not readable JSON"):
        push_formats.parse_koomessage(huge_body)
    koo = {"send_status": "Deliverd", "task_id": "t", "cust_flag": "c"}
    year1 = {**koo, "send_time": "0001-01-01T00:00:00+08:00"}
    envelope = json.dumps({"callback_type": "sms", "body": [year1]}).encode()
    parsed = push_formats.parse_koomessage(envelope)
    assert "out of range in UTC" in parsed.rejected[0].error
    # A rejected element holding a lone surrogate is kept as JSON with \u escapes.
    parsed = push_formats.parse_aliyun(b'[{"biz_id":"\\ud800"}]', report)
    assert parsed.rejected[0].raw == b'{"biz_id":"\\ud800"}'


def test_printable_reasons() -> None:
    assert domain.printable("plain") == "plain"
    assert domain.printable("a\x00b\ud800c") == "a\\x00b\\ud800c"
    assert domain.printable("好" * 10, 5) == "好好好好…"


# --- decode_batch: never raises; defects and quarantine ----------------------------------------


def message(body: str, dequeue_count: int = 1, message_id: str = "m1") -> ports.QueueMessage:
    return ports.QueueMessage(message_id, f"h-{message_id}", body, dequeue_count)


def test_a_decoder_defect_is_dead_lettered_counted_and_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = receipt_shapes.parse_receipt

    def planted(raw: str | bytes, tz: Any = domain.CHINA_TZ) -> domain.SmsReport:
        if "planted" in base64.b64decode(raw).decode():
            raise OverflowError("a planted defect")
        return real(raw, tz)

    monkeypatch.setattr(receipt_shapes, "parse_receipt", planted)
    crashed = sample("receiptd_bodies_crashed_total", {"channel": "mns", "stage": "decode"})
    bodies = [b64(report_text(biz_id=f"b{i}")) for i in range(3)]
    bodies.insert(1, b64(report_text(biz_id="planted")))
    messages = [message(body, message_id=f"m{i}") for i, body in enumerate(bodies)]
    result = batch.decode_batch(messages, domain.MessageType.REPORT, "q", domain.CHINA_TZ)
    assert [r.report.biz_id for r in result.reports] == ["b0", "b1", "b2"]
    (dead,) = result.dead
    assert (dead.message_id, dead.raw_body) == ("m1", bodies[1].encode())
    assert dead.error == "decoder crashed: OverflowError('a planted defect')"
    after = sample("receiptd_bodies_crashed_total", {"channel": "mns", "stage": "decode"})
    assert after == crashed + 1


def test_a_message_delivered_too_often_is_quarantined_unread() -> None:
    good = b64(report_text())
    quarantined = sample(
        "receiptd_messages_quarantined_total", {"account": "default", "queue": "report"}
    )
    kinds = domain.MessageType.REPORT
    result = batch.decode_batch([message(good, 5)], kinds, "q", domain.CHINA_TZ, 5)
    assert len(result.reports) == 1 and not result.dead
    result = batch.decode_batch([message(good, 6)], kinds, "q", domain.CHINA_TZ, 5)
    (dead,) = result.dead
    assert not result.reports and dead.raw_body == good.encode()
    assert dead.error.startswith("quarantined unread: delivered 6 times")
    assert (
        sample("receiptd_messages_quarantined_total", {"account": "default", "queue": "report"})
        == quarantined + 1
    )
    unbounded = batch.decode_batch([message(good, 10**6)], kinds, "q", domain.CHINA_TZ, 0)
    assert len(unbounded.reports) == 1


# --- the consumer loop -------------------------------------------------------------------------


def consumer(queue: InMemoryQueue, sink: ports.ReceiptSink, max_dequeue: int = 5) -> Consumer:
    return Consumer(
        domain.MessageType.REPORT,
        lambda: queue,
        sink,
        Health(),
        threads=1,
        batch_size=16,
        wait_seconds=0,
        clock=lambda: NOW,
        backoff=FAST,
        max_dequeue=max_dequeue,
    )


def test_the_issue_body_among_good_ones_is_dead_lettered_and_the_loop_lives() -> None:
    queue, sink = InMemoryQueue("q"), InMemorySink()
    poison = b64('{"phone_number":' + HUGE_INT + ',"biz_id":"x","success":true}')
    ids = queue.send_many([b64(report_text(biz_id=f"b{i}")) for i in range(12)])
    poison_id = queue.send(poison)
    ids += queue.send_many([b64(report_text(biz_id=f"c{i}")) for i in range(4)])
    run = consumer(queue, sink)
    stats = until_idle(run)
    assert run.failed is None and queue.depth() == 0
    assert {r.message_id for r in sink.reports.values()} == set(ids)
    assert sink.dead[("default", "q", poison_id)].raw_body == poison.encode()
    assert (stats.stored, stats.dead_letters) == (16, 1)


class CrashingSink(InMemorySink):
    """A store that raises something no store should (the driver's UnicodeEncodeError let
    through, a defect) for one biz_id."""

    def write_batch(self, batch: ports.Batch, now: datetime) -> ports.BatchResult:
        if any(r.report.biz_id == "crash" for r in batch.reports):
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        return super().write_batch(batch, now)


def test_a_store_defect_on_one_message_isolates_it_and_the_loop_lives() -> None:
    queue, sink = InMemoryQueue("q"), CrashingSink()
    good = queue.send_many([b64(report_text(biz_id=f"b{i}")) for i in range(5)])
    crash_body = b64(report_text(biz_id="crash"))
    crash = queue.send(crash_body)
    crashed = sample("receiptd_bodies_crashed_total", {"channel": "mns", "stage": "store"})
    run = consumer(queue, sink)
    until_idle(run)
    assert run.failed is None and queue.depth() == 0
    assert {r.message_id for r in sink.reports.values()} == set(good)
    dead = sink.dead[("default", "q", crash)]
    assert dead.raw_body == crash_body.encode() and dead.error.startswith("store crashed: ")
    after = sample("receiptd_bodies_crashed_total", {"channel": "mns", "stage": "store"})
    assert after == crashed + 1


class PlantedCrash(BaseException):
    """Stands for what no ``except Exception`` catches: the process dying on a body (a
    segfault in a C extension, the OOM killer, a watchdog kill)."""


def test_a_message_that_kills_the_worker_is_quarantined_after_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = receipt_shapes.parse_receipt

    def planted(raw: str | bytes, tz: Any = domain.CHINA_TZ) -> domain.SmsReport:
        if "killer" in base64.b64decode(raw).decode():
            raise PlantedCrash
        return real(raw, tz)

    monkeypatch.setattr(receipt_shapes, "parse_receipt", planted)
    queue, sink = InMemoryQueue("q"), InMemorySink()
    killer_body = b64(report_text(biz_id="killer"))
    killer = queue.send(killer_body)
    deaths = 0
    for _ in range(10):  # the supervisor restarting the daemon
        run = consumer(queue, sink, max_dequeue=3)
        until_idle(run)
        if run.failed is None:
            break
        assert isinstance(run.failed, PlantedCrash)
        deaths += 1
        queue.expire_visibility()  # the visibility timeout passes: MNS redelivers it
    assert deaths == 3  # delivered 3 times, each a death; the 4th delivery is quarantined
    assert queue.depth() == 0
    dead = sink.dead[("default", "q", killer)]
    assert dead.raw_body == killer_body.encode()
    assert dead.error.startswith("quarantined unread: delivered 4 times")


# --- the push listener -------------------------------------------------------------------------


REPORT_PATH = f"/push/{TOKEN}/aliyun/SmsReport"


def test_the_issue_body_pushed_is_400_and_kept_byte_exact() -> None:
    app, sink = make()
    raw = ('[{"phone_number":' + HUGE_INT + "}]").encode()
    status, answer = call(app, REPORT_PATH, raw)
    assert status == 400 and "not readable JSON" in answer["msg"]
    (dead,) = sink.dead.values()
    assert dead.raw_body == raw


def test_pushed_extremes_in_one_element_are_200_and_the_element_dead_lettered() -> None:
    app, sink = make()
    elements = [
        {**GOOD, "biz_id": "ok"},
        {**GOOD, "biz_id": "surrogate", "err_msg": "\ud800"},
        {**GOOD, "biz_id": "year1", "send_time": "00010101000000"},
    ]
    raw = json.dumps(elements).encode()  # ensure_ascii: the surrogate is a \ud800 escape
    assert call(app, REPORT_PATH, raw)[0] == 200
    assert [r.report.biz_id for r in sink.reports.values()] == ["ok"]
    errors = sorted(d.error for d in sink.dead.values())
    assert len(errors) == 2
    assert "lone surrogate" in errors[0] and "out of range in UTC" in errors[1]


def test_a_parser_defect_on_a_pushed_body_is_400_and_a_dead_letter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def planted(*_: Any, **__: Any) -> push_formats.Parsed:
        raise KeyError("a planted defect")

    monkeypatch.setattr(push_formats, "parse_aliyun", planted)
    app, sink = make()
    crashed = sample("receiptd_bodies_crashed_total", {"channel": "push", "stage": "listener"})
    raw = json.dumps([GOOD]).encode()
    status, answer = call(app, REPORT_PATH, raw)
    assert status == 400 and "Traceback" not in answer["msg"]
    (dead,) = sink.dead.values()
    assert dead.raw_body == raw and "listener crashed: KeyError" in dead.error
    after = sample("receiptd_bodies_crashed_total", {"channel": "push", "stage": "listener"})
    assert after == crashed + 1


def test_an_element_parser_defect_rejects_that_element_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = domain.report_from_fields

    def planted(data: Any, tz: Any = domain.CHINA_TZ) -> domain.SmsReport:
        if data.get("biz_id") == "bug":
            raise IndexError("a planted defect")
        return real(data, tz)

    monkeypatch.setattr(domain, "report_from_fields", planted)
    app, sink = make()
    raw = json.dumps([GOOD, {**GOOD, "biz_id": "bug"}]).encode()
    assert call(app, REPORT_PATH, raw)[0] == 200
    assert [r.report.biz_id for r in sink.reports.values()] == ["b^0"]
    (dead,) = sink.dead.values()
    assert dead.error == "parser crashed: IndexError('a planted defect')"


def test_a_store_defect_on_a_pushed_record_is_200_and_a_dead_letter() -> None:
    app, sink = make(CrashingSink())
    raw = json.dumps([GOOD, {**GOOD, "biz_id": "crash"}]).encode()
    assert call(app, REPORT_PATH, raw)[0] == 200
    assert [r.report.biz_id for r in sink.reports.values()] == ["b^0"]
    (dead,) = sink.dead.values()
    assert dead.error.startswith("store crashed: UnicodeEncodeError")


# --- write_isolating: the one write-then-isolate path of MNS and push -----------------------------


def _records(*biz_ids: str) -> ports.Batch:
    reports = [
        ports.ReportRecord(
            f"m-{b}", domain.parse_report(b64(report_text(biz_id=b)), domain.CHINA_TZ)
        )
        for b in biz_ids
    ]
    return ports.Batch(reports=reports)


def _isolate(sink: InMemorySink, records: ports.Batch) -> tuple[set[str], list[Any], list[str]]:
    commits: list[Any] = []
    why: list[str] = []
    writes = poison.Writes(
        sink,
        lambda: NOW,
        lambda single, reason: ports.DeadRecord("q", f"dead-{len(why)}", b"raw", reason),
        lambda single, result: commits.append((len(single), result.reports_new)),
        "loop",
        domain.Channel.MNS,
    )
    written = poison.write_isolating(writes, records, why.append)
    return written, commits, why


def test_write_isolating_commits_a_good_batch_whole_and_isolates_nothing() -> None:
    sink = InMemorySink()
    written, commits, why = _isolate(sink, _records("a", "b", "c"))
    assert written == {"m-a", "m-b", "m-c"}
    assert commits == [(3, 3)] and why == [] and sink.writes == 1


def test_write_isolating_dead_letters_the_refused_record_alone() -> None:
    sink = InMemorySink(refuse={"m-b"})
    written, commits, why = _isolate(sink, _records("a", "b", "c"))
    assert written == {"m-a", "m-b", "m-c"}  # m-b committed as a dead letter
    assert commits == [(1, 1), (1, 0), (1, 1)]
    assert why == ["StoreWriteError('value refused for message m-b')"]
    (dead,) = sink.dead.values()
    assert dead.error == "store refused: value refused for message m-b"


def test_write_isolating_lets_an_outage_through_before_and_after_a_refusal() -> None:
    with pytest.raises(ports.StoreUnavailable):
        _isolate(InMemorySink(unavailable=True), _records("a"))

    class DownAfterRefusal(InMemorySink):
        def write_batch(self, batch: ports.Batch, now: datetime) -> ports.BatchResult:
            self.unavailable = True  # the ping after this refusal finds the database gone
            raise ports.StoreWriteError("refused")

    sink = DownAfterRefusal()
    commits: list[Any] = []
    with pytest.raises(ports.StoreUnavailable):
        writes = poison.Writes(
            sink,
            lambda: NOW,
            lambda single, reason: pytest.fail("nothing is dead-lettered in an outage"),
            lambda single, result: commits.append(single),
            "loop",
            domain.Channel.MNS,
        )
        poison.write_isolating(writes, _records("a", "b"), lambda error: pytest.fail("isolated"))
    assert commits == [] and not sink.dead
