"""receiptd: the SMS delivery-receipt daemon for Alibaba Cloud SMS and Huawei KooMessage.

The module paths of the layout before the regroup (CHANGELOG, issue 22) stay importable for
one more release: ``import receiptd.consumer`` gives ``receiptd.ingest.mns.consumer`` itself
(the same module object, so patches and ``isinstance`` agree) with a ``DeprecationWarning``
naming the new path; ``receiptd.emulator`` and everything under it forward to
``receiptd_emulator``. One finder on ``sys.meta_path`` serves every old path, so no file is
left behind per module.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from importlib import metadata
from types import ModuleType
from typing import Any

try:
    __version__ = metadata.version("receiptd")
except metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

_MOVED = {
    "receiptd.batch": "receiptd.ingest.mns.batch",
    "receiptd.consumer": "receiptd.ingest.mns.consumer",
    "receiptd.polling": "receiptd.ingest.mns.polling",
    "receiptd.push_formats": "receiptd.ingest.push.formats",
    "receiptd.push": "receiptd.ingest.push.listener",
    "receiptd.group_commit": "receiptd.ingest.push.group_commit",
    "receiptd.poison": "receiptd.ingest.poison",
    "receiptd.registration": "receiptd.ingest.registration",
    "receiptd.compensator": "receiptd.compensation.cycle",
    "receiptd.planning": "receiptd.compensation.planning",
    "receiptd.horizon": "receiptd.compensation.horizon",
    "receiptd.ratelimit": "receiptd.compensation.ratelimit",
    "receiptd.service": "receiptd.daemon.service",
    "receiptd.signals": "receiptd.daemon.signals",
    "receiptd.notify": "receiptd.daemon.sd_notify",
    "receiptd.http": "receiptd.daemon.ops",
    "receiptd.connections": "receiptd.web.connections",
    "receiptd.retention": "receiptd.db.retention",
    "receiptd.health": "receiptd.daemon.health",
}
_MOVED_PACKAGES = {"receiptd.emulator": "receiptd_emulator"}
# ``receiptd.webhooks`` is a package now: its old names are served by its ``__getattr__``.
_WEBHOOKS = "receiptd.webhooks.dispatcher"


def _new_path(old: str) -> str | None:
    """Where an old module path lives now, or None when it did not move."""
    if old in _MOVED:
        return _MOVED[old]
    for package, target in _MOVED_PACKAGES.items():
        if old == package or old.startswith(package + "."):
            return target + old[len(package) :]
    return None


def _warn_moved(old: str, new: str) -> None:
    warnings.warn(
        f"{old} moved to {new}; the old path is removed in the next release",
        DeprecationWarning,
        stacklevel=3,
    )


class _Forward(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self) -> None:
        self._own_specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = _new_path(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(
            fullname, self, is_package=new in _MOVED_PACKAGES.values()
        )

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = _new_path(spec.name)
        assert new is not None
        _warn_moved(spec.name, new)
        module = importlib.import_module(new)
        self._own_specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The module is the new one, already executed; the import system has just set its
        ``__spec__`` to the old path's: give it back its own (importlib.resources, pickling
        and reloads read it)."""
        old = module.__spec__.name if module.__spec__ else ""
        module.__spec__ = self._own_specs.pop(old, module.__spec__)


def _install() -> None:
    if not any(isinstance(finder, _Forward) for finder in sys.meta_path):
        # First: an old path is an alias whatever else is on the path (a stale file of the
        # old layout in an editable install must not shadow the module it became).
        sys.meta_path.insert(0, _Forward())


def _webhooks_attribute(name: str) -> Any:
    """``receiptd.webhooks.<name>`` of the old module, now in ``receiptd.webhooks.dispatcher``."""
    dispatcher = importlib.import_module(_WEBHOOKS)
    if name.startswith("__") or not hasattr(dispatcher, name):
        raise AttributeError(f"module 'receiptd.webhooks' has no attribute {name!r}")
    _warn_moved(f"receiptd.webhooks.{name}", f"{_WEBHOOKS}.{name}")
    return getattr(dispatcher, name)


_install()
