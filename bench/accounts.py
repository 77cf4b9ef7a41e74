"""Idle cost of many accounts on one replica: receive requests, threads, memory, CPU.

    .venv/bin/python bench/accounts.py [--accounts 20] [--idle-seconds 180] [--warmup 20]
        [--baseline REF] [--no-baseline]

One emulator (a child process) serves ``--accounts`` Alibaba accounts (the default one and
``brand_01`` …), each with its own keys, token and SmsReport/SmsUp queues, and nothing is
ever enqueued. Side by side, in one run, each on accounts of its own:

* before (``--baseline``, default: the merge base with ``main``, extracted with ``git archive``
  and put first on ``PYTHONPATH``): one account per process, the only way before accounts:
  ``--accounts`` processes of ``receiptd consume``, each with the flat ``RECEIPTD_ALIYUN_*``
  settings of one account;
* now: one ``receiptd consume`` serving every account (``[accounts.<id>]`` by environment,
  ``RECEIPTD_ACCOUNT_<ID>_*``).

Both in token mode with production settings (default threads, batch size, long-poll wait).
Receive requests that arrive after ``--warmup`` (start-up: the first polls, a token per
account and queue) within ``--idle-seconds`` are counted from the emulator's call log (once
the long polls under way have ended: a call is logged when it ends) and scaled to an hour;
threads and resident memory are read from /proc at the end of the window, CPU seconds over
the window.

Target (issue 23): per queue <= 3,600 / wait receive requests an hour (180 at the default
20 s wait): one long poll per idle queue, the other workers asleep, no busy poll.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import baseline  # bench/baseline.py
import harness  # bench/harness.py
from consumer import Emu  # bench/consumer.py

from receiptd.config import Settings
from receiptd.testing import emulated

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def account_names(count: int, offset: int) -> list[str]:
    return [f"brand_{offset + i:02d}" for i in range(count)]


def _emulator_child(conn: Any) -> None:
    from dataclasses import asdict

    from receiptd_emulator.emulator import Emulator

    names: list[str] = conn.recv()
    with Emulator(profile="default") as emu:
        accounts = [asdict(emu.add_account(name)) for name in names]
        conn.send({**emu.info.as_dict(), "named": accounts})
        while (cmd := conn.recv()) is not None:
            op, args = cmd
            if op == "count":  # receive requests per queue that arrived in [args[0], args[1])
                calls = emu.calls("MNS.BatchReceiveMessage") + emu.calls("MNS.ReceiveMessage")
                inside = [c for c in calls if args[0] <= c.monotonic < args[1]]
                conn.send(Counter(c.params["queue"] for c in inside))
            elif op == "now":
                conn.send(time.monotonic())


class AccountsEmu(Emu):
    """bench/consumer.py's child-process emulator, told its accounts before it starts."""

    def __init__(self, names: list[str]) -> None:
        import multiprocessing as mp

        self.conn, child = mp.Pipe()
        self.proc = mp.get_context("spawn").Process(target=_emulator_child, args=(child,))
        self.proc.start()
        self.conn.send(names)
        self.info = argparse.Namespace(**self.conn.recv())
        self.settings = {}


def one_account_env(info: Any, account: dict[str, Any], db: str) -> dict[str, str]:
    """The flat single-account settings of one emulator account (before accounts)."""
    env = emulated.environ(info, db, {"RECEIPTD_LOG_LEVEL": "WARNING"})
    env["RECEIPTD_ALIYUN_ACCESS_KEY_ID"] = account["access_key_id"]
    env["RECEIPTD_ALIYUN_ACCESS_KEY_SECRET"] = account["access_key_secret"]
    env["RECEIPTD_ALIYUN_QUEUE_PREFIX"] = account["queue_prefix"]
    return env


def many_accounts_env(info: Any, accounts: list[dict[str, Any]], db: str) -> dict[str, str]:
    """One process's settings for all ``accounts`` (the first as the flat default one)."""
    first, *rest = accounts
    env = one_account_env(info, first, db)
    for account in rest:
        prefix = f"RECEIPTD_ACCOUNT_{account['name'].upper()}_"
        env[prefix + "PROVIDER"] = "aliyun"
        env[prefix + "ACCESS_KEY_ID"] = account["access_key_id"]
        env[prefix + "ACCESS_KEY_SECRET"] = account["access_key_secret"]
        env[prefix + "QUEUE_PREFIX"] = account["queue_prefix"]
    return env


def consume(env: dict[str, str], pythonpath: str | None) -> subprocess.Popen[bytes]:
    """``receiptd consume`` on a database it first migrates (``receiptd db upgrade``)."""
    if pythonpath:
        env = {**env, "PYTHONPATH": pythonpath}
    upgrade = [sys.executable, "-m", "receiptd", "db", "upgrade"]
    subprocess.run(upgrade, env=env, cwd="/", check=True, capture_output=True)
    cmd = [sys.executable, "-m", "receiptd", "consume"]
    return subprocess.Popen(cmd, env=env, cwd="/", stdout=subprocess.DEVNULL, stderr=sys.stderr)


