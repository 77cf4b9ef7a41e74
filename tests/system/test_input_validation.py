"""Configuration and HTTP input.

* Every setting, given a bad value through the environment (and through a ``_FILE`` that cannot
  be read), stops start-up with one line ``receiptd: invalid setting <key>: <reason>`` and
  exit code 2 — never a traceback.
* A running daemon's HTTP endpoints answer bad methods, oversized and malformed requests with
  a clean 4xx, never a 5xx, and stay healthy; the status lookup refuses missing or wrong
  tokens, compared in constant time.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from receiptd import api, config
from receiptd.cli import main
from receiptd.daemon import ops
from receiptd.db.engine import create_db_engine
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd_emulator import Emulator
from tests.system.daemon import Daemon, daemon_env, free_port
from tests.system.reliability import raw_request

pytestmark = pytest.mark.system

# A bad value (or several) for every setting that has one. The keys must cover every field of
# Settings together with FREE_TEXT, so a new setting cannot be added without deciding here.
BAD_VALUES: dict[str, list[str]] = {
    "database_url": ["not a url", "oracle://scott@db/orcl"],
    "aliyun_mns_endpoint": ["mns.cn-hangzhou.aliyuncs.com", "ftp://mns.example.com"],
    "aliyun_alicom_mns_endpoint": ["1943695596114318.mns.cn-hangzhou.aliyuncs.com"],
    "aliyun_dysms_endpoint": ["dysmsapi.aliyuncs.com"],
    "aliyun_dybase_endpoint": ["tcp://dybaseapi.aliyuncs.com"],
    "aliyun_request_timeout": ["0", "-1", "121", "ten", "nan"],
    "provider_timezone": ["Asia/Beijing", "../../etc/passwd", ""],
    "aliyun_site": ["global", "INTL", ""],
    "aliyun_globe_reports": ["sometimes"],
    "aliyun_query_message_rate_limit": ["0", "301", "nan"],  # QueryMessage's cap: 300/s
    "aliyun_send_rate_limit": ["0", "2001"],  # SendMessageToGlobe's cap: 2,000/s
    "consumer_globe_threads": ["-1", "65"],
    "huawei_endpoint": ["koomessage.myhuaweicloud.cn"],
    "http_addr": ["localhost", "127.0.0.1:99999", "127.0.0.1:http", ""],
    "log_format": ["xml"],
    "log_level": ["LOUD", "10"],
    "log_show_phone_numbers": ["maybe"],
    "consumer_report_threads": ["-1", "65", "two"],
    "consumer_up_threads": ["65"],
    "consumer_batch_size": ["0", "17"],
    "consumer_wait_seconds": ["-1", "31"],
    "consumer_max_dequeue": ["0", "1001", "many"],
    "consumer_socket_timeout": ["0", "301", "1"],  # 1: not above the long-poll wait
    "compensator_enabled": ["perhaps"],
    "compensator_interval": ["0", "-600", "soon", "nan"],
    "compensator_grace": ["-1", "nan"],
    "compensator_rate_limit": ["0", "5001", "nan"],
    "compensator_batch_size": ["0", "1000001", "1.5"],
    "compensator_max_backoff": ["0", "nan"],
    "compensator_horizon": ["-1", "nan", "3 days"],
    "compensator_horizon_aliyun": ["-1", "inf"],
    "compensator_horizon_huawei": ["-0.5"],
    "retention_days": ["-1", "36501", "1.5", "ninety"],
    "retention_days_sms_send": ["-1"],
    "retention_days_sms_report": ["36501"],
    "retention_days_sms_inbound": ["a week"],
    "retention_days_dead_letter": ["-7"],
    "retention_days_compensator_run": ["2.5"],
    "prune_enabled": ["often"],
    "prune_interval": ["59", "nan"],
    "prune_batch_size": ["0", "100001"],
    "heartbeat_timeout": ["0", "-5"],
    "shutdown_timeout": ["0", "601"],
    "migrate_on_start": ["sometimes"],
    # HTTP push (docs/push.md); a push_addr without push_token is refused too.
    "push_addr": ["localhost", "127.0.0.1:99999", "127.0.0.1:9500"],
    "push_token": ["short", "has spaces in it but long", "slash/inside/the/token/x"],
    "push_allow_cidrs": ["10.0.0.0/33", "nonsense", "10.0.0.0/8, example.com"],
    "push_trusted_proxies": ["proxy.example.com"],
    "push_threads": ["0", "65"],
    "push_max_body": ["0", "1023", "big"],
    "push_max_elements": ["0", "100001"],
    "push_channel_timeout": ["0", "601", "nan"],
    "push_max_connections": ["15", "65537", "many"],
    "push_max_connections_per_source": ["-1", "2000", "1.5"],  # 2000: over max_connections
    "push_header_timeout": ["0", "601", "inf"],
    "push_body_timeout": ["0", "-1", "nan"],
    # Webhooks
    "webhook_urls": ["ftp://a.example/x", "a.example/x"],
    "webhook_secret": ["not-a-secret", "whsec_c2hvcnQ="],
    "webhook_endpoints": [
        "not json",
        '[{"name": "a b", "url": "https://a.example/x", '
        '"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}]',
    ],
    "webhook_timeout": ["0", "121"],
    "webhook_concurrency": ["0", "65"],
    "webhook_retry_period": ["0", "inf"],
    "webhook_backoff_initial": ["0"],
    "webhook_backoff_max": ["-1"],
    "webhook_poll_interval": ["0", "61"],
    "webhook_batch_size": ["0", "1001"],
    "events_show_phone_numbers": ["maybe"],
    "events_retention_days": ["0", "-1"],
    "events_notify": ["loud"],
    # Named accounts ([accounts.<id>]; RECEIPTD_ACCOUNT_<ID>_<KEY>: tests/unit/config)
    "accounts": ["not json", '{"default": {"provider": "aliyun"}}', '{"a": {"provider": "gcp"}}'],
    "serve_accounts": ["brand_c", "Brand-A"],
    "roles": ["consumers", "worker,all"],
}
# Free text: no value is invalid in itself (the provider refuses a wrong key at run time).
FREE_TEXT = {
    "aliyun_access_key_id",
    "aliyun_access_key_secret",
    "aliyun_security_token",
    "aliyun_queue_prefix",
    "aliyun_report_queue",
    "aliyun_up_queue",
    "aliyun_globe_queue",
    "aliyun_region",
    "huawei_access_key_id",
    "huawei_secret_access_key",
    "huawei_project_id",
    "status_api_token",
}
CASES = [(name, value) for name, values in BAD_VALUES.items() for value in values]


def _clean_env(**values: str | None) -> dict[str, str | None]:
    """CliRunner env: every ambient RECEIPTD_* removed, then ``values``."""
    env: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith("RECEIPTD_") or k == "CREDENTIALS_DIRECTORY"
    }
    env.update(values)
    return env


def _assert_one_line_naming(stderr: str, key: str, exit_code: int, stdout: str = "") -> None:
    lines = stderr.strip("\n").split("\n")
    assert exit_code == 2, (exit_code, stderr, stdout)
    assert "Traceback" not in stderr + stdout
    assert len(lines) == 1, stderr
    assert lines[0].startswith("receiptd: invalid setting "), lines[0]
    assert key in lines[0], lines[0]


def test_bad_value_table_covers_every_setting() -> None:
    fields = set(config.Settings.model_fields)
    assert set(BAD_VALUES) | FREE_TEXT == fields
    assert not set(BAD_VALUES) & FREE_TEXT


@pytest.mark.parametrize(("name", "value"), CASES, ids=[f"{n}={v!r}" for n, v in CASES])
def test_invalid_setting_is_one_line_and_exit_2(name: str, value: str) -> None:
    result = CliRunner().invoke(
        main, ["config", "check"], env=_clean_env(**{f"RECEIPTD_{name.upper()}": value})
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    _assert_one_line_naming(result.stderr, name, result.exit_code, result.stdout)
    assert result.stdout == ""


@pytest.mark.parametrize("name", sorted(config.Settings.model_fields))
def test_unreadable_setting_file_is_one_line_and_exit_2(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / name
    env = _clean_env(**{f"RECEIPTD_{name.upper()}_FILE": str(missing)})
    result = CliRunner().invoke(main, ["config", "check"], env=env)
    _assert_one_line_naming(result.stderr, name, result.exit_code, result.stdout)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("database_url", "oracle://scott@db/orcl"),
        ("consumer_batch_size", "17"),
        ("http_addr", "localhost"),
        ("aliyun_dysms_endpoint", "dysmsapi.aliyuncs.com"),
    ],
)
def test_invalid_setting_stops_a_real_daemon_process(name: str, value: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIPTD_")}
    env[f"RECEIPTD_{name.upper()}"] = value
    proc = subprocess.run(
        [sys.executable, "-m", "receiptd", "run"],
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    _assert_one_line_naming(proc.stderr, name, proc.returncode, proc.stdout)


@pytest.mark.parametrize("name", ["compensator_interval", "compensator_grace"])
def test_infinite_duration_stops_start_up_cleanly(name: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'inf.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIPTD_")}
    env.update(
        RECEIPTD_DATABASE_URL=url,
        RECEIPTD_MIGRATE_ON_START="true",
        RECEIPTD_HTTP_ADDR=f"127.0.0.1:{free_port()}",
        RECEIPTD_ALIYUN_ACCESS_KEY_ID="LTAI5tInfinity",
        RECEIPTD_ALIYUN_ACCESS_KEY_SECRET="secret",
        RECEIPTD_ALIYUN_QUEUE_PREFIX="Alicom-Queue-1-",
        RECEIPTD_ALIYUN_ALICOM_MNS_ENDPOINT="http://127.0.0.1:9",
        RECEIPTD_ALIYUN_DYSMS_ENDPOINT="http://127.0.0.1:9",
        RECEIPTD_ALIYUN_DYBASE_ENDPOINT="http://127.0.0.1:9",
        RECEIPTD_SHUTDOWN_TIMEOUT="2",
    )
    env[f"RECEIPTD_{name.upper()}"] = "inf"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "receiptd", "run"],
            env=env,
            capture_output=True,
            check=False,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired as exc:  # accepted and running: not a clean refusal
        raise AssertionError(f"{name}=inf was accepted; the daemon kept running") from exc
    _assert_one_line_naming(proc.stderr, name, proc.returncode, proc.stdout)


# --- HTTP -------------------------------------------------------------------------------------

TOKEN = "status-token-Vq7rX2pL9sKd"
PHONE = "13812345678"


@pytest.fixture(scope="module")
def daemon(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Emulator(profile="default") as emu:
        env = daemon_env(emu, pg_url, free_port(), RECEIPTD_STATUS_API_TOKEN=TOKEN)
        proc = Daemon(env, tmp_path_factory.mktemp("http") / "receiptd.log")
        try:
            proc.wait_until(proc.ready, timeout=60)
            yield proc
        finally:
            proc.kill()


@pytest.fixture(scope="module")
def biz_id(pg_url: str) -> str:
    engine = create_db_engine(pg_url)
    try:
        api.register_send(
            SendStore(SqlStore(engine), config.Settings().timezone),
            biz_id="424242424242^0",
            phone_numbers=[PHONE],
            sent_at=datetime.now(UTC) - timedelta(minutes=1),
            out_id="order-1",
        )
    finally:
        engine.dispose()
    return "424242424242^0"


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None) -> int:
    head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    data = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{head}\r\n"
    return raw_request(port, data.encode())[0]


BAD_REQUESTS: dict[str, tuple[bytes, set[int]]] = {
    "garbage request line": (b"GARBAGE\r\n\r\n", {400}),
    "lower-case method": (b"get /healthz HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    "no method": (b" /healthz HTTP/1.1\r\n\r\n", {400}),
    "header without colon": (b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n", {400}),
    "non-numeric Content-Length": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        {400},
    ),
    "negative Content-Length": (
        b"POST /v1/sends HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n[]",
        {400},
    ),
    "two Content-Lengths": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
        {400},
    ),
    "broken chunked body": (
        b"POST /v1/sends HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n\r\n",
        {400},
    ),
    "GET with a body": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", {413}),
    "GET with a chunked body": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        {413},
    ),
    "10 MB declared body": (
        b"POST /v1/sends HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n",
        {413},
    ),
    "20 KB header": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
        {431},
    ),
    "20 KB URL": (b"GET /healthz?" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", {431}),
    "NUL in path": (b"GET /heal\x00thz HTTP/1.1\r\nHost: x\r\n\r\n", {400, 404}),
    "POST to a probe with a body": (
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        {405},
    ),
    "CONNECT": (b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n", {405}),
    "OPTIONS *": (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", {405}),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_malformed_and_oversized_requests_get_a_clean_4xx(daemon: Daemon, case: str) -> None:
    data, expected = BAD_REQUESTS[case]
    status, answer = raw_request(daemon.port, data)
    assert status in expected, answer[:300]
    assert daemon.get("/healthz")[0] == 200


BAD_METHODS = [
    (method, path)
    for method in ("POST", "PUT", "DELETE", "PATCH", "TRACE")
    for path in ("/healthz", "/readyz", "/metrics", "/v1/sends/1^0")
]


@pytest.mark.parametrize(("method", "path"), BAD_METHODS)
def test_bad_methods_get_405(daemon: Daemon, method: str, path: str) -> None:
    status, answer = raw_request(
        daemon.port,
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode(),
    )
    assert status == 405, answer[:300]
    assert b"allow: get, head" in answer.lower()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong-token",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN.upper()}",
        f"Basic {TOKEN}",
        TOKEN,
        f"Token {TOKEN}",
    ],
)
def test_status_lookup_refuses_missing_or_wrong_tokens(
    daemon: Daemon, biz_id: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    status, answer = raw_request(
        daemon.port,
        f"GET /v1/sends/{biz_id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
        + b"\r\n",
    )
    assert status == 401, answer[:300]
    assert b'www-authenticate: bearer realm="receiptd"' in answer.lower()
    assert PHONE.encode() not in answer and b"order-1" not in answer
    # Unknown ids are refused the same way: no existence oracle without the token.
    assert request(daemon.port, "GET", "/v1/sends/unknown^0", headers) == 401


def test_status_lookup_with_the_token(daemon: Daemon, biz_id: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, answer = raw_request(
        daemon.port,
        f"GET /v1/sends/{biz_id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n".encode(),
    )
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert status == 200
    assert body["recipients"][0]["phone_number"] == "138****5678"
    assert PHONE.encode() not in answer
    assert request(daemon.port, "GET", "/v1/sends/unknown^0", auth) == 404
    assert request(daemon.port, "GET", "/v1/sends/" + "9" * 65, auth) == 400
    assert request(daemon.port, "GET", "/v1/sends/", auth) == 400
    assert request(daemon.port, "GET", "/v1/sends/a%2Fb", auth) == 400


def test_daemon_healthy_after_hostile_requests(daemon: Daemon) -> None:
    """Runs after the request tests of this module (same daemon): still healthy, no 5xx."""
    assert daemon.proc.poll() is None
    assert daemon.get("/healthz")[0] == 200
    assert daemon.ready()
    log = daemon.log()
    assert "Traceback" not in log
    assert '"level": "error"' not in log


def test_token_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    source = inspect.getsource(ops.OpsApp._authorized)
    assert "hmac.compare_digest(" in source
    assert "==" not in source.replace('scheme.lower() == "bearer"', "")
    calls: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return False

    monkeypatch.setattr(ops.hmac, "compare_digest", spy)
    app = ops.OpsApp(ops.Probes({}, {}), status_token=TOKEN, lookup=lambda _: [])
    answers: list[str] = []
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/v1/sends/1^0",
        "HTTP_AUTHORIZATION": f"Bearer {TOKEN[:-1]}",
    }
    app(environ, lambda status, headers: answers.append(status))
    assert answers == ["401 Unauthorized"]
    assert calls == [(TOKEN[:-1].encode(), TOKEN.encode())]
