"""The push listener's WSGI app, built from the RECEIPTD_* environment as ``receiptd run``
builds it, for bench/push.py's server comparison under granian (each granian worker process
imports this module and builds its own store and group commits)::

    granian --interface wsgi --workers 2 --blocking-threads 8 push_granian:app
"""

from __future__ import annotations

from receiptd import config
from receiptd.cli.common import configure_logs
from receiptd.wiring import core, daemon

_settings = config.load_settings(None)
configure_logs(_settings)
_store, _ = core.stores(_settings)
_app = daemon.push_app(_settings, _store)
if _app is None:
    raise SystemExit("push_granian: RECEIPTD_PUSH_ADDR and RECEIPTD_PUSH_TOKEN must be set")
app = _app
