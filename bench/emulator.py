"""Emulator throughput: batch receive + batch delete through the real aliyun-mns-sdk.

The emulator runs in this process; the SDK clients run in a child process (one Account per
thread, as receiptd does), so client and server each get a core of a 2-core machine. Prints
one line with messages/s; exits non-zero below --min-rate (default 10,000).

    .venv/bin/python bench/emulator.py [--messages 60000] [--threads 4] [--min-rate 10000]
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

from receiptd.emulator import Emulator  # noqa: E402 - after the sys.path fix-up

BODY = "eyJwaG9uZV9udW1iZXIiOiIxMzgwMDAwMDAwMCIsInN1Y2Nlc3MiOnRydWV9"  # a small base64 JSON


def consume(endpoint: str, queue_name: str, creds: list[str], threads: int) -> int:
    """Child process: drain the queue with `threads` SDK clients; returns messages deleted."""
    from mns.account import Account
    from mns.mns_exception import MNSServerException

    counts = [0] * threads

    def worker(index: int) -> None:
        account = Account(endpoint, *creds)
        queue = account.get_queue(queue_name)
        queue.set_encoding(False)  # receiptd decodes bodies itself (spec README fact 1)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="SDK clients per process")
    parser.add_argument("--min-rate", type=float, default=10_000.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(consume(spec["endpoint"], spec["queue"], spec["creds"], args.threads))
        return 0

    with Emulator() as emu:
        queue = emu.mns.queue(emu.info.report_queue)
        for start in range(0, args.messages, 1000):
            queue.send_many([(BODY, 0, 8)] * min(1000, args.messages - start))
        token = emu.issue_token("SmsReport")
        spec = {
            "endpoint": emu.info.mns_endpoint,
            "queue": emu.info.report_queue,
            "creds": [token.access_key_id, token.access_key_secret, token.security_token],
        }
        command = [sys.executable, __file__, "--threads", str(args.threads)]
        children = [
            subprocess.Popen(  # noqa: S603 - our own script
                [*command, "--child", json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(args.processes)
        ]
        for child in children:
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
            return 1
        consumed = sum(int(out.strip()) for out in outputs)
        depth = emu.queue_depth("report")
    # The child's start-up (imports) is inside `elapsed`, so the figure is a lower bound.
    rate = consumed / elapsed
    print(
        f"emulator: {consumed} messages received+deleted in {elapsed:.2f}s "
        f"= {rate:,.0f} messages/s ({args.processes}x{args.threads} SDK clients, batches of 16); "
        f"emulator CPU {server_cpu / consumed * 1e6:.0f} us/message; left {depth}"
    )
    if consumed != args.messages:
        print(f"emulator: expected {args.messages} messages, got {consumed}", file=sys.stderr)
        return 1
    return 0 if rate >= args.min_rate else 1


if __name__ == "__main__":
    sys.exit(main())
