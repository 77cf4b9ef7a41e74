"""The Dockerfile built and run by Docker Engine, with the run lines it documents.

The daemon's run line is parsed from the Dockerfile's header comment, so a documented option
that stops working fails here; the test only adds what locates this run (the user network
with the emulator, the emulator's endpoints, a scratch volume and secrets directory, an
ephemeral host port and a 1 s health-check interval instead of waiting 30 s for the first).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.deploy import artifacts, engine
from tests.deploy.engine import docker

DOCKERFILE = artifacts.REPO / "Dockerfile"
DRAIN_BOUND = 10.0  # RECEIPTD_SHUTDOWN_TIMEOUT's default
IMAGE_UID = 10001


def documented_run_line() -> list[str]:
    """The options and arguments of the `docker run` line in the Dockerfile's header."""
    lines: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        text = line.removeprefix("#").strip()
        if text.startswith("docker run") or lines:
            lines.append(text.removesuffix("\\").strip())
            if not text.endswith("\\"):
                break
    assert lines, "the Dockerfile documents no `docker run` line"
    return shlex.split(" ".join(lines))[2:]


def write_secrets(directory: Path, values: dict[str, str]) -> Path:
    """Secret files readable only by the image's user, as a secrets manager would mount them."""
    directory.mkdir(mode=0o700)
    for name, value in values.items():
        path = directory / name
        path.write_text(value)
        path.chmod(0o400)
        os.chown(path, IMAGE_UID, IMAGE_UID)
    os.chown(directory, IMAGE_UID, IMAGE_UID)
    return directory


def test_image_user_is_not_root(image: str) -> None:
    user = engine.inspect(image)["Config"]["User"]
    assert user.split(":")[0] not in ("", "0", "root"), f"image runs as {user!r}"
    ids = docker("run", "--rm", "--read-only", "--entrypoint=id", image)
    assert re.match(rf"uid={IMAGE_UID}\b.* gid={IMAGE_UID}\b", ids), ids


def test_demo_runs_read_only_as_non_root(image: str, scratch: engine.Scratch) -> None:
    # The documented mounts: read-only root, /tmp as tmpfs, the state directory a volume.
    state = scratch.volume("demo-state")
    name = f"receiptd-deploy-{scratch.tag}-demo"
    out = docker(
        "run", f"--name={name}", "--read-only", "--tmpfs=/tmp",
        f"--volume={state}:/var/lib/receiptd",
        image, "demo", timeout=180,
    )  # fmt: skip
    container = engine.inspect(name)
    docker("rm", name)
    assert container["State"]["ExitCode"] == 0
    assert re.search(r"receiptd demo: 300 SMS settled", out), out
    assert container["Config"]["User"].split(":")[0] == str(IMAGE_UID)


def test_run_entrypoint_becomes_healthy_stores_receipts_and_stops_in_time(
    image: str, scratch: engine.Scratch, tmp_path: Path
) -> None:
    emulator = scratch.emulator(image)
    secrets = write_secrets(
        tmp_path / "secrets",
        {k: emulator.pop(k) for k in ("aliyun_access_key_id", "aliyun_access_key_secret")},
    )
    state = scratch.volume("state")
    documented = documented_run_line()
    substitutions = {
        "receiptd-state:/var/lib/receiptd": f"{state}:/var/lib/receiptd",
        "/path/to/secrets:/run/secrets:ro": f"{secrets}:/run/secrets:ro",
        "127.0.0.1:9400:9400": "127.0.0.1::9400",  # any free host port
        "receiptd:0.1.0": image,
    }
    argv = [substitutions.get(arg, arg) for arg in documented]
    prefix = emulator.pop("RECEIPTD_ALIYUN_QUEUE_PREFIX")
    argv = [re.sub(r"^(RECEIPTD_ALIYUN_QUEUE_PREFIX)=.*", rf"\1={prefix}", arg) for arg in argv]
    image_at = argv.index(image)
    extra = [f"--env={k}={v}" for k, v in emulator.items()] + ["--health-interval=1s"]
    argv[image_at:image_at] = extra
    argv.remove("--rm")  # the container is inspected after it stopped
    name = scratch.run("daemon", *argv)

    seconds = engine.wait_healthy(name, 90)
    print(f"container healthy {seconds:.1f} s after docker run")
    port = engine.inspect(name)["NetworkSettings"]["Ports"]["9400/tcp"][0]["HostPort"]
    # Healthy is the image's HEALTHCHECK (/healthz, alive); ready (/readyz: the database and the
    # consumers' first receive) may follow a moment later on a loaded machine.
    assert wait_ready(f"http://127.0.0.1:{port}/readyz", 60), "never ready within 60 s"

    sent = docker(
        "exec", name, "receiptd", "send", "--phone=13800138000", "--sign=阿里云短信测试",
        "--template=SMS_154950909", '--param={"code": "1234"}',
    )  # fmt: skip
    assert "registered 1" in sent, sent

    def settled() -> dict[str, int]:
        status = json.loads(docker("exec", name, "receiptd", "status", "--json"))
        counts: dict[str, int] = status["sends"].get("aliyun", {})
        return counts

    deadline = time.monotonic() + 60
    counts = settled()
    while (not counts or "pending" in counts) and time.monotonic() < deadline:
        time.sleep(0.5)
        counts = settled()
    assert sum(counts.values()) == 1 and "pending" not in counts, counts

    start = time.monotonic()
    docker("stop", name, timeout=60)
    stopped = time.monotonic() - start
    container = engine.inspect(name)
    assert container["State"]["ExitCode"] == 0, docker("logs", name)
    assert stopped < DRAIN_BOUND, f"docker stop took {stopped:.1f} s"
    print(f"docker stop: {stopped:.2f} s, exit 0")


def test_the_image_holds_the_bytecode_of_what_the_demo_runs(image: str) -> None:
    """The build writes bytecode for what receiptd imports (the root filesystem is read-only
    at run time, so a start would otherwise compile it again): the demo, let write bytecode
    into a writable copy, adds none but the migrations' (alembic loads them by path)."""
    script = (
        "touch /tmp/start && sleep 1 && cd /tmp && receiptd demo >/dev/null && "
        "find /opt/receiptd -name '*.pyc' -newer /tmp/start"
    )
    written = docker(
        "run", "--rm", "--user=0", "--env=PYTHONDONTWRITEBYTECODE=", "--entrypoint=sh", image,
        "-c", script, timeout=180,
    ).split()  # fmt: skip
    assert written, "the demo wrote no bytecode: the check cannot see a miss"
    missed = [path for path in written if "/receiptd/db/migrations/" not in path]
    assert not missed, f"compiled at run time, not in the image: {missed}"


def wait_ready(url: str, seconds: float) -> bool:
    """Whether ``url`` answers 200 within ``seconds`` (503 while not ready yet)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - local
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False
