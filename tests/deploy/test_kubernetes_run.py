"""The image run with exactly the production Deployment's container settings.

No API server runs here, so the rendered manifests (`kubectl kustomize`) are translated into
`docker run`: the pod's and container's securityContext (read-only root, UID/GID and
fsGroup, dropped capabilities, no privilege escalation, seccomp RuntimeDefault = Docker's
default profile), its environment (ConfigMap), volumes (emptyDir, the Secret as files with
its defaultMode), working directory, arguments, resource limits and grace period. The probes
must then answer on the ports the Deployment names. A drift between the manifests and the
image (a port, a path, a UID the image cannot run as) fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from receiptd import roles
from tests.conftest import create_server_database, drop_server_database, unavailable
from tests.deploy import engine
from tests.deploy import test_kubernetes_manifests as manifests
from tests.deploy.engine import docker

OVERLAY = manifests.DEPLOY / "overlays" / "production"
ROLES_OVERLAY = manifests.DEPLOY / "overlays" / "roles"
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
# The host's PostgreSQL socket directory (Debian's default), bound into the role groups' pods
# at the same path: split roles refuse SQLite, and the host's server listens on loopback only.
PG_SOCKETS = Path("/run/postgresql")


def render(overlay: Path = OVERLAY) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or "kubectl"
    out = subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def security_options(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    psc, csc = pod.get("securityContext", {}), container.get("securityContext", {})
    merged = {**psc, **csc}  # container-level fields win, as in Kubernetes
    uid, gid = merged["runAsUser"], merged.get("runAsGroup", merged["runAsUser"])
    options = [f"--user={uid}:{gid}"]
    if "fsGroup" in psc:
        options.append(f"--group-add={psc['fsGroup']}")
    if csc.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    options += [f"--cap-drop={cap}" for cap in csc.get("capabilities", {}).get("drop", [])]
    options += [f"--cap-add={cap}" for cap in csc.get("capabilities", {}).get("add", [])]
    if csc.get("allowPrivilegeEscalation") is False:
        options.append("--security-opt=no-new-privileges")
    assert merged.get("seccompProfile", {}).get("type") == "RuntimeDefault"  # Docker's default
    assert not csc.get("privileged")
    return options


def volume_options(
    pod: dict[str, Any], container: dict[str, Any], scratch: engine.Scratch, secrets: Path
) -> list[str]:
    """Each volumeMount as Kubernetes would provide it."""
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    fs_group = pod["spec"]["securityContext"]["fsGroup"]
    options = []
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        ro = ",readonly" if mount.get("readOnly") else ""
        if "emptyDir" in volume:
            source = scratch.volume(mount["name"])
            options.append(f"--mount=type=volume,source={source},target={mount['mountPath']}{ro}")
        elif "secret" in volume:
            # The kubelet writes each key as a file with defaultMode, group fsGroup.
            mode = volume["secret"].get("defaultMode", 0o644)
            for path in secrets.iterdir():
                path.chmod(mode)
                os.chown(path, 0, fs_group)
            options.append(f"--mount=type=bind,source={secrets},target={mount['mountPath']}{ro}")
        else:
            raise AssertionError(f"volume kind not translated: {volume}")
    return options


def resource_options(container: dict[str, Any]) -> list[str]:
    limits = container.get("resources", {}).get("limits", {})
    options = []
    if "memory" in limits:
        units = {"Mi": "m", "Gi": "g"}
        memory = limits["memory"]
        options.append(f"--memory={memory[:-2]}{units[memory[-2:]]}")
    if "cpu" in limits:
        cpu = str(limits["cpu"])
        options.append(f"--cpus={int(cpu[:-1]) / 1000 if cpu.endswith('m') else cpu}")
    return options


def probe_ports(container: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """probe kind -> (path, container port), port names resolved through `ports`."""
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    out = {}
    for kind in PROBES:
        get = container[kind]["httpGet"]
        port = get["port"]
        out[kind] = (get["path"], named[port] if isinstance(port, str) else port)
    return out


def status_of(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class Pod:
    """A Deployment's pod as a container: started with exactly its settings, probed, stopped."""

    def __init__(
        self,
        deployment: dict[str, Any],
        objects: list[dict[str, Any]],
        image: str,
        scratch: engine.Scratch,
        secrets: Path,
        outside: dict[str, str],
        extra: tuple[str, ...] = (),
    ) -> None:
        """``outside``: the settings of what the pod reaches beyond the cluster (the provider
        emulator); ``extra``: docker options for it (a socket directory)."""
        self.template = deployment["spec"]["template"]
        self.container = manifests.receiptd_container(deployment)
        env = manifests.container_env(self.container, objects)
        # Every *_FILE the ConfigMap names must be a key of the mounted Secret.
        for name, value in env.items():
            if name.endswith("_FILE"):
                assert (secrets / Path(value).name).exists(), f"{name}={value}: no such Secret key"
        env |= outside
        self.probes = probe_ports(self.container)
        published = sorted({port for _, port in self.probes.values()})
        self.grace = self.template["spec"]["terminationGracePeriodSeconds"]
        argv = [
            *security_options(self.template["spec"], self.container),
            *volume_options(self.template, self.container, scratch, secrets),
            *resource_options(self.container),
            *extra,
            f"--workdir={self.container['workingDir']}",
            f"--stop-timeout={self.grace}",
            *(f"--publish=127.0.0.1::{port}" for port in published),
            *(f"--env={k}={v}" for k, v in env.items()),
            image,
            *self.container.get("args", []),
        ]
        assert "command" not in self.container  # the image's ENTRYPOINT is used, as in the pod
        self.name = scratch.run(deployment["metadata"]["name"], *argv)
        ports = engine.inspect(self.name)["NetworkSettings"]["Ports"]
        self.host_ports = {port: int(ports[f"{port}/tcp"][0]["HostPort"]) for port in published}

    def wait_for_probes(self) -> None:
        """Every probe answers 200 within the startup probe's budget."""
        startup = self.container["startupProbe"]
        deadline = time.monotonic() + startup["failureThreshold"] * startup["periodSeconds"]
        for kind in PROBES:
            path, port = self.probes[kind]
            while status_of(self.host_ports[port], path) != 200:
                state = engine.inspect(self.name)["State"]
                assert state["Running"], f"exited {state['ExitCode']}:\n{docker('logs', self.name)}"
                assert time.monotonic() < deadline, (
                    f"{self.name}: {kind} {path} on {port} never answered 200:\n"
                    + docker("logs", self.name, check=False)
                )
                time.sleep(0.5)

    def get(self, path: str) -> bytes:
        port = self.host_ports[self.probes["readinessProbe"][1]]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return bytes(response.read())

    def check_process(self) -> None:
        """PID 1 runs as the pod's user, with no capabilities, no new privileges, seccomp."""
        status = docker("exec", self.name, "cat", "/proc/1/status")
        fields = dict(line.split(":", 1) for line in status.splitlines())
        assert fields["Uid"].split()[0] == str(
            self.template["spec"]["securityContext"]["runAsUser"]
        )
        assert int(fields["CapEff"], 16) == 0 and fields["NoNewPrivs"].strip() == "1"
        assert fields["Seccomp"].strip() == "2"

    def stop(self) -> None:
        """``docker stop`` (SIGTERM, SIGKILL after the grace period) ends it with 0 in time."""
        start = time.monotonic()
        docker("stop", self.name, timeout=self.grace + 30)
        assert engine.inspect(self.name)["State"]["ExitCode"] == 0, docker("logs", self.name)
        assert time.monotonic() - start < self.grace


