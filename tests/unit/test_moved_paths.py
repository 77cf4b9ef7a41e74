"""The module paths before the regroup forward to the new ones for one more release."""

from __future__ import annotations

import importlib
import sys
from importlib import resources

import pytest

import receiptd
from receiptd.webhooks import dispatcher


def fresh_import(name: str) -> object:
    sys.modules.pop(name, None)
    with pytest.deprecated_call(match=name.replace(".", r"\.") + " moved to"):
        return importlib.import_module(name)


@pytest.mark.parametrize("old", sorted(receiptd._MOVED))
def test_every_old_module_path_is_the_new_module(old: str) -> None:
    new = importlib.import_module(receiptd._MOVED[old])
    assert fresh_import(old) is new
    assert new.__spec__ is not None and new.__spec__.name == new.__name__  # its own spec kept


def test_the_emulator_forwards_with_its_submodules_and_its_package_data() -> None:
    import receiptd_emulator
    from receiptd_emulator import profiles

    assert fresh_import("receiptd.emulator") is receiptd_emulator
    assert fresh_import("receiptd.emulator.profiles") is profiles
    assert resources.files("receiptd_emulator").joinpath("profiles").is_dir()


def test_the_old_webhooks_names_are_served_by_the_package() -> None:
    from receiptd import webhooks

    with pytest.deprecated_call(match="receiptd.webhooks.EndpointWorker moved to"):
        assert webhooks.EndpointWorker is dispatcher.EndpointWorker
    with pytest.raises(AttributeError):
        webhooks.NoSuchName  # noqa: B018


def test_a_path_that_never_existed_still_fails() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("receiptd.no_such_module")
