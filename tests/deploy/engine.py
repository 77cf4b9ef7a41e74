"""Docker Engine for the deploy tier: a running daemon (ours if none runs) and the images.

Docker Hub is not reachable here, so the Dockerfile's ``PYTHON_IMAGE`` is made locally: the
tier's debootstrap root filesystem (Debian's Python, pip and the host's CA bundle) imported
with ``docker import``. The data root lives outside the checkout
(``RECEIPTD_DEPLOY_DOCKER_ROOT``, default ``/var/lib/receiptd-deploy-docker``), so the layer
cache survives between runs and fresh clones.

The client is Debian's ``/usr/bin/docker`` (the docker.io package that brings dockerd): it
builds with its built-in BuildKit (``DOCKER_BUILDKIT=1``); a newer client would need the
buildx plugin.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.deploy import artifacts

DATA_ROOT = Path(os.environ.get("RECEIPTD_DEPLOY_DOCKER_ROOT", "/var/lib/receiptd-deploy-docker"))
EXEC_ROOT = Path("/run/receiptd-deploy-docker")
SOCKET = f"unix://{EXEC_ROOT}/docker.sock"
PIDFILE = EXEC_ROOT.with_suffix(".pid")
LOG = DATA_ROOT / "dockerd.log"
IMAGE = "receiptd:deploy-test"
# Host settings the build needs to reach the package index, passed as build arguments when
# set (proxy variables are Docker's predefined ARGs; PIP_INDEX_URL is declared in the
# Dockerfile). Read at test time: nothing host-specific is committed.
BUILD_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def client() -> str:
    debian = Path("/usr/bin/docker")
    found = str(debian) if debian.exists() else shutil.which("docker")
    if found is None:
        raise FileNotFoundError("docker client not installed")
    return found


def docker(*args: str, check: bool = True, timeout: float = 120, **env: str) -> str:
    proc = subprocess.run(
        [client(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout


def _responds(host: str) -> bool:
    return (
        subprocess.run(
            [client(), "--host", host, "version"], capture_output=True, timeout=30, check=False
        ).returncode
        == 0
    )


class Daemon:
    """A responding Docker daemon: the configured one, another session's on our socket, or
    our own, started here (own data root, exec root, socket and pidfile) and stopped by PID."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        configured = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if _responds(configured):
            self.host = configured
        elif _responds(SOCKET):
            # Another session's (running, or interrupted before it could stop it): reuse it
            # and leave it to its owner; stopping it could break a session still using it.
            self.host = SOCKET
        else:
            self.host = SOCKET
            self._start()

    def _start(self) -> None:
        DATA_ROOT.mkdir(parents=True, exist_ok=True)
        EXEC_ROOT.mkdir(parents=True, exist_ok=True)
        if PIDFILE.exists() and not _alive(int(PIDFILE.read_text() or 0)):
            PIDFILE.unlink()  # left by a daemon that died (dockerd refuses to start over it)
        with LOG.open("ab") as log:
            self.proc = subprocess.Popen(
                ["dockerd", f"--data-root={DATA_ROOT}", f"--exec-root={EXEC_ROOT}",
                 f"--host={SOCKET}", f"--pidfile={PIDFILE}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while not _responds(SOCKET):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"dockerd did not come up; see {LOG}")
            time.sleep(0.2)

    def restarted(self) -> bool:
        """Start our daemon again if it died (True then); its log keeps the cause."""
        if self.proc is None or self.proc.poll() is None:
            return False
        print(f"dockerd exited {self.proc.returncode} (see {LOG}); starting it again")
        self._start()
        return True

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc.pid)
            self.proc.wait(30)


def _alive(pid: int) -> bool:
    """A running process (not a zombie waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError, ValueError):
        return False


def _stop(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)


def base_image(rootfs: Path) -> str:
    """The root filesystem as an image, tagged by its cache key (imported once)."""
    tag = f"receiptd-deploy/python:{rootfs.name.rsplit('-', 1)[-1]}"
    known = subprocess.run([client(), "image", "inspect", tag], capture_output=True, check=False)
    if known.returncode == 0:
        return tag
    with subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
    ) as tar:
        subprocess.run(
            [client(), "import", "--change", "CMD [\"python3\"]", "-", tag],
            stdin=tar.stdout, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    return tag


def build(python_image: str) -> float:
    """Build the Dockerfile as documented; seconds taken."""
    args = [f"--build-arg=PYTHON_IMAGE={python_image}"]
    args += [f"--build-arg={name}" for name in BUILD_ENV if os.environ.get(name)]
    index = os.environ.get("PIP_INDEX_URL", "")
    if index.startswith(("http://", "https://")):  # a file:// index is not in the context
        args.append(f"--build-arg=PIP_INDEX_URL={index}")
    start = time.monotonic()
    artifacts.run(
        [client(), "build", "--progress=plain", *args, "--tag", IMAGE, str(artifacts.REPO)],
        timeout=900,
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
    )
    seconds = time.monotonic() - start
    # Earlier builds of the tag, now untagged, would pile up in the kept data root.
    docker("image", "prune", "--force", "--filter=label=org.opencontainers.image.title=receiptd")
    return seconds


def inspect(name: str) -> dict[str, Any]:
    result: list[dict[str, Any]] = json.loads(docker("inspect", name))
    return result[0]


EMULATOR_PORT = 18080


class Scratch:
    """Containers, volumes and a user network made by one test, removed afterwards."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.network = f"receiptd-deploy-{tag}"
        self._containers: list[str] = []
        self._volumes: list[str] = []
        docker("network", "create", self.network)

    def volume(self, role: str) -> str:
        name = f"receiptd-deploy-{self.tag}-{role}"
        docker("volume", "create", name)
        self._volumes.append(name)
        return name

    def run(self, role: str, *args: str) -> str:
        """`docker run -d` on the network; the container's name."""
        name = f"receiptd-deploy-{self.tag}-{role}"
        self._containers.append(name)
        docker("run", "--detach", f"--name={name}", f"--network={self.network}", *args)
        return name

    def emulator(self, image: str) -> dict[str, str]:
        """The provider emulator (image's own `receiptd emulator`) and settings pointing at it."""
        name = self.run("emulator", "--read-only", image, "emulator", "--host=0.0.0.0",
                        f"--port={EMULATOR_PORT}")  # fmt: skip
        deadline = time.monotonic() + 30
        while '"mns_endpoint"' not in docker("logs", name):
            assert time.monotonic() < deadline, docker("logs", name, check=False)
            time.sleep(0.2)
        info = json.loads(docker("logs", name).splitlines()[0])
        url = f"http://{name}:{EMULATOR_PORT}"
        return {
            "RECEIPTD_ALIYUN_QUEUE_PREFIX": info["queue_prefix"],
            "RECEIPTD_ALIYUN_DYSMS_ENDPOINT": url,
            "RECEIPTD_ALIYUN_DYBASE_ENDPOINT": url,
            "RECEIPTD_ALIYUN_ALICOM_MNS_ENDPOINT": url,
            "RECEIPTD_CONSUMER_WAIT_SECONDS": "1",
            "aliyun_access_key_id": info["access_key_id"],
            "aliyun_access_key_secret": info["access_key_secret"],
        }

    def remove(self) -> None:
        for name in reversed(self._containers):
            docker("rm", "--force", "--volumes", name, check=False)
        for name in self._volumes:
            docker("volume", "rm", "--force", name, check=False)
        docker("network", "rm", self.network, check=False)


def wait_healthy(name: str, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        state = inspect(name)["State"]
        if state.get("Health", {}).get("Status") == "healthy":
            return time.monotonic() - start
        assert state["Running"], f"{name} exited {state['ExitCode']}:\n{docker('logs', name)}"
        time.sleep(0.2)
    raise AssertionError(f"{name} not healthy within {timeout} s:\n{docker('logs', name)}")
