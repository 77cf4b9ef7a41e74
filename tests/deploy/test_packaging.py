"""The image's lock files and the Pythons the project claims, checked against pyproject.toml.

The Dockerfile installs exactly the pins of ``requirements/image.txt`` (and builds with those
of ``requirements/build.txt``) with ``--require-hashes``: a dependency added to or narrowed
in pyproject.toml without ``make lock`` would build an image without it, or with a release
the project refuses. The lock is resolved for every Python (``--universal``), so it is read
here as each claimed Python (the classifiers) would read it.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy import artifacts

PYPROJECT = tomllib.loads((artifacts.REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
LOCKS = artifacts.REPO / "requirements"
MAKEFILE = artifacts.REPO / "Makefile"
CLAIMED = sorted(
    {
        c.rsplit(" :: ", 1)[1]
        for c in PROJECT["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    },
    key=Version,
)


@dataclass(frozen=True)
class Pin:
    requirement: Requirement
    hashes: tuple[str, ...]
    direct: bool  # uv's annotation: "# via receiptd (pyproject.toml)"


def read_lock(name: str) -> list[Pin]:
    """The entries of a `uv pip compile --generate-hashes` file, with their annotations."""
    text = (LOCKS / name).read_text()
    pins: list[Pin] = []
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2]):
        body, _, notes = entry.partition("\n    #")
        parts = body.replace("\\\n", " ").split()
        hashes = tuple(p.removeprefix("--hash=") for p in parts if p.startswith("--hash="))
        line = " ".join(p for p in parts if not p.startswith("--hash="))
        direct = "receiptd (pyproject.toml)" in notes
        pins.append(Pin(Requirement(line), hashes, direct))
    return pins


def environment(python: str) -> dict[str, str]:
    """Marker variables of CPython `python` on Linux (the image, the test machine)."""
    env = default_environment()
    env.update(
        python_version=python,
        python_full_version=f"{python}.0",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
    )
    return env


def resolved(pins: list[Pin], python: str) -> dict[str, Version]:
    """Name → pinned version for one Python; fails if a name is pinned twice for it."""
    env = environment(python)
    versions: dict[str, Version] = {}
    for pin in pins:
        req = pin.requirement
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        assert name not in versions, f"{name} pinned twice for Python {python}"
        (spec,) = req.specifier
        versions[name] = Version(spec.version)
    return versions


def declared(requirements: list[str], python: str) -> list[Requirement]:
    env = environment(python)
    reqs = [Requirement(r) for r in requirements]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def runtime_requirements() -> list[str]:
    return [*PROJECT["dependencies"], *PROJECT["optional-dependencies"]["huawei"]]


@pytest.mark.parametrize("lock", ["image.txt", "build.txt"])
def test_every_pin_is_exact_and_hashed_and_made_by_make_lock(lock: str) -> None:
    assert (LOCKS / lock).read_text().split("\n")[1] == "#    make lock"
    pins = read_lock(lock)
    assert pins
    for pin in pins:
        (spec,) = pin.requirement.specifier
        assert spec.operator == "==", pin.requirement
        assert pin.hashes and all(h.startswith("sha256:") for h in pin.hashes), pin


@pytest.mark.parametrize("python", CLAIMED)
def test_image_lock_pins_every_dependency_within_its_declared_range(python: str) -> None:
    versions = resolved(read_lock("image.txt"), python)
    for req in declared(runtime_requirements(), python):
        name = canonicalize_name(req.name)
        assert name in versions, f"{req} is not in requirements/image.txt: run `make lock`"
        assert req.specifier.contains(versions[name], prereleases=True), (
            f"requirements/image.txt pins {name}=={versions[name]}, outside {req}: run `make lock`"
        )


def test_image_lock_names_as_direct_exactly_the_declared_dependencies() -> None:
    """A dependency dropped from pyproject.toml leaves the lock too (uv annotates the pins)."""
    direct = {canonicalize_name(p.requirement.name) for p in read_lock("image.txt") if p.direct}
    assert direct == {canonicalize_name(Requirement(r).name) for r in runtime_requirements()}


def test_build_lock_pins_the_build_backend_within_its_declared_range() -> None:
    versions = resolved(read_lock("build.txt"), CLAIMED[0])
    for req in declared(PYPROJECT["build-system"]["requires"], CLAIMED[0]):
        name = canonicalize_name(req.name)
        assert name in versions, f"{req} is not in requirements/build.txt: run `make lock`"
        assert req.specifier.contains(versions[name]), f"{name}=={versions[name]} outside {req}"


def test_the_claimed_pythons_are_the_tested_ones() -> None:
    """The classifiers: requires-python's floor (.venv's Python) and what `make pythons` runs."""
    assert CLAIMED, "pyproject.toml claims no Python version"
    floor = SpecifierSet(PROJECT["requires-python"])
    assert all(floor.contains(f"{v}.0") for v in CLAIMED)
    assert not floor.contains(f"3.{Version(CLAIMED[0]).minor - 1}.0"), "requires-python too low"
    (others,) = re.findall(r"^OTHER_PYTHONS \?= (.+)$", MAKEFILE.read_text(), re.M)
    assert sorted({CLAIMED[0], *others.split()}, key=Version) == CLAIMED
    assert f"{sys.version_info[0]}.{sys.version_info[1]}" in CLAIMED  # .venv's, running this
