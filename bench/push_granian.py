"""The push listener's WSGI app, built from the RECEIPTD_* environment as ``receiptd run``
builds it, for bench/push.py's server comparison under granian (each granian worker process
imports this module and builds its own store and group commits)::

    granian --interface wsgi --workers 2 --blocking-threads 8 push_granian:app
"""

from __future__ import annotations

import sys

from receiptd import config, logs
from receiptd.cli.common import secret_values
from receiptd.wiring import core, daemon

_settings = config.load_settings(None)
_log = _settings.parts.logging
logs.configure(
    level=_log.level,
    fmt=_log.format,
    secrets=secret_values(_settings),
    mask_phones=not _log.show_phone_numbers,
    stream=sys.stderr,
)
_store, _ = core.stores(_settings)
_app = daemon.push_app(_settings, _store)
if _app is None:
    raise SystemExit("push_granian: RECEIPTD_PUSH_ADDR and RECEIPTD_PUSH_TOKEN must be set")
app = _app
