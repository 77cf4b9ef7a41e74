"""The receiptd package of an earlier commit, for benchmarks that compare before and after.

``git archive <ref> receiptd`` is extracted into a scratch directory; a ``receiptd``
subprocess started with that directory first on ``PYTHONPATH`` runs the old code with this
checkout's interpreter and dependencies (no second virtualenv, no git worktree).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tree(ref: str, scratch: Path) -> tuple[str, str]:
    """``receiptd/`` of ``ref`` (default: the merge base with ``main``, or ``origin/main`` in
    a clone without a local ``main``) under ``scratch``; returns (directory for PYTHONPATH,
    abbreviated commit), or ("", "") when there is no ref to compare with (no git history, or
    no main branch): the benchmark then skips its "before" runs."""
    ref = ref or _merge_base()
    if not ref:
        print("bench: no main branch to compare with: no 'before' runs", file=sys.stderr)
        return "", ""
    commit = _git("rev-parse", "--short", ref)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "receiptd"], check=True, capture_output=True
    ).stdout
    scratch.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(scratch)], input=archive, check=True)
    return str(scratch), commit


def _merge_base() -> str:
    for main in ("main", "origin/main"):
        found = subprocess.run(
            ["git", "-C", str(ROOT), "merge-base", "HEAD", main], capture_output=True, check=False
        )
        if found.returncode == 0:
            return found.stdout.decode().strip()
    return ""


def _git(*args: str) -> str:
    out = subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True)
    return out.stdout.decode().strip()