def proc_stat(pid: int) -> tuple[float, int, int]:
    """CPU seconds, threads and resident bytes of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    threads = int(fields[17])
    rss = int(fields[21]) * PAGE
    return cpu, threads, rss


def totals(procs: list[subprocess.Popen[bytes]]) -> tuple[float, int, int]:
    stats = [proc_stat(p.pid) for p in procs]
    return sum(s[0] for s in stats), sum(s[1] for s in stats), sum(s[2] for s in stats)


def main() -> None:
    load = harness.start()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=180.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--baseline", default="", help="commit before accounts (default: "
                        "merge base with main)")  # fmt: skip
    parser.add_argument("--no-baseline", action="store_true", help="skip the 'before' row")
    args = parser.parse_args()
    n = args.accounts
    with tempfile.TemporaryDirectory(prefix="receiptd-accounts-") as scratch:
        old_tree, old_commit = "", ""
        if not args.no_baseline:
            old_tree, old_commit = baseline.tree(args.baseline, Path(scratch) / "baseline")
        # The default account and brand_01 … serve "now"; brand_NN past them serve "before".
        emu = AccountsEmu(account_names(n - 1, 1) + account_names(n if old_tree else 0, n))
        try:
            rows = run(emu, args, scratch, old_tree, old_commit)
        finally:
            emu.close()
    wait = Settings.model_fields["consumer_wait_seconds"].default
    print(f"{'consumers (' + str(n) + ' accounts x 2 queues, idle)':<46}{'processes':>10}"
          f"{'req/h/queue':>13}{'max':>6}{'target':>8}{'threads':>9}{'RSS MB':>8}"
          f"{'CPU s/h':>9}")  # fmt: skip
    for label, procs, counts, cpu, threads, rss in rows:
        per_queue = [c * 3600 / args.idle_seconds for c in counts]
        mean = sum(per_queue) / len(per_queue)
        print(f"{label:<46}{procs:>10}{mean:>13.0f}{max(per_queue):>6.0f}{3600 / wait:>8.0f}"
              f"{threads:>9}{rss / 1e6:>8.0f}{cpu * 3600 / args.idle_seconds:>9.1f}")  # fmt: skip
    print(
        f"idle over {args.idle_seconds:g} s after {args.warmup:g} s warm-up; production "
        f"settings (wait {wait} s, threads per account: "
        f"{Settings.model_fields['consumer_report_threads'].default} report, "
        f"{Settings.model_fields['consumer_up_threads'].default} up); {load.line()}"
    )


Row = tuple[str, int, list[int], float, int, int]


def run(
    emu: AccountsEmu, args: argparse.Namespace, scratch: str, old_tree: str, old_commit: str
) -> list[Row]:
    """Start every consumer, wait out the warm-up, count over the idle window."""
    info = emu.info
    n = args.accounts
    default = {
        "name": "default",
        "access_key_id": info.access_key_id,
        "access_key_secret": info.access_key_secret,
        "queue_prefix": info.queue_prefix,
    }
    now_accounts = [default, *info.named[: n - 1]]
    before_accounts = info.named[n - 1 :]
    groups: list[tuple[str, list[subprocess.Popen[bytes]], list[dict[str, Any]]]] = []
    try:
        env = many_accounts_env(info, now_accounts, f"sqlite:///{scratch}/now.db")
        groups.append(("receiptd now (one process, all accounts)", [consume(env, None)],
                       now_accounts))  # fmt: skip
        if before_accounts:
            procs = [
                consume(one_account_env(info, a, f"sqlite:///{scratch}/before-{i}.db"), old_tree)
                for i, a in enumerate(before_accounts)
            ]
            groups.insert(0, (f"receiptd before ({old_commit}; one per account)", procs,
                              before_accounts))  # fmt: skip
        time.sleep(args.warmup)
        for _, procs, _ in groups:
            assert all(p.poll() is None for p in procs), "a consumer exited during warm-up"
        since = emu.call("now")
        cpu_before = {label: totals(procs)[0] for label, procs, _ in groups}
        time.sleep(args.idle_seconds)
        until = emu.call("now")
        measured = {label: totals(procs) for label, procs, _ in groups}
        # A call is logged when it ends: let the long polls that arrived in the window end.
        time.sleep(Settings.model_fields["consumer_wait_seconds"].default + 5)
        counts: Counter[str] = emu.call("count", since, until)
        rows: list[Row] = []
        for label, procs, accounts in groups:
            cpu, threads, rss = measured[label]
            queues = [a["queue_prefix"] + kind for a in accounts for kind in ("SmsReport", "SmsUp")]
            per_queue = [counts[q] for q in queues]
            rows.append((label, len(procs), per_queue, cpu - cpu_before[label], threads, rss))
        return rows
    finally:
        for _, procs, _ in groups:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)


if __name__ == "__main__":
    main()
