"""What one ``receiptd run`` process does: its roles (docs/operations.md "Roles"). Pure.

``receiptd run`` consumes MNS, listens for pushes, dispatches webhooks, compensates and prunes.
Each of those is a *role*; ``--roles`` / ``roles`` picks some of them, so each can run in its
own process (a systemd instance, a Kubernetes Deployment) and be scaled on its own. A group
name stands for several roles where one word must do (a systemd instance name cannot hold a
comma): ``worker`` is the compensator and the prune.

Which wins: the switches. A role runs only where it is configured (``push_addr``,
``webhook_urls``, ``compensator_enabled``, ``prune_enabled``, an account with a queue), and a
role named but not configured stops start-up naming the setting, never silently idles. No
roles named means every configured role, as before roles existed.
"""

from __future__ import annotations

from collections.abc import Mapping

CONSUMER = "consumer"
PUSH = "push"
WEBHOOKS = "webhooks"
COMPENSATOR = "compensator"
PRUNE = "prune"
# In the order a process starts them (and lists them).
ROLES = (CONSUMER, PUSH, WEBHOOKS, COMPENSATOR, PRUNE)
GROUPS: Mapping[str, tuple[str, ...]] = {"worker": (COMPENSATOR, PRUNE)}
# The roles that fold the send counts (receiptd.db.counts) besides a process of every role:
# the background maintenance, where a lone small replica runs it.
COUNTS_FOLDERS = frozenset({COMPENSATOR, PRUNE})


def parse(value: str) -> tuple[str, ...]:
    """``consumer, worker`` to roles in :data:`ROLES` order (groups expanded, repeats
    dropped; blank: none). ValueError names what is not a role."""
    words = [word.strip().lower() for word in value.split(",") if word.strip()]
    unknown = [w for w in words if w not in ROLES and w not in GROUPS]
    if unknown:
        known = ", ".join((*ROLES, *GROUPS))
        raise ValueError(f"unknown role(s) {', '.join(unknown)}; known: {known}")
    named = {role for word in words for role in GROUPS.get(word, (word,))}
    return tuple(role for role in ROLES if role in named)


class RoleNotConfigured(ValueError):
    """A role was named whose setting is off; the message names the setting."""


def choose(named: tuple[str, ...], missing: Mapping[str, str]) -> tuple[str, ...]:
    """The roles this process runs. ``missing`` maps each role that is not configured to why:
    the setting that would configure it and what it lacks (``push_addr: not set``). Without
    ``named``: every configured role. RoleNotConfigured for a named role in ``missing``."""
    if not named:
        return tuple(role for role in ROLES if role not in missing)
    for role in named:
        if role in missing:
            raise RoleNotConfigured(f"invalid setting {missing[role]} (role {role} is named)")
    return named


def is_split(active: tuple[str, ...], missing: Mapping[str, str]) -> bool:
    """Whether ``active`` is only part of what is configured (another process must run the
    rest)."""
    return set(active) != {role for role in ROLES if role not in missing}


def folds_counts(active: tuple[str, ...], named: tuple[str, ...]) -> bool:
    """Whether this process folds the send counts: every process that was given no roles (as
    before), else one with a worker role."""
    return not named or bool(COUNTS_FOLDERS & set(active))
