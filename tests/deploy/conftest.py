"""The deploy tier: deployment artefacts run for real (marker ``deploy``).

It needs root and Debian's ``debootstrap``, ``systemd-container`` and ``docker.io`` (``.ci/run``
installs them). Without them a test skips with the reason; under ``CI=true`` it fails, so CI
cannot turn the tier green by skipping it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy import artifacts, engine

IN_CI = os.environ.get("CI") == "true"
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).resolve().parent == HERE:
            item.add_marker(pytest.mark.deploy)


def require(*tools: str) -> None:
    """Skip (fail under CI=true) unless running as root with every tool on PATH."""
    problems = [] if os.geteuid() == 0 else ["needs root"]
    problems += [f"{tool} not installed" for tool in tools if shutil.which(tool) is None]
    if problems:
        message = "deploy tier: " + ", ".join(problems) + " (.ci/run installs the packages)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def rootfs() -> Path:
    require("debootstrap")
    return artifacts.rootfs()


@pytest.fixture(scope="session")
def image_rootfs() -> Path:
    """The slim root filesystem (Python and pip, no systemd) the image is built on."""
    require("debootstrap")
    return artifacts.rootfs(artifacts.IMAGE_PACKAGES)


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(dependency wheel directory, directory holding the checkout's wheel)."""
    own = tmp_path_factory.mktemp("wheel")
    artifacts.receiptd_wheel(own)
    yield artifacts.dependency_wheels(), own


@pytest.fixture(scope="session")
def docker_daemon() -> Iterator[engine.Daemon]:
    require("dockerd", "docker")
    previous = os.environ.get("DOCKER_HOST")
    daemon = engine.Daemon()
    os.environ["DOCKER_HOST"] = daemon.host
    try:
        yield daemon
    finally:
        daemon.stop()
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous


@pytest.fixture(scope="session")
def docker_host(docker_daemon: engine.Daemon) -> str:
    return docker_daemon.host


@pytest.fixture(scope="session")
def image(docker_daemon: engine.Daemon, image_rootfs: Path) -> str:
    """The Dockerfile built (once per session; Docker's layer cache makes rebuilds quick)."""
    try:
        seconds = engine.build(engine.base_image(image_rootfs))
    except (RuntimeError, AssertionError, subprocess.SubprocessError):
        # Docker 20.10's BuildKit has been seen to crash the daemon (SIGBUS reading its cache
        # database) on a build that then succeeds: one retry when, and only when, our daemon
        # died. A broken Dockerfile fails the retry too.
        if not docker_daemon.restarted():
            raise
        seconds = engine.build(engine.base_image(image_rootfs))
    size = engine.inspect(engine.IMAGE)["Size"] / 1e6
    print(f"\nimage {engine.IMAGE}: built in {seconds:.1f} s, {size:.0f} MB")
    return engine.IMAGE


@pytest.fixture
def scratch(docker_host: str) -> Iterator[engine.Scratch]:
    """A user network, containers and volumes for one test, removed afterwards."""
    made = engine.Scratch(uuid.uuid4().hex[:8])
    try:
        yield made
    finally:
        made.remove()
