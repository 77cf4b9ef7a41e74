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

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.deploy import engine
from tests.deploy import test_kubernetes_manifests as manifests
from tests.deploy.engine import docker

OVERLAY = manifests.DEPLOY / "overlays" / "production"
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def render() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or "kubectl"
    out = subprocess.run(
        [kubectl, "kustomize", str(OVERLAY)], capture_output=True, text=True, check=True
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


def test_container_with_the_deployments_settings_serves_its_probes(
    image: str, scratch: engine.Scratch, tmp_path: Path
) -> None:
    objects = render()
    deployment = manifests.the(objects, "Deployment")
    pod = deployment["spec"]["template"]
    container = manifests.deployment_container(objects)
    env = manifests.container_env(container, objects)

    emulator = scratch.emulator(image)
    secrets = tmp_path / "secret"
    secrets.mkdir()
    secret_files = {"database_url": "sqlite:////var/lib/receiptd/receiptd.db"}
    secret_files |= {
        k: emulator.pop(k) for k in ("aliyun_access_key_id", "aliyun_access_key_secret")
    }
    for key, value in secret_files.items():
        (secrets / key).write_text(value)
    # Every *_FILE the ConfigMap names must be a key of the mounted Secret.
    for name, value in env.items():
        if name.endswith("_FILE"):
            assert Path(value).name in secret_files, f"{name}={value}: no such Secret key"
    env |= emulator  # only where the provider is: the emulator on the user network

    probes = probe_ports(container)
    published = sorted({port for _, port in probes.values()})
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    argv = [
        *security_options(pod["spec"], container),
        *volume_options(pod, container, scratch, secrets),
        *resource_options(container),
        f"--workdir={container['workingDir']}",
        f"--stop-timeout={grace}",
        *(f"--publish=127.0.0.1::{port}" for port in published),
        *(f"--env={k}={v}" for k, v in env.items()),
        image,
        *container.get("args", []),
    ]
    assert "command" not in container  # the image's ENTRYPOINT is used, as in the pod
    name = scratch.run("pod", *argv)

    host_ports = {
        port: int(engine.inspect(name)["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"])
        for port in published
    }
    startup = container["startupProbe"]
    budget = startup["failureThreshold"] * startup["periodSeconds"]
    deadline = time.monotonic() + budget
    for kind in PROBES:
        path, port = probes[kind]
        while status_of(host_ports[port], path) != 200:
            state = engine.inspect(name)["State"]
            assert state["Running"], f"exited {state['ExitCode']}:\n{docker('logs', name)}"
            assert time.monotonic() < deadline, f"{kind} {path} on {port} never answered 200"
            time.sleep(0.5)

    status = docker("exec", name, "cat", "/proc/1/status")
    fields = dict(line.split(":", 1) for line in status.splitlines())
    assert fields["Uid"].split()[0] == str(pod["spec"]["securityContext"]["runAsUser"])
    assert int(fields["CapEff"], 16) == 0 and fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"

    start = time.monotonic()
    docker("stop", name, timeout=grace + 30)
    assert engine.inspect(name)["State"]["ExitCode"] == 0, docker("logs", name)
    assert time.monotonic() - start < grace
