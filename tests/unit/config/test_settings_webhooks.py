"""Webhook settings: the TOML endpoint table, the URL list, and errors naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from receiptd import config, wiring

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("RECEIPTD_") or key == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(key)


def test_toml_endpoints_and_url_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "r.toml"
    toml.write_text(
        f'[webhook]\nretry_period = 600\n[[webhook.endpoints]]\nname = "app"\n'
        f'url = "https://app.example/h"\nsecret = "{SECRET}"\nevents = ["send.failed"]\n'
        f"timeout = 3\nconcurrency = 2\n"
    )
    monkeypatch.setenv("RECEIPTD_WEBHOOK_URLS", " https://b.example/x , http://c.example/y")
    monkeypatch.setenv("RECEIPTD_WEBHOOK_SECRET", SECRET)
    s = config.load_settings(toml)
    names = [e.name for e in s.webhooks]
    assert names[2] == "app" and all(n.startswith("url-") and len(n) == 16 for n in names[:2])
    assert s.webhooks[0].url == "https://b.example/x"
    assert (s.webhook_retry_period, s.webhooks[2].timeout, s.webhooks[2].concurrency) == (600, 3, 2)
    out = wiring.event_outbox(s)
    assert out is not None and out.routes[2].types == frozenset({"send.failed"})
    assert not out.show_phone_numbers and not out.notify
    masked = json.dumps(s.masked(), default=str)
    assert SECRET not in masked and "**********" in masked


def test_no_endpoint_no_events() -> None:
    assert wiring.event_outbox(config.load_settings()) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RECEIPTD_WEBHOOK_URLS": "https://a/x"}, "webhook_secret is required"),
        ({"RECEIPTD_WEBHOOK_URLS": "ftp://a/x", "RECEIPTD_WEBHOOK_SECRET": SECRET}, "webhook_urls"),
        ({"RECEIPTD_WEBHOOK_SECRET": "whsec_c2hvcnQ="}, "webhook_secret: expected whsec_"),
        ({"RECEIPTD_WEBHOOK_SECRET": "not-a-secret"}, "webhook_secret: expected whsec_"),
        ({"RECEIPTD_WEBHOOK_ENDPOINTS": "not json"}, "webhook_endpoints: not valid JSON"),
        (
            {
                "RECEIPTD_WEBHOOK_ENDPOINTS": json.dumps(
                    [{"name": "a", "url": "https://a/x", "secret": SECRET, "events": ["send.sent"]}]
                )
            },
            "unknown event type",
        ),
        (
            {
                "RECEIPTD_WEBHOOK_ENDPOINTS": json.dumps(
                    [{"name": "a b", "url": "https://a/x", "secret": SECRET}]
                )
            },
            "webhook_endpoints.0.name",
        ),
        (
            {
                "RECEIPTD_WEBHOOK_ENDPOINTS": json.dumps(
                    [{"name": "a", "url": "https://a/x", "secret": SECRET}] * 2
                )
            },
            "names must be unique",
        ),
    ],
)
def test_bad_webhook_settings_name_the_key(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(config.ConfigError, match=message):
        config.load_settings()
