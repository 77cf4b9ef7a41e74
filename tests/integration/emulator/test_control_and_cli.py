"""The HTTP control API, the KooMessage route hook, and the `receiptd emulator` command."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from receiptd_emulator import Emulator, EmulatorInfo, FaultSpec
from receiptd_emulator.faults import FaultKind
from receiptd_emulator.http_types import Request, Response
from receiptd_emulator.router import KOOMESSAGE_PATH, koomessage_placeholder_route, path_route

REQUIRED_KEYS = {
    "mns_endpoint",
    "dysms_endpoint",
    "dybase_endpoint",
    "koomessage_endpoint",
    "access_key_id",
    "access_key_secret",
    "account_uid",
    "queue_prefix",
    "report_queue",
    "up_queue",
    "sign_name",
    "template_code",
    "control_endpoint",
}
ROOT = Path(__file__).resolve().parents[3]


def call(info: EmulatorInfo, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    url = f"{info.control_endpoint}/{path}"  # always http://127.0.0.1:<port>
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_control_api_round_trip(emu: Emulator, info: EmulatorInfo) -> None:
    assert call(info, "GET", "info") == (200, info.as_dict())
    status, sent = call(info, "POST", "enqueue", {"queue": "report", "body": "eyJhIjoxfQ=="})
    assert status == 200 and sent["message_id"]
    assert call(info, "POST", "enqueue_report", {"fields": {"biz_id": "1^0"}})[0] == 200
    assert call(info, "POST", "enqueue_up", {"fields": {"content": "退订"}, "delay": 30})[0] == 200
    assert call(info, "GET", "queue_depth?queue=report")[1] == {
        "visible": 2,
        "inflight": 0,
        "delayed": 0,
    }
    assert call(info, "GET", "queue_depth?queue=up")[1]["delayed"] == 1
    status, malformed = call(info, "POST", "inject_malformed", {})
    assert status == 200 and malformed["body"]
    seeds = [
        {
            "phone": "13800138000",
            "sign_name": "s",
            "template_code": "t",
            "outcome": "failed",
            "err_code": "MK:0001",
            "receipt": "lost",
            "send_time": "2026-01-01T00:00:00+00:00",
        }
    ]
    status, seeded = call(info, "POST", "seed_sends", {"sends": seeds})
    assert status == 200 and len(seeded["biz_ids"]) == 1
    (record,) = call(info, "GET", "records")[1]["records"]
    assert (record["status"], record["err_code"], record["receipt_fate"]) == (2, "MK:0001", "lost")
    assert record["send_time"] == "2026-01-01T00:00:00+00:00"
    assert call(info, "POST", "expire_tokens")[1] == {"expired": 0}
    assert call(info, "POST", "faults", {"group": "dysms", "error_rate": 0.5, "seed": 1})[0] == 200
    assert emu.faults.spec("dysms").error_rate == 0.5
    assert call(info, "POST", "qps_limit", {"api": "SendSms", "qps": 10})[0] == 200
    assert emu.limiter.limits() == {"SendSms": 10.0}
    assert call(info, "GET", "calls")[1] == {"calls": []}  # control calls are not recorded
    assert call(info, "POST", "reset_calls")[0] == 200


def test_control_api_errors(info: EmulatorInfo) -> None:
    assert call(info, "GET", "nope")[0] == 404
    assert call(info, "POST", "enqueue", {"queue": "report"})[0] == 400
    assert call(info, "POST", "enqueue", {"queue": "missing", "body": "x"})[0] == 404
    assert call(info, "POST", "faults", {"error_rate": 2})[0] == 400
    assert call(info, "POST", "seed_sends", {"sends": [{"phone": "1", "bogus": 1}]})[0] == 400


def test_koomessage_route_can_be_replaced(emu: Emulator, info: EmulatorInfo) -> None:
    url = f"{info.koomessage_endpoint}/v1/aim/send-details"
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(url, timeout=10)  # noqa: S310 - local
    with unsigned.value as error:
        assert error.code != 404  # a route named "koomessage" serves the path

    def handler(request: Request, api: str) -> Response:
        return Response(200, b'{"send_details":[]}', [("Content-Type", "application/json")])

    def faults(kind: FaultKind, request: Request, api: str) -> Response:
        return Response(500, b"{}")

    route = path_route("ListAimSendDetails", "koomessage", "GET", KOOMESSAGE_PATH, handler, faults)
    emu.add_route(route, replace="koomessage")
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - local
        assert json.loads(response.read()) == {"send_details": []}
    assert emu.calls("ListAimSendDetails")[0].status == 200
    emu.set_faults("koomessage", FaultSpec(error_rate=1.0))
    with pytest.raises(urllib.error.HTTPError) as faulted:
        urllib.request.urlopen(url, timeout=10)  # noqa: S310 - local
    with faulted.value as error:
        assert error.code == 500


def test_koomessage_placeholder_route() -> None:
    route = koomessage_placeholder_route()
    request = Request("GET", KOOMESSAGE_PATH, {})
    assert route.matches(request)
    assert route.handle(request, "koomessage").status == 501


def test_cli_prints_one_json_line_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from receiptd.cli.emulator import command; command()",
            "--port",
            "0",
            "--profile",
            "lossy",
            "--token-lifetime",
            "60",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        assert set(info) >= REQUIRED_KEYS
        port = info["port"]
        assert info["mns_endpoint"] == f"http://127.0.0.1:{port}"
        assert info["dysms_endpoint"] == info["dybase_endpoint"] == info["mns_endpoint"]
        assert (info["profile"], info["token_lifetime"]) == ("lossy", 60.0)
        with urllib.request.urlopen(f"{info['control_endpoint']}/info", timeout=10) as response:  # noqa: S310
            assert json.loads(response.read())["port"] == port
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=20)
        assert process.returncode == 0
        assert out == ""  # exactly one line was printed
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_cli_rejects_unknown_profile() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from receiptd.cli.emulator import command; command()",
            "--port",
            "0",
            "--profile",
            "no-such-profile",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "no-such-profile" in result.stderr
    assert result.stdout == ""
