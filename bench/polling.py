"""Idle cost of consuming MNS: receive requests on an idle queue, and in the capped state.

    .venv/bin/python bench/polling.py [--idle-seconds 180] [--capped-seconds 30] [--baseline REF]
        [--warmup 5] [--settle 30] [--no-baseline]

Three consumers of one queue each (one replica, one queue), side by side, in one run, against
one emulator (a child process), each on a queue of its own:

* the provider's Python demo loop for MNS receipts: ``batch_receive_message(10, 3)``, and
  on ``MessageNotExist`` ``time.sleep(10)``;
* receiptd before this change: ``receiptd consume --queue report`` of the ``--baseline`` commit
  (default: the merge base with ``main``), extracted with ``git archive`` into a scratch
  directory and put first on ``PYTHONPATH`` (same interpreter and dependencies);
* receiptd now: the same command from this checkout.

Both receiptd runs use production settings (direct mode with the emulator's MNS owner key, so
each gets its own queue name; default threads, batch size and long-poll wait).

* idle: nothing is ever enqueued. Requests are counted from the emulator's call log after a
  warm-up (the first polls at start-up), over ``--idle-seconds``, and scaled to an hour.
* capped (measured first): the emulator caps long polls at one per queue, and another client
  (its own key, not counted) holds that one slot on every queue, re-polling as soon as its
  poll (of ``--settle`` seconds, at most 30) ends, before the consumers start; so every long
  poll of the consumer under test is answered ``MessageNotExist`` at once, as MNS does past
  its cap. Requests per second over ``--capped-seconds``. Then the cap is lifted and, after
  ``--settle`` seconds (the holders' last polls and the consumers' backoffs have run out), the
  idle window follows.

Targets (issue 14): idle <= 2 x 3,600 / wait requests per hour per queue per replica; capped
<= 1 request/s per queue per replica.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import baseline  # bench/baseline.py
import harness  # bench/harness.py
from consumer import Emu  # bench/consumer.py
from mns.account import Account
from mns.mns_exception import MNSExceptionBase

from receiptd.config import Settings
from receiptd.testing import emulated

QUEUES = {"demo": "bench-demo", "before": "bench-before", "after": "bench-after"}


# --- the emulator, in a child process ------------------------------------------------------


def _emulator_child(conn: Any) -> None:
    from receiptd_emulator.credentials import Credential, KeyKind
    from receiptd_emulator.emulator import Emulator

    with Emulator(profile="default") as emu:
        for name in QUEUES.values():
            emu.mns.create_queue(name)
        emu.credentials.add(Credential(HOLDER_KEY, HOLDER_SECRET, KeyKind.MNS_OWNER))
        conn.send(emu.info.as_dict())
        stop = threading.Event()
        while (cmd := conn.recv()) is not None:
            op, args = cmd
            if op == "count":  # receive requests per queue since monotonic time args[0]
                calls = emu.calls("MNS.BatchReceiveMessage") + emu.calls("MNS.ReceiveMessage")
                ours = [c for c in calls if c.access_key_id != HOLDER_KEY]
                conn.send(Counter(c.params["queue"] for c in ours if c.monotonic >= args[0]))
            elif op == "now":
                conn.send(time.monotonic())
            elif op == "cap":  # one long poll per queue, held by another client for args[0] s
                emu.set_long_poll_cap(per_queue=1)
                for name in QUEUES.values():
                    hold = (emu.info, name, args[0], stop)
                    threading.Thread(target=_hold, args=hold, daemon=True).start()
                time.sleep(1.0)
                conn.send(emu.long_polls())
            elif op == "uncap":
                stop.set()
                emu.set_long_poll_cap()
                conn.send(True)
        stop.set()


HOLDER_KEY, HOLDER_SECRET = "LTAI5tBenchSlotHolder01", "BenchSlotHolderSecret000001"  # fakes


def _hold(info: Any, queue_name: str, wait: int, stop: threading.Event) -> None:
    """Keep the queue's one long-poll slot: poll again as soon as a poll ends."""
    account = Account(info.mns_endpoint, HOLDER_KEY, HOLDER_SECRET)
    queue = account.get_queue(queue_name)
    while not stop.is_set():
        started = time.monotonic()
        try:
            queue.batch_receive_message(16, wait)
        except MNSExceptionBase:
            if time.monotonic() - started < 1:  # refused: the consumer holds it right now
                time.sleep(0.05)


# --- the consumers -----------------------------------------------------------------------


def demo_loop(info: Any, queue_name: str, stop: threading.Event) -> None:
    """The provider's Python demo: batch receive with a 3 s wait, sleep 10 s when empty."""
    account = Account(info.mns_endpoint, info.mns_owner_access_key_id,
                      info.mns_owner_access_key_secret)  # fmt: skip
    queue = account.get_queue(queue_name)
    while not stop.is_set():
        try:
            queue.batch_receive_message(10, 3)
        except MNSExceptionBase as exc:
            if exc.type == "MessageNotExist":
                stop.wait(10)


