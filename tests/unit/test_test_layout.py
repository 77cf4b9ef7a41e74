"""The tests mirror the code: the test of a module is a lookup, not a grep.

For a module ``receiptd/<path>/<m>.py`` its test is ``tests/unit/<path>/test_<m>.py`` (pure) or
``tests/integration/<path>/test_<m>.py`` (a real database or socket), or a file of one aspect of
it, ``test_<m>_<aspect>.py``, in one of those folders. The emulator, ``receiptd_emulator/<m>.py``,
is tested under ``tests/{unit,integration}/emulator/``. A few modules have nothing to test on
their own (:data:`NO_LOGIC`); a few are tested by a scenario-style integration test that keeps
its name (:data:`SCENARIO_TESTS`); :data:`NOT_YET_MIRRORED` lists the modules still waiting for
a test of their own. That list only shrinks: a module listed there that gains its test fails
this suite until it is struck off.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIERS = ("unit", "integration")
# Code package → the folder under tests/<tier>/ that mirrors it.
PACKAGES = {"receiptd": "", "receiptd_emulator": "emulator"}

# Modules with no logic of their own: declarations, or scripts another test runs.
NO_LOGIC = {
    "receiptd/clock.py": "one line: datetime.now(UTC)",
    "receiptd/metrics.py": "metric declarations (their documentation is checked with the docs)",
    "receiptd/ports.py": "protocols and records; the contract suites test the implementations",
    "receiptd/db/models.py": "table declarations; test_migrations.py checks the schema matches",
    "receiptd/db/migrations/": "Alembic scripts, run by tests/integration/test_migrations.py",
}

# Modules whose test is an integration scenario under its own name (kept where it is).
SCENARIO_TESTS = {
    "receiptd/db/migrate.py": "tests/integration/test_migrations.py",
    "receiptd/db/store.py": "tests/integration/test_store.py",
    "receiptd/db/sends.py": "tests/integration/test_send_store_contract.py",
    "receiptd/db/deliveries.py": "tests/integration/test_event_outbox_contract.py",
    "receiptd/db/prune.py": "tests/integration/test_prune.py",
    "receiptd/providers/aliyun/token.py": "tests/integration/test_token.py",
    "receiptd/providers/aliyun/globe.py": "tests/integration/test_globe.py",
    "receiptd/providers/huawei/koomessage.py": "tests/integration/test_huawei_emulator.py",
}

# Modules with logic and no test of their own yet (exercised through other tests meanwhile).
NOT_YET_MIRRORED = frozenset(
    {
        "receiptd/cli/common.py",
        "receiptd/cli/compensate.py",
        "receiptd/cli/consume.py",
        "receiptd/cli/db_cmd.py",
        "receiptd/cli/demo.py",
        "receiptd/cli/emulator.py",
        "receiptd/cli/prune.py",
        "receiptd/cli/status.py",
        "receiptd/config/sources.py",  # tests/unit/config/test_loading.py exercises them
        "receiptd/config/values.py",
        "receiptd/db/settle.py",
        "receiptd/demo.py",  # run end to end by tests/system/test_demo.py
        "receiptd/demo_international.py",  # the same (--international)
        "receiptd/providers/aliyun/dysms.py",
        "receiptd/testing/emulated.py",
        "receiptd/testing/receiver.py",
        "receiptd/wiring/core.py",
        "receiptd/wiring/daemon.py",
        "receiptd/wiring/providers.py",
        "receiptd_emulator/calls.py",
        "receiptd_emulator/clock.py",
        "receiptd_emulator/credentials.py",
        "receiptd_emulator/koomessage.py",
        "receiptd_emulator/koomessage_store.py",
        "receiptd_emulator/mns_long_polls.py",
        "receiptd_emulator/mns_ops.py",
        "receiptd_emulator/provider.py",
        "receiptd_emulator/router.py",
    }
)


def modules(root: Path, packages: Iterable[str] = PACKAGES) -> list[str]:
    """Every module of the code packages, as a path relative to ``root``."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            if path.stem not in ("__init__", "__main__"):
                found.append(path.relative_to(root).as_posix())
    return found


def mirrored_tests(root: Path, module: str) -> list[Path]:
    """The test files named after ``module`` at its mirror places (existing ones only)."""
    package, *folders, file = module.split("/")
    mirror = Path(PACKAGES[package], *folders)
    stem = file.removesuffix(".py")
    found: list[Path] = []
    for tier in TIERS:
        folder = root / "tests" / tier / mirror
        if folder.is_dir():
            found += sorted(folder.glob(f"test_{stem}.py"))
            found += sorted(folder.glob(f"test_{stem}_*.py"))
    return found


