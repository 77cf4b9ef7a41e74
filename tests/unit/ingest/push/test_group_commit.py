"""Group commit: concurrent callers share transactions; each returns after its own commit."""

from __future__ import annotations

import threading
import time

import pytest

from receiptd import domain, ports
from receiptd.ingest.push.group_commit import GroupCommit
from tests.system.reliability import wait_for


def one(i: int) -> ports.Batch:
    report = domain.SmsReport(
        f"b{i}", "13800000000", True, domain.parse_provider_time("20260101000000")
    )
    return ports.Batch(reports=[ports.ReportRecord(str(i), report)])


class SlowSink:
    """Each commit takes a while; records which batches went into which commit."""

    def __init__(self, fail: type[Exception] | None = None) -> None:
        self.commits: list[list[str]] = []
        self.committed: set[str] = set()
        self.fail = fail
        self.lock = threading.Lock()

    def commit(self, batch: ports.Batch) -> ports.BatchResult:
        time.sleep(0.02)
        if self.fail is not None:
            raise self.fail("database away")
        with self.lock:
            ids = [r.message_id for r in batch.reports]
            self.commits.append(ids)
            self.committed.update(ids)
        return ports.BatchResult(reports_new=len(ids))


def run(
    group: GroupCommit, sink: SlowSink, n: int, results: dict[int, ports.BatchResult] | None = None
) -> dict[int, BaseException | None]:
    outcome: dict[int, BaseException | None] = {}

    def call(i: int) -> None:
        try:
            result = group.write(one(i))
            # Returned: its record must already be committed.
            assert str(i) in sink.committed
            outcome[i] = None
            if results is not None:
                results[i] = result
        except Exception as exc:
            outcome[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return outcome


def test_concurrent_writes_share_transactions_and_return_after_their_commit() -> None:
    """The first commit is held until the 39 other writers queue behind it (not a sleep they
    might outlast on a loaded machine): the second commit carries all of them."""
    sink = SlowSink()
    gate = threading.Event()
    first = sink.commit

    def held(batch: ports.Batch) -> ports.BatchResult:
        if not sink.commits:
            assert gate.wait(10)
        return first(batch)

    group = GroupCommit(held)
    outcome: dict[int, BaseException | None] = {}
    results: dict[int, ports.BatchResult] = {}
    writers = threading.Thread(target=lambda: outcome.update(run(group, sink, 40, results)))
    writers.start()
    wait_for(lambda: len(group._queue) == 39, 10, "39 writers queued behind the leader")
    gate.set()
    writers.join(30)
    assert outcome == dict.fromkeys(range(40))
    assert sorted(i for c in sink.commits for i in c) == sorted(str(i) for i in range(40))
    assert [len(c) for c in sink.commits] == [1, 39]  # merged: two transactions for 40
    # Each writer gets the result of the transaction that held its record.
    assert sorted(r.reports_new for r in results.values()) == [1] + [39] * 39


def test_group_size_is_bounded() -> None:
    sink = SlowSink()
    run(GroupCommit(sink.commit, max_records=3), sink, 30)
    assert max(len(c) for c in sink.commits) <= 3


@pytest.mark.parametrize("error", [ports.StoreUnavailable, ports.StoreWriteError])
def test_every_member_gets_the_error(error: type[Exception]) -> None:
    sink = SlowSink(fail=error)
    outcome = run(GroupCommit(sink.commit), sink, 10)
    assert all(isinstance(exc, error) for exc in outcome.values()) and len(outcome) == 10


def test_a_lone_write_commits_at_once() -> None:
    sink = SlowSink()
    group = GroupCommit(sink.commit)
    group.write(one(1))
    group.write(one(2))
    assert sink.commits == [["1"], ["2"]]
