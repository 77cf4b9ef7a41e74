"""Emulator throughput: batch receive + batch delete through the real aliyun-mns-sdk.

The emulator runs in this process; the SDK clients run in child processes (one Account per
thread, as receiptd does; the SDK's XML parsing is the costliest part, so clients get their
own processes). Prints each run's messages/s and the emulator's CPU per message, then the best
run against the --target (10,000/s: met or not met, like every benchmark's table); exits
non-zero only below --min-rate (default 0: `make bench` goes on to the next benchmark).

    .venv/bin/python bench/emulator.py [--messages 60000] [--processes 2] [--threads 1] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import harness  # bench/harness.py

from receiptd_emulator import Emulator

BODY = "eyJwaG9uZV9udW1iZXIiOiIxMzgwMDAwMDAwMCIsInN1Y2Nlc3MiOnRydWV9"  # a small base64 JSON


def consume(endpoint: str, queue_name: str, creds: list[str], threads: int) -> int:
    """Child process: drain the queue with `threads` SDK clients; returns messages deleted."""
    from mns.account import Account
    from mns.mns_exception import MNSServerException

    counts = [0] * threads

    def worker(index: int) -> None:
        account = Account(endpoint, *creds)
        queue = account.get_queue(queue_name)
        queue.set_encoding(False)  # receiptd decodes bodies itself (docs/providers/aliyun-mns.md)
        while True:
            try:
                messages = queue.batch_receive_message(16, 1)
            except MNSServerException as error:
                if error.type == "MessageNotExist":
                    return
                raise
            queue.batch_delete_message([m.receipt_handle for m in messages])
            counts[index] += len(messages)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    print("ready", flush=True)
    sys.stdin.readline()  # "go": start together, after the imports
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts)


def run_once(args: argparse.Namespace) -> tuple[int, float, float]:
    """One drain of a pre-filled queue: (messages consumed, seconds, emulator CPU seconds)."""
    with Emulator() as emu:
        queue = emu.mns.queue(emu.info.report_queue)
        queue.push(BODY for _ in range(args.messages))
        token = emu.issue_token("SmsReport")
        spec = {
            "endpoint": emu.info.mns_endpoint,
            "queue": emu.info.report_queue,
            "creds": [token.access_key_id, token.access_key_secret, token.security_token],
        }
        command = [sys.executable, __file__, "--threads", str(args.threads)]
        children = [
            subprocess.Popen(
                [*command, "--child", json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(args.processes)
        ]
        for child in children:  # wait until every client has imported the SDK and connected
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        started, cpu_started = time.perf_counter(), time.process_time()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=600)[0] for child in children]
        elapsed = time.perf_counter() - started
        server_cpu = time.process_time() - cpu_started
        if any(child.returncode != 0 for child in children):
            raise SystemExit("emulator: a client process failed")
        consumed = sum(int(out.strip()) for out in outputs)
        if consumed != args.messages or emu.queue_depth("report")["visible"]:
            raise SystemExit(f"emulator: expected {args.messages} messages, got {consumed}")
    return consumed, elapsed, server_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--processes", type=int, default=2, help="SDK client processes")
    parser.add_argument("--threads", type=int, default=1, help="SDK clients per process")
    parser.add_argument("--runs", type=int, default=3, help="report each run and the best")
    parser.add_argument("--target", type=float, default=10_000.0, help="messages/s")
    parser.add_argument("--min-rate", type=float, default=0.0, help="exit 1 below this")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(consume(spec["endpoint"], spec["queue"], spec["creds"], args.threads))
        return 0

    load = harness.start()
    rates = []
    for run in range(1, args.runs + 1):
        consumed, elapsed, server_cpu = run_once(args)
        rates.append(consumed / elapsed)
        print(
            f"emulator run {run}: {consumed} messages received+deleted in {elapsed:.2f}s "
            f"= {rates[-1]:,.0f} messages/s; emulator CPU {server_cpu / consumed * 1e6:.0f} "
            f"us/message"
        )
    # Best of N: other processes on a shared machine only ever make a run slower.
    best = max(rates)
    print(
        f"emulator: {best:,.0f} messages/s (best of {args.runs}; batch receive 16 + batch delete, "
        f"{args.processes}x{args.threads} aliyun-mns-sdk clients); target {args.target:,.0f}: "
        f"{'met' if best >= args.target else 'NOT met'}; {load.line()}"
    )
    return 0 if best >= args.min_rate else 1


if __name__ == "__main__":
    sys.exit(main())
