"""receiptd.roles: which roles a `receiptd run` process runs."""

from __future__ import annotations

import pytest

from receiptd import roles


def test_parse_expands_groups_drops_repeats_and_keeps_the_start_order() -> None:
    assert roles.parse("worker, consumer,PUSH, prune") == (
        "consumer",
        "push",
        "compensator",
        "prune",
    )
    assert roles.parse(" , ") == ()
    assert roles.parse("webhooks") == ("webhooks",)


def test_parse_names_what_is_not_a_role() -> None:
    with pytest.raises(ValueError, match="unknown role\\(s\\) consumers, all; known: consumer"):
        roles.parse("consumers,push,all")


MISSING = {"push": "push_addr: not set", "webhooks": "webhook_urls: none"}


def test_without_named_roles_every_configured_role_runs() -> None:
    assert roles.choose((), MISSING) == ("consumer", "compensator", "prune")
    assert not roles.is_split(roles.choose((), MISSING), MISSING)


def test_a_named_role_that_is_not_configured_names_its_setting() -> None:
    with pytest.raises(roles.RoleNotConfigured, match=r"^invalid setting push_addr: not set"):
        roles.choose(("consumer", "push"), MISSING)


def test_named_roles_run_alone_and_make_the_process_a_split_one() -> None:
    active = roles.choose(("compensator", "prune"), MISSING)
    assert active == ("compensator", "prune")
    assert roles.is_split(active, MISSING)
    assert not roles.is_split(roles.choose(roles.parse("consumer,worker"), MISSING), MISSING)


@pytest.mark.parametrize(
    ("active", "named", "folds"),
    [
        (("consumer", "push"), (), True),  # no roles named: as before roles, it folds
        (("consumer",), ("consumer",), False),
        (("push", "webhooks"), ("push", "webhooks"), False),
        (("compensator",), ("compensator",), True),
        (("prune",), ("prune",), True),
    ],
)
def test_the_counts_are_folded_where_a_worker_role_runs(
    active: tuple[str, ...], named: tuple[str, ...], folds: bool
) -> None:
    assert roles.folds_counts(active, named) is folds