def receiptd_consume(info: Any, queue_name: str, db: str, pythonpath: str | None) -> Any:
    extra = {"RECEIPTD_ALIYUN_REPORT_QUEUE": queue_name, "RECEIPTD_LOG_LEVEL": "WARNING"}
    env = emulated.environ(info, db, extra, token_mode=False)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, "-m", "receiptd", "consume", "--queue", "report"]
    return subprocess.Popen(cmd, env=env, cwd="/", stdout=subprocess.DEVNULL)


def default_wait(tree: str) -> int:
    """consumer_wait_seconds by default in the receiptd at ``tree`` (5 before issue 14)."""
    code = (
        "from receiptd.config import Settings as S; "
        "print(S.model_fields['consumer_wait_seconds'].default)"
    )
    env = {**os.environ, "PYTHONPATH": tree}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd="/", capture_output=True, check=True
    )
    return int(done.stdout)


def measure(emu: Emu, seconds: float) -> Counter[str]:
    since = emu.call("now")
    time.sleep(seconds)
    counts: Counter[str] = emu.call("count", since)
    return counts


def main() -> None:
    load = harness.start()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle-seconds", type=float, default=180.0)
    parser.add_argument("--capped-seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--settle", type=int, default=30,
        help="the slot holders' long poll (s, at most 30), waited out after the cap is lifted",
    )  # fmt: skip
    parser.add_argument("--baseline", default="", help="commit before the change (default: "
                        "merge base with main)")  # fmt: skip
    parser.add_argument("--no-baseline", action="store_true", help="skip the 'before' consumer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="receiptd-polling-") as scratch:
        old_tree, old_commit, old_wait = "", "", 0
        if not args.no_baseline:
            old_tree, old_commit = baseline.tree(args.baseline, Path(scratch) / "baseline")
            old_wait = default_wait(old_tree) if old_tree else 0
        idle, capped = run(args, scratch, old_tree)
    wait_now = Settings.model_fields["consumer_wait_seconds"].default
    rows = [("provider demo loop", 3, QUEUES["demo"])]
    if old_tree:
        rows.append((f"receiptd before ({old_commit})", old_wait, QUEUES["before"]))
    rows.append(("receiptd now", wait_now, QUEUES["after"]))
    print(f"{'consumer (1 replica, 1 queue)':<32}{'wait':>6}{'idle req/h':>12}"
          f"{'target':>9}{'capped req/s':>14}{'target':>8}")  # fmt: skip
    for label, wait, queue in rows:
        per_hour = idle[queue] * 3600 / args.idle_seconds
        per_second = capped[queue] / args.capped_seconds
        print(f"{label:<32}{wait:>5}s{per_hour:>12.0f}{2 * 3600 / wait:>9.0f}"
              f"{per_second:>14.2f}{1:>8}")  # fmt: skip
    print(
        f"idle over {args.idle_seconds:g} s, capped over {args.capped_seconds:g} s (after "
        f"{args.warmup:g} s warm-up each); receiptd at production settings (default "
        f"threads: {Settings.model_fields['consumer_report_threads'].default} report); "
        f"{load.line()}"
    )


def run(args: argparse.Namespace, scratch: str, old_tree: str) -> tuple[Counter[str], Counter[str]]:
    """The capped window, then the idle one: receive requests per queue in each."""
    emu = Emu(_emulator_child)
    stop = threading.Event()
    db = f"sqlite:///{scratch}/bench.db"
    procs = []
    try:
        subprocess.run([sys.executable, "-m", "receiptd", "db", "upgrade"],
                       env=emulated.environ(emu.info, db), check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        # Capped first: the slot holders must have the slots before the consumers come
        # (whoever holds a slot keeps it by polling again at once).
        emu.call("cap", min(args.settle, 30))
        threading.Thread(
            target=demo_loop, args=(emu.info, QUEUES["demo"], stop), daemon=True
        ).start()
        if old_tree:
            procs.append(receiptd_consume(emu.info, QUEUES["before"], db, old_tree))
        procs.append(receiptd_consume(emu.info, QUEUES["after"], db, None))
        time.sleep(args.warmup)
        capped = measure(emu, args.capped_seconds)
        emu.call("uncap")
        time.sleep(args.warmup + args.settle)  # the holders' last polls end; backoffs run out
        idle = measure(emu, args.idle_seconds)
        for p in procs:
            assert p.poll() is None, "a consumer died"
    finally:
        stop.set()
        for p in procs:
            p.terminate()
            p.wait(30)
        emu.close()
    return idle, capped


if __name__ == "__main__":
    main()
