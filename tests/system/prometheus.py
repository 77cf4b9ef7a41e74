"""A real Prometheus server (Debian's ``prometheus`` package) for the end-to-end tests.

``Prometheus(workdir, targets, rule_files).start()`` writes a configuration (every target
scraped each second, the rule files evaluated each second), runs ``prometheus`` on a free port
with its own TSDB under ``workdir``, and answers the HTTP API: instant and range queries
(https://prometheus.io/docs/prometheus/latest/querying/api/), ``/api/v1/alerts`` and
``/api/v1/rules``. The configuration is written as JSON, which YAML reads as it is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from tests.system.daemon import free_port

INTERVAL = "1s"  # scrape and rule evaluation interval


def binary() -> str | None:
    """The ``prometheus`` executable on PATH, or None."""
    return shutil.which("prometheus")


def config(targets: Mapping[str, str], rule_files: Sequence[Path]) -> dict[str, Any]:
    """A configuration scraping each ``job: host:port`` target's /metrics every second."""
    return {
        "global": {
            "scrape_interval": INTERVAL,
            "scrape_timeout": INTERVAL,
            "evaluation_interval": INTERVAL,
        },
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [address]}]}
            for job, address in targets.items()
        ],
    }


class PrometheusError(AssertionError):
    """The server answered an API call with an error, or never became ready."""


class Prometheus:
    """One ``prometheus`` process; ``stop()`` ends it (idempotent)."""

    def __init__(
        self, workdir: Path, targets: Mapping[str, str], rule_files: Sequence[Path]
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(json.dumps(config(targets, rule_files), indent=2))
        self.log_path = workdir / "prometheus.log"
        self._log: IO[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Prometheus:
        exe = binary()
        if exe is None:
            raise PrometheusError("prometheus is not on PATH")
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                exe,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready(timeout)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        if self._log is not None:
            self._log.flush()
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- the HTTP API --------------------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """``data`` of an API answer; PrometheusError with the server's message otherwise."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as answer:  # noqa: S310 - local
                body = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's samples (a vector; a scalar answer as one unlabelled sample)."""
        data = self.api("/api/v1/query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self.api(
            "/api/v1/query_range",
            query=expr,
            start=f"{start:.3f}",
            end=f"{end:.3f}",
            step=f"{step}",
        )
        return list(data["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (state pending or firing)."""
        return list(self.api("/api/v1/alerts")["alerts"])

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self.api("/api/v1/rules")["groups"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("/api/v1/targets")["activeTargets"])

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:  # noqa: S310 - local
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise PrometheusError(f"prometheus not ready within {timeout} s:\n{self.log()[-3000:]}")
