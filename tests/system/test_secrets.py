"""Secrets: a full run with known secret values at DEBUG leaks none of them.

Known values: the account's AccessKey secret (a key of our own, added to the emulator), every
temporary MNS credential the emulator issued (token mode) or that was configured (direct mode,
``RECEIPTD_ALIYUN_SECURITY_TOKEN``), a PostgreSQL role's password, the status bearer token, and
the recipients' phone numbers. The run covers sends, receipts, lost receipts settled by query,
a token expiry, a database outage and every kind of HTTP answer; then every log line, every
HTTP answer (head and body) and the CLI's output are scanned.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from receiptd import api, wiring
from receiptd.db.engine import create_db_engine
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.testing.emulated import emulator_settings
from receiptd_emulator import Emulator, Profile
from receiptd_emulator.credentials import Credential, KeyKind
from tests.system.daemon import Daemon, daemon_env, free_port
from tests.system.reliability import CutProxy, Db, find_secrets, raw_request, receipt_fields

pytestmark = pytest.mark.system

ACCESS_KEY_ID = "LTAI5tSecretScan0001"
ACCESS_KEY_SECRET = "AkSecret-Zq8vW3nR6tY1uI0oP5aS"
STATUS_TOKEN = "StatusTok-Hj4kL7mN0bV3cX6zQ"
DB_PASSWORD = "DbPass-Wq2eR5tY8uI1oP4xK"
PHONES = [f"138{n:04d}5678" for n in range(10)] + [f"139{n:04d}4321" for n in range(10)]
PROFILE = Profile(name="secrets", seed=5, lost=0.4, receipt_delay=(0.2, 1.5))


def _phone_forms(phone: str) -> list[str]:
    return [phone, f"+86{phone}", f"86{phone}", f"%2B86{phone}"]


@pytest.fixture
def db_role(pg_url: str) -> Iterator[str]:
    """A login role with a password, allowed to use the scratch database; the URL with it."""
    role = f"receiptd_secret_{uuid.uuid4().hex[:8]}"
    url = make_url(pg_url)
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    statements = [
        f"CREATE ROLE {role} LOGIN PASSWORD '{DB_PASSWORD}'",
        f"GRANT CONNECT ON DATABASE {url.database} TO {role}",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    ]
    with admin.connect() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    try:
        yield url.set(username=role, password=DB_PASSWORD).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


@pytest.fixture
def db(pg_url: str) -> Iterator[Db]:
    handle = Db(pg_url)
    yield handle
    handle.close()


def _get(port: int, path: str, auth: str | None = None, method: str = "GET") -> str:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if auth is not None:
        head += f"Authorization: {auth}\r\n"
    return raw_request(port, (head + "\r\n").encode())[1].decode("utf-8", "replace")


def _raw(port: int, data: bytes) -> str:
    return raw_request(port, data)[1].decode("utf-8", "replace")


def _http_answers(port: int, biz_ids: list[str], label: str) -> list[tuple[str, str]]:
    """Every kind of answer the endpoint gives: probes, metrics, lookups, every error."""
    good = f"Bearer {STATUS_TOKEN}"
    answers = [
        (f"{label} /healthz", _get(port, "/healthz")),
        (f"{label} /readyz", _get(port, "/readyz")),
        (f"{label} /metrics", _get(port, "/metrics")),
        (f"{label} 404", _get(port, "/nope")),
        (f"{label} 405", _get(port, "/healthz", method="DELETE")),
        (f"{label} 401", _get(port, f"/v1/sends/{biz_ids[0]}", "Bearer wrong")),
        (f"{label} 401 prefix", _get(port, f"/v1/sends/{biz_ids[0]}", good[:-3])),
        (f"{label} 400", _get(port, "/v1/sends/" + "9" * 65, good)),
        (f"{label} unknown", _get(port, "/v1/sends/unknown^0", good)),
        (f"{label} 413", _raw(port, b"GET /healthz HTTP/1.1\r\nContent-Length: 2\r\n\r\nab")),
        (
            f"{label} registration 400",
            _raw(
                port,
                (
                    f"POST /v1/sends HTTP/1.1\r\nAuthorization: {good}\r\nContent-Length: 2\r\n"
                    "Connection: close\r\n\r\n[]"
                ).encode(),
            ),
        ),
    ]
    answers += [(f"{label} /v1/sends/{b}", _get(port, f"/v1/sends/{b}", good)) for b in biz_ids]
    return answers


def _send(emu: Emulator, pg_url: str) -> list[str]:
    settings = emulator_settings(
        emu.info,
        pg_url,
        aliyun_access_key_id=ACCESS_KEY_ID,
        aliyun_access_key_secret=ACCESS_KEY_SECRET,
    )
    engine = create_db_engine(pg_url)
    try:
        store = SendStore(SqlStore(engine), settings.timezone)
        client = wiring.dysms_client(settings)
        return [
            api.send_and_register(
                client,
                store,
                PHONES[i : i + 2],
                emu.info.sign_name,
                emu.info.template_code,
                {"code": "8642"},
                f"secret-{i}",
            ).biz_id
            for i in range(0, len(PHONES) - 2, 2)
        ]
    finally:
        engine.dispose()


def _cli(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "receiptd", *args],
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout + proc.stderr


def _issued_sts(emu: Emulator) -> list[str]:
    """Secret and token of every temporary credential a client used."""
    values = []
    for ak in {c.access_key_id for c in emu.calls() if c.access_key_id.startswith("STS.")}:
        credential = emu.credentials.get(ak)
        assert credential is not None
        values += [credential.access_key_secret, credential.security_token]
    return values


def _settled(db: Db) -> bool:
    sends = db.sends()
    return bool(sends) and all(s["status"] != "pending" for s in sends)


def _scan(texts: list[tuple[str, str]], secrets: list[str]) -> list[str]:
    assert find_secrets([("self-check", f"x{secrets[0]}x")], secrets)  # the scan can fail
    phones = [form for phone in PHONES for form in _phone_forms(phone)]
    return find_secrets(texts, secrets) + find_secrets(texts, phones)


@pytest.mark.timeout(400)
def test_no_secret_or_phone_number_in_logs_or_answers(
    pg_url: str, db_role: str, db: Db, tmp_path: Path
) -> None:
    url = make_url(db_role)
    proxy = CutProxy(url.host or "127.0.0.1", url.port or 5432).start()
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    texts: list[tuple[str, str]] = []
    try:
        with Emulator(profile=PROFILE) as emu:
            emu.credentials.add(Credential(ACCESS_KEY_ID, ACCESS_KEY_SECRET, KeyKind.ACCOUNT))
            env = daemon_env(
                emu,
                proxied,
                free_port(),
                RECEIPTD_ALIYUN_ACCESS_KEY_ID=ACCESS_KEY_ID,
                RECEIPTD_ALIYUN_ACCESS_KEY_SECRET=ACCESS_KEY_SECRET,
                RECEIPTD_STATUS_API_TOKEN=STATUS_TOKEN,
                RECEIPTD_LOG_LEVEL="DEBUG",
                RECEIPTD_COMPENSATOR_INTERVAL="2",
                RECEIPTD_COMPENSATOR_GRACE="3",
            )
            texts.append(("config check", _cli(env, "config", "check")))
            texts.append(("config check --json", _cli(env, "config", "check", "--json")))
            daemon = Daemon(env, tmp_path / "token-mode.log")
            try:
                daemon.wait_until(daemon.ready, timeout=60)
                biz_ids = _send(emu, db_role)
                texts.append(
                    (
                        "receiptd send",
                        _cli(
                            env,
                            "send",
                            "--phone",
                            f"+86{PHONES[-2]},{PHONES[-1]}",
                            "--sign",
                            emu.info.sign_name,
                            "--template",
                            emu.info.template_code,
                            "--param",
                            json.dumps({"code": "1357"}),
                            "--out-id",
                            "cli-send",
                        ),
                    )
                )
                daemon.wait_until(lambda: db.report_rows() > 0, timeout=60)
                emu.expire_tokens()
                daemon.wait_until(lambda: _settled(db), timeout=120)
                texts += _http_answers(daemon.port, biz_ids, "up")
                proxy.cut()  # error answers and error logs while the database is away
                daemon.wait_until(lambda: not daemon.ready(), timeout=30)
                texts += _http_answers(daemon.port, biz_ids, "outage")
                proxy.restore()
                daemon.wait_until(daemon.ready, timeout=60)
                code, _ = daemon.terminate(signal.SIGTERM)
            finally:
                daemon.kill()
            texts.append(("token-mode log", daemon.log()))
            secrets = [ACCESS_KEY_SECRET, STATUS_TOKEN, DB_PASSWORD, *_issued_sts(emu)]
            direct_log, direct_secrets = _direct_mode_run(emu, proxied, db, tmp_path)
            texts.append(("direct-mode log", direct_log))
            secrets += direct_secrets
    finally:
        proxy.close()

    leaks = _scan(texts, secrets)
    logs = [text for where, text in texts if where.endswith("log")]
    log_lines = sum(text.count("\n") for text in logs)
    masked = [where for where, text in texts if "138****5678" in text]
    print(
        f"\nsecrets: {len(secrets)} secret values ({len(secrets) - 3} temporary MNS credentials "
        f"and tokens), {len(PHONES)} phone numbers x4 forms; scanned {log_lines} DEBUG log lines "
        f"and {len(texts) - 2} HTTP answers / CLI outputs; found {len(leaks)}: {leaks}"
    )
    assert code == 0
    assert leaks == []
    assert any(where.startswith("up /v1/sends/") for where in masked)  # masked, not dropped
    assert any('"level": "debug"' in text for text in logs)  # DEBUG really was on


def _direct_mode_run(emu: Emulator, proxied: str, db: Db, tmp_path: Path) -> tuple[str, list[str]]:
    """Direct mode with a configured STS key and security token (RECEIPTD_ALIYUN_SECURITY_TOKEN);
    the token expires mid-run, so the refusals are logged too."""
    sts = emu.issue_token("SmsReport")
    env = daemon_env(
        emu,
        proxied,
        free_port(),
        RECEIPTD_ALIYUN_MNS_ENDPOINT=emu.info.mns_endpoint,
        RECEIPTD_ALIYUN_ACCESS_KEY_ID=sts.access_key_id,
        RECEIPTD_ALIYUN_ACCESS_KEY_SECRET=sts.access_key_secret,
        RECEIPTD_ALIYUN_SECURITY_TOKEN=sts.security_token,
        RECEIPTD_STATUS_API_TOKEN=STATUS_TOKEN,
        RECEIPTD_CONSUMER_UP_THREADS="0",
        RECEIPTD_COMPENSATOR_ENABLED="false",
        RECEIPTD_LOG_LEVEL="DEBUG",
    )
    before = db.report_rows()
    for i, phone in enumerate(PHONES):
        emu.enqueue_report({**receipt_fields(i, prefix="3"), "phone_number": phone})
    daemon = Daemon(env, tmp_path / "direct-mode.log")
    try:
        daemon.wait_until(lambda: db.report_rows() >= before + len(PHONES), timeout=60)
        emu.expire_tokens()
        emu.enqueue_report({**receipt_fields(99, prefix="3"), "phone_number": PHONES[0]})
        daemon.wait_until(lambda: "SecurityTokenExpired" in daemon.log(), timeout=60)
        code, _ = daemon.terminate(signal.SIGTERM)
    finally:
        daemon.kill()
    assert code == 0
    return daemon.log(), [sts.access_key_secret, sts.security_token]
