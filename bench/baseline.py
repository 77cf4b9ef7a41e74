"""The receiptd package of an earlier commit, for benchmarks that compare before and after.

``git archive <ref> receiptd`` is extracted into a scratch directory; a ``receiptd``
subprocess started with that directory first on ``PYTHONPATH`` runs the old code with this
checkout's interpreter and dependencies (no second virtualenv, no git worktree).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tree(ref: str, scratch: Path) -> tuple[str, str]:
    """``receiptd/`` of ``ref`` (default: the merge base with ``main``) under ``scratch``;
    returns (directory for PYTHONPATH, abbreviated commit)."""
    commit = _git("rev-parse", "--short", ref or _git("merge-base", "HEAD", "main"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "receiptd"], check=True, capture_output=True
    ).stdout
    scratch.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(scratch)], input=archive, check=True)
    return str(scratch), commit


def _git(*args: str) -> str:
    out = subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True)
    return out.stdout.decode().strip()