def exempt(module: str, no_logic: Mapping[str, str]) -> bool:
    return any(
        module == entry or (entry.endswith("/") and module.startswith(entry)) for entry in no_logic
    )


def lacking_tests(
    root: Path,
    no_logic: Mapping[str, str] = NO_LOGIC,
    scenarios: Mapping[str, str] = SCENARIO_TESTS,
    not_yet: Iterable[str] = (),
) -> list[str]:
    """The modules with logic that have no test: none at the mirror places, no scenario."""
    skipped = set(scenarios) | set(not_yet)
    return [
        m
        for m in modules(root)
        if not exempt(m, no_logic) and m not in skipped and not mirrored_tests(root, m)
    ]


def imported_modules(test_file: Path) -> set[str]:
    """Dotted names a test file imports (``from a.b import c`` counts as ``a.b`` and ``a.b.c``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(test_file.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


# --- the rule holds in this repository -----------------------------------------------------


def test_every_module_with_logic_has_a_test_at_its_mirror_place() -> None:
    missing = lacking_tests(ROOT, not_yet=NOT_YET_MIRRORED)
    assert missing == [], (
        "modules without a test (add tests/{unit,integration}/<path>/test_<module>.py; "
        "see this file's docstring): " + ", ".join(missing)
    )


def test_the_not_yet_mirrored_list_only_shrinks() -> None:
    mirrored = sorted(m for m in NOT_YET_MIRRORED if mirrored_tests(ROOT, m))
    assert mirrored == [], (
        f"these have their test now; strike them off NOT_YET_MIRRORED: {mirrored}"
    )
    gone = sorted(m for m in NOT_YET_MIRRORED if not (ROOT / m).is_file())
    assert gone == [], f"no such modules (moved or removed?): {gone}"


def test_every_exemption_names_a_module_that_exists() -> None:
    for entry in NO_LOGIC:
        assert (ROOT / entry).exists(), entry
    for module in SCENARIO_TESTS:
        assert (ROOT / module).is_file(), module
        assert not mirrored_tests(ROOT, module), f"{module} has a mirrored test: drop its scenario"


def test_a_scenario_test_imports_the_module_it_stands_for() -> None:
    for module, test_file in SCENARIO_TESTS.items():
        dotted = module.removesuffix(".py").replace("/", ".")
        assert dotted in imported_modules(ROOT / test_file), f"{test_file} does not import {dotted}"


# --- the lookup itself, on a planted tree ----------------------------------------------------


def plant(root: Path, *files: str) -> None:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")


def test_a_planted_module_without_a_test_is_reported(tmp_path: Path) -> None:
    plant(
        tmp_path,
        "receiptd/__init__.py",
        "receiptd/__main__.py",
        "receiptd/ingest/__init__.py",
        "receiptd/ingest/fresh.py",
        "receiptd/ingest/tested.py",
        "receiptd/db/models.py",
        "receiptd_emulator/thing.py",
        "tests/unit/ingest/test_tested.py",
        "tests/unit/test_fresh.py",  # not its mirror place
        "tests/unit/ingest/test_freshly.py",  # neither test_fresh.py nor test_fresh_<aspect>.py
    )
    assert lacking_tests(tmp_path, scenarios={}) == [
        "receiptd/ingest/fresh.py",
        "receiptd_emulator/thing.py",
    ]
    assert lacking_tests(tmp_path, scenarios={}, not_yet=["receiptd_emulator/thing.py"]) == [
        "receiptd/ingest/fresh.py"
    ]


def test_a_test_at_either_tier_or_of_one_aspect_satisfies_the_lookup(tmp_path: Path) -> None:
    plant(tmp_path, "receiptd/ingest/fresh.py", "receiptd_emulator/thing.py")
    assert lacking_tests(tmp_path, no_logic={}, scenarios={}) == [
        "receiptd/ingest/fresh.py",
        "receiptd_emulator/thing.py",
    ]
    plant(tmp_path, "tests/integration/ingest/test_fresh_outages.py")
    plant(tmp_path, "tests/unit/emulator/test_thing.py")
    assert lacking_tests(tmp_path, no_logic={}, scenarios={}) == []
    assert [p.name for p in mirrored_tests(tmp_path, "receiptd/ingest/fresh.py")] == [
        "test_fresh_outages.py"
    ]


def test_an_exempt_folder_covers_every_module_below_it(tmp_path: Path) -> None:
    plant(tmp_path, "receiptd/db/migrations/env.py", "receiptd/db/migrations/versions/0001_x.py")
    assert lacking_tests(tmp_path, no_logic={}, scenarios={}) == [
        "receiptd/db/migrations/env.py",
        "receiptd/db/migrations/versions/0001_x.py",
    ]
    assert lacking_tests(tmp_path, no_logic={"receiptd/db/migrations/": "scripts"}) == []
