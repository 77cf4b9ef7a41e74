"""The README's install, done as a newcomer would: the wheel into a fresh virtualenv.

The wheel is built the way the README says (`python -m build`: an sdist, then the wheel from
it, so both carry the package data), installed with the README's line into a new virtualenv
(its dependencies from the package index) and run from a directory that holds nothing of the
checkout: `--help`, `config check`, `db upgrade` (the migrations ship), the demo (the
emulator's profiles, the SDKs) and the Huawei extra's SDK. Needs the package index.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from receiptd.db import migrate
from tests.deploy import artifacts

README = artifacts.REPO / "README.md"
PACKAGES = ("receiptd", "receiptd_emulator")  # one distribution, two top-level packages


def readme_install_block() -> str:
    section = README.read_text().split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(re.findall(r"```sh\n(.*?)```", section, re.S))


def package_files() -> set[str]:
    """Every file of the packages in the checkout, as the wheel must hold it."""
    return {
        str(path.relative_to(artifacts.REPO))
        for package in PACKAGES
        for path in (artifacts.REPO / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without receiptd's settings or a path into the checkout."""
    drop = ("RECEIPTD_", "PYTHONPATH", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)} | extra


def run(argv: list[str | Path], cwd: Path, timeout: float = 300, **env: str) -> str:
    proc = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's build, run on a copy of the checkout (artifacts.source_copy says why)."""
    out = tmp_path_factory.mktemp("dist")
    source = artifacts.source_copy(tmp_path_factory.mktemp("build"))
    run([sys.executable, "-m", "build", "--outdir", out, source], cwd=source)
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv (its own pip, nothing else) with the README's install line run."""
    documented = r"^pip install '(dist/[^'\[]+\.whl)\[huawei\]'(?:\s+#.*)?$"
    (line,) = re.findall(documented, readme_install_block(), re.M)
    (wheel,) = dist.glob("receiptd-*.whl")
    assert line == f"dist/{wheel.name}", "the README names another wheel than the build makes"
    env = tmp_path_factory.mktemp("venv") / "receiptd"
    venv.create(env, with_pip=True)
    run([env / "bin/pip", "install", "--quiet", f"{wheel}[huawei]"], cwd=dist, timeout=900)
    return env


def test_the_wheel_and_the_sdist_carry_every_package_file(dist: Path) -> None:
    (wheel,) = dist.glob("receiptd-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.split("/")[0] in PACKAGES}
    missing = package_files() - shipped
    assert not missing, f"not in the wheel (package-data in pyproject.toml): {sorted(missing)}"
    for data in ("receiptd/py.typed", "receiptd/db/migrations/script.py.mako"):
        assert data in shipped
    assert any(n.startswith("receiptd/db/migrations/versions/0001_") for n in shipped)
    assert any(n.startswith("receiptd_emulator/profiles/") for n in shipped)
    (sdist,) = dist.glob("receiptd-*.tar.gz")
    assert sdist.name == wheel.name.split("-py3")[0] + ".tar.gz"


def test_the_docs_name_the_wheel_the_build_makes(dist: Path) -> None:
    (wheel,) = dist.glob("receiptd-*.whl")
    for doc in (README, artifacts.REPO / "systemd" / "README.md"):
        named = set(re.findall(r"dist/(receiptd-[^'\[\s]+\.whl)", doc.read_text()))
        assert named == {wheel.name}, f"{doc.name} names {named}, the build makes {wheel.name}"


def test_installed_commands_run_from_the_wheel_alone(installed: Path, tmp_path: Path) -> None:
    receiptd = installed / "bin/receiptd"
    python = installed / "bin/python"
    where = run([python, "-c", "import receiptd; print(receiptd.__file__)"], cwd=tmp_path)
    assert where.startswith(str(installed)), where  # not the checkout
    run([installed / "bin/pip", "check"], cwd=tmp_path)
    assert "Commands:" in run([receiptd, "--help"], cwd=tmp_path)
    version = run([python, "-c", "import importlib.metadata as m; print(m.version('receiptd'))"],
                  cwd=tmp_path)  # fmt: skip
    assert f"version {version.strip()}" in run([receiptd, "--version"], cwd=tmp_path)
    shown = run([receiptd, "config", "check"], cwd=tmp_path,
                RECEIPTD_ALIYUN_ACCESS_KEY_SECRET="not-printed")  # fmt: skip
    assert "database_url" in shown and "not-printed" not in shown, shown
    run([receiptd, "db", "upgrade"], cwd=tmp_path)
    head = rf"^{migrate.HEAD} \(head\)$"  # the wheel carries every migration
    assert re.search(head, run([receiptd, "db", "current"], cwd=tmp_path), re.M)
    # The Huawei extra: the SDK modules receiptd's KooMessage adapter loads.
    run([python, "-c", "from huaweicloudsdkkoomessage import v1; "
         "from huaweicloudsdkcore.http import http_config"], cwd=tmp_path)  # fmt: skip


def test_installed_demo_settles_every_send(installed: Path, tmp_path: Path) -> None:
    out = run([installed / "bin/receiptd", "demo"], cwd=tmp_path, timeout=180)
    assert re.search(r"receiptd demo: 300 SMS settled", out), out
    assert re.search(r"expired 0, pending 0", out), out
