"""The repository cites only itself and public documents.

A comment, test or doc that points at a sibling folder of the checkout, at notes kept outside
the repository or at a path on one machine is a dead link for every other reader: the fact
belongs in docs/providers/ with the provider's public page. This test scans the code, the
emulator, the tests, the benches, the docs, the deployment files, README and CHANGELOG and
names every such citation by file and line.

The patterns are built from pieces, so this file does not match itself; the scanner's own
tests plant each kind of citation in a scratch tree to show it fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = (
    "receiptd",
    "receiptd_emulator",
    "tests",
    "bench",
    "docs",
    "deploy",
    "systemd",
    "README.md",
    "CHANGELOG.md",
)
SKIPPED_DIRS = frozenset({"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"})
MAX_BYTES = 2_000_000  # larger files are data, not prose

# Pieces of the patterns, so that this file matches none of them.
_SHARED, _SPEC, _FACT = "sha" + "red", "sp" + "ec", "fa" + "ct"
#: Citations that lead out of the repository (case-insensitive).
CITATIONS = re.compile(
    "|".join(
        (
            re.escape("../" + _SHARED),  # the checkout's sibling folder
            re.escape(_SHARED + "/" + _SPEC),
            _SPEC + r"\s+" + "notes",  # notes kept outside the repository, by that name
            r"\b" + _SPEC + r"\s+(?:README|" + _FACT + r"s?\b)",  # their index, their items
            r"[(,;]\s*(?:" + _SPEC + r"\s+)?" + _FACT + r"s?\s+\d+",  # an item cited by number
            re.escape("/" + "work/"),  # absolute paths on a development machine
            re.escape("/" + "check/"),
            # The notes' file names, bare (docs/providers/ holds the repository's own pages).
            r"(?<![\w/.-])(?:dysmsapi|alicom-receipts|sdk-notes|international|mns|koomessage)"
            + re.escape(".md"),
        )
    ),
    re.IGNORECASE,
)


def text_files(root: Path, entries: Iterable[str]) -> Iterator[Path]:
    """The files under ``entries`` (relative to ``root``) that hold UTF-8 text."""
    for entry in entries:
        path = root / entry
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        for candidate in candidates:
            if not candidate.is_file() or SKIPPED_DIRS.intersection(candidate.parts):
                continue
            if candidate.stat().st_size > MAX_BYTES:
                continue
            data = candidate.read_bytes()
            if b"\0" in data:
                continue
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            yield candidate


def citations(root: Path, entries: Iterable[str] = SCANNED) -> list[str]:
    """``file:line: text`` for every line that cites something outside the repository."""
    found = []
    for path in text_files(root, entries):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if CITATIONS.search(line):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def test_the_repository_cites_only_itself_and_public_documents() -> None:
    found = citations(ROOT)
    assert not found, (
        "citations of files outside the repository (restate the fact in docs/providers/ with "
        "the provider's public document, and cite that):\n" + "\n".join(found)
    )


def test_every_scanned_entry_exists() -> None:
    """A renamed folder must not silently drop out of the scan."""
    missing = [entry for entry in SCANNED if not (ROOT / entry).exists()]
    assert not missing


@pytest.mark.parametrize(
    "line",
    [
        "Provider facts: ``../" + _SHARED + "/spec/push.md``.",
        '"""Pushed receipt bodies (../' + _SHARED + '/spec/push.md)."""',
        "builds an EXPIRED report (``" + _SHARED + "/spec`` README).",
        f"- **Long-poll cap** ({_FACT} 11 of the {_SPEC} notes): MNS caps ...",
        f"copies = 2  # receipts are not idempotent ({_FACT} 5)",
        f"# Seconds a pending send is asked about (72 h, {_FACT} 12); 0 = up to the window.",
        f"queue.set_encoding(False)  # decodes bodies itself ({_SPEC} README {_FACT} 1)",
        f"and bills it ({_SPEC} {_FACT} 11).",
        "Confirmed (captures in `/" + "work/" + _SHARED + "/spec`):",
        "see /" + "check/notes/mns.txt",
        f"| batch delete partial failure | {_SPEC} mns" + ".md §6 |",
        '"""SendSms and QuerySendDetails (dysmsapi' + '.md), answered from the truth."""',
    ],
)
def test_a_planted_citation_is_named_by_file_and_line(tmp_path: Path, line: str) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(f"# Title\n\nclean line\n{line}\n", "utf-8")
    assert citations(tmp_path, ["docs"]) == [f"docs/page.md:4: {line.strip()}"]


@pytest.mark.parametrize(
    "line",
    [
        "restated in docs/providers/aliyun-mns.md, with the provider's page",
        "KooMessage: docs/providers/huawei-koomessage.md and docs/huawei.md",
        "the shared database: replicas report the same value",
        'ReadWritePaths=/var/lib/receiptd  # "touch /tmp/start"',
        "https://help.aliyun.com/document_detail/101867.html (doc 101867)",
        "a spec = PushSpec(url=url) and the specification of the API",
        "in fact, 5 sends were lost",
    ],
)
def test_references_into_the_repository_and_ordinary_words_pass(tmp_path: Path, line: str) -> None:
    (tmp_path / "note.py").write_text(f"# {line}\n", "utf-8")
    assert citations(tmp_path, ["note.py"]) == []


def test_binary_and_cache_files_are_not_read(tmp_path: Path) -> None:
    planted = "see ../" + _SHARED + "/spec"
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "__pycache__" / "m.pyc").write_text(planted, "utf-8")
    (tmp_path / "pkg" / "blob.bin").write_bytes(b"\0" + planted.encode())
    (tmp_path / "pkg" / "ok.py").write_text("x = 1\n", "utf-8")
    assert citations(tmp_path, ["pkg"]) == []