def write_secrets(directory: Path, values: dict[str, str]) -> Path:
    directory.mkdir()
    for key, value in values.items():
        (directory / key).write_text(value)
    return directory


def test_container_with_the_deployments_settings_serves_its_probes(
    image: str, scratch: engine.Scratch, tmp_path: Path
) -> None:
    objects = render()
    emulator = scratch.emulator(image)
    keys = {k: emulator.pop(k) for k in ("aliyun_access_key_id", "aliyun_access_key_secret")}
    database = {"database_url": "sqlite:////var/lib/receiptd/receiptd.db"}
    secrets = write_secrets(tmp_path / "secret", database | keys)
    # Only where the provider is: the emulator on the user network.
    pod = Pod(manifests.the(objects, "Deployment"), objects, image, scratch, secrets, emulator)
    pod.wait_for_probes()
    pod.check_process()
    pod.stop()


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh database on the host's PostgreSQL; its name."""
    if not (PG_SOCKETS / ".s.PGSQL.5432").exists():
        unavailable("postgresql", FileNotFoundError(f"no server socket in {PG_SOCKETS}"))
    url = create_server_database("postgresql")
    try:
        yield str(make_url(url).database)
    finally:
        drop_server_database("postgresql", url)


def test_each_role_group_runs_with_its_deployments_settings(
    image: str, scratch: engine.Scratch, tmp_path: Path, postgres_database: str
) -> None:
    """overlays/roles: the four Deployments' pods at once on one database, each with exactly
    its settings; each ready with its roles; each stopped alone in its grace period."""
    objects = render(ROLES_OVERLAY)
    emulator = scratch.emulator(image)
    example = yaml.safe_load(manifests.SECRET_EXAMPLE.read_text(encoding="utf-8"))["stringData"]
    values = {k: example[k] for k in ("push_token", "webhook_secret")}
    values |= {k: emulator.pop(k) for k in ("aliyun_access_key_id", "aliyun_access_key_secret")}
    values["database_url"] = f"postgresql+psycopg://postgres@/{postgres_database}?host={PG_SOCKETS}"
    secrets = write_secrets(tmp_path / "secret", values)
    socket = f"--mount=type=bind,source={PG_SOCKETS},target={PG_SOCKETS},readonly"
    groups = manifests.role_groups(objects)
    # All at once, as an apply starts them: each runs --migrate, serialised on the database.
    pods = {
        group: Pod(deployment, objects, image, scratch, secrets, emulator, (socket,))
        for group, deployment in groups.items()
    }
    for group, pod in pods.items():
        pod.wait_for_probes()
        pod.check_process()
        ready = json.loads(pod.get("/readyz"))
        assert set(ready["roles"]) == set(roles.parse(group)), group
        assert all(check["ok"] for check in ready["roles"].values()), ready
        info = re.findall(
            r'^receiptd_role_info\{role="(\w+)"\} 1\.0$', pod.get("/metrics").decode(), re.M
        )
        assert sorted(info) == sorted(roles.parse(group)), group
    # One group stopped leaves the others serving.
    pods.pop("worker").stop()
    for pod in pods.values():
        assert status_of(pod.host_ports[pod.probes["readinessProbe"][1]], "/readyz") == 200
    for pod in pods.values():
        pod.stop()
