"""What every benchmark script shares: quiet logs, the load-average line, scratch databases.

* ``start()``: call first in ``main()``. receiptd's info logs go nowhere (warnings and errors
  to stderr), so a script's stdout is its tables; SIGTERM becomes ``SystemExit``, so the
  ``finally`` blocks that drop scratch databases run when a run is stopped, too (and, should
  that exception be swallowed, a fallback drops them after ``STOP_GRACE`` seconds and exits).
* ``Load``: the load average when the run started and when it ended (the machine may be
  shared: a figure means little without it).
* ``scratch_postgres()`` / ``Scratch``: PostgreSQL databases of a run's own, dropped at the
  end even when the run fails. Each is announced on stderr (``bench: scratch database NAME
  created`` / ``dropped``), which tests/bench checks.

The server is ``RECEIPTD_TEST_POSTGRES_URL`` (as for the tests), default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from receiptd import logs

PG_ADMIN = os.environ.get(
    "RECEIPTD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def start() -> Load:
    """Quiet logs, SIGTERM as SystemExit; returns the load average at the start."""
    logs.configure(level="WARNING", fmt="console", stream=sys.stderr)
    signal.signal(signal.SIGTERM, _exit)
    return Load()


# A SystemExit raised while the interpreter runs a garbage-collection callback or a __del__
# is printed as "Exception ignored" and the run goes on (tests/bench saw a stopped scale run
# keep loading past its 120 s). So a stop also arms a fallback: if the run has not ended
# within STOP_GRACE seconds, the scratch databases are dropped here and the process ends.
STOP_GRACE = 30.0
_LIVE: list[Scratch] = []  # the scratch sets of this run, for the fallback


def _exit(signum: int, _frame: FrameType | None) -> None:
    fallback = threading.Timer(STOP_GRACE, _hard_exit, args=(128 + signum,))
    fallback.daemon = True
    fallback.start()
    raise SystemExit(128 + signum)


def _hard_exit(code: int) -> None:
    for scratch in list(_LIVE):
        scratch.__exit__()
    sys.stderr.flush()
    os._exit(code)


class Load:
    """The 1-minute load average now (``before``) and when ``line()`` is called (after)."""

    def __init__(self) -> None:
        self.before = os.getloadavg()[0]

    def line(self) -> str:
        after = os.getloadavg()[0]
        return f"{os.cpu_count()} CPUs, load average {self.before:.2f} before / {after:.2f} after"


def add_consumer_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--consumer-wait",
        type=int,
        default=None,
        help="consumer_wait_seconds of every receiptd this run starts (default: production's; "
        "each `consume --until-idle` ends with one empty long poll of it)",
    )


def consumer_overrides(args: argparse.Namespace) -> dict[str, str]:
    """Settings beyond production's for the receiptd processes (``--consumer-wait``)."""
    if args.consumer_wait is None:
        return {}
    return {"RECEIPTD_CONSUMER_WAIT_SECONDS": str(args.consumer_wait)}


# --- scratch PostgreSQL databases ---------------------------------------------------------


def new_url(prefix: str = "receiptd_bench") -> str:
    """The URL of a database not created yet, with a name of its own."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    return make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)


def create_postgres(url: str) -> None:
    name = make_url(url).database
    _admin(f"CREATE DATABASE {name}")
    print(f"bench: scratch database {name} created", file=sys.stderr, flush=True)


def drop_postgres(url: str) -> None:
    name = make_url(url).database
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    print(f"bench: scratch database {name} dropped", file=sys.stderr, flush=True)


def _admin(statement: str) -> None:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        admin.dispose()


@contextmanager
def scratch_postgres(prefix: str = "receiptd_bench") -> Iterator[str]:
    """One scratch database for the ``with`` block, dropped however the block ends."""
    with Scratch() as scratch:
        yield scratch.create(prefix)


class Scratch:
    """Scratch databases created one by one during a run, every one dropped at its end."""

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.urls: list[str] = []

    def create(self, prefix: str = "receiptd_bench") -> str:
        url = new_url(prefix)
        self.urls.append(url)  # registered first: a stop at any later point still drops it
        create_postgres(url)
        return url

    def __enter__(self) -> Scratch:
        _LIVE.append(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self in _LIVE:
            _LIVE.remove(self)
        if self.keep:
            return
        urls, self.urls = self.urls, []  # once: a stop's fallback may race the normal end
        for url in urls:
            drop_postgres(url)  # IF EXISTS: also when its creation never happened
