"""schemathesis against the running apps: the ops app and the push app, as ``receiptd run``
wires them (``receiptd.wiring.daemon``), each on a real socket, over a migrated SQLite file,
tested against receiptd/web/openapi.json.

Every operation of the document gets bounded examples (:data:`EXAMPLES` per operation and
phase), valid and invalid: no answer is a 5xx, every answer matches the document (status,
content type, headers, body schema), the send API refuses requests without the bearer token,
and every 4xx of ``/v1/…`` carries a JSON ``error`` that says something. The database stays
reachable: a 503 from a cut database is legitimate, documented, and tested by
tests/system/test_db_outage.py, not here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi import checks

from receiptd import config
from receiptd.daemon.ops import OpsServer, Probes
from receiptd.db.engine import create_db_engine
from receiptd.db.migrate import upgrade
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.ingest.push import listener as push
from receiptd.web import connections
from receiptd.wiring import daemon

pytestmark = pytest.mark.system

DOCUMENT = Path(__file__).resolve().parents[2] / "receiptd" / "web" / "openapi.json"
TOKEN = "api-token-0123456789"
PUSH_TOKEN = "push-token-0123456789"
EXAMPLES = 20  # per operation and phase (14 operations): about 30 s here
NAMED = {"aliyun": "brand_b", "huawei": "hw"}  # the named account of each provider

schema = schemathesis.openapi.from_path(DOCUMENT)
# Invalid data may also be refused as too large (413: more elements than a request may carry).
_negative = schema.config.checks.negative_data_rejection
_negative.expected_statuses = [*_negative.expected_statuses, "413"]


@schema.auth().apply_to(path_regex="^/v1/")
class Bearer:
    """The send API's token, set by schemathesis (so it knows the case is authenticated and
    can leave it out on purpose, or probe the operation without it)."""

    def get(self, case: Any, context: Any) -> str:
        return TOKEN

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The base URL of each port: ``ops`` and ``push``."""
    url = f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'receiptd.db'}"
    engine = create_db_engine(url)
    upgrade(engine)
    settings_ = config.Settings(
        database_url=url,
        status_api_token=TOKEN,
        push_addr="127.0.0.1:0",
        push_token=PUSH_TOKEN,
        aliyun_access_key_id="ak",
        aliyun_access_key_secret="secret",
        aliyun_queue_prefix="Alicom-Queue-1-",
        accounts={
            "brand_b": {"provider": "aliyun", "access_key_id": "ak-b",
                        "access_key_secret": "s", "queue_prefix": "Alicom-Queue-2-"},
            "hw": {"provider": "huawei", "access_key_id": "k", "secret_access_key": "s",
                   "project_id": "p"},
        },
    )  # fmt: skip
    store = SqlStore(engine)
    probes = Probes({}, {"database": daemon.database_check(store)})
    ops = OpsServer(daemon.ops_app(settings_, SendStore(store), probes), "127.0.0.1", 0)
    app = daemon.push_app(settings_, store)
    assert app is not None
    listener = push.PushListener(app, "127.0.0.1", 0, 4, connections.Limits())
    ops.start()
    listener.start()
    yield {"ops": f"http://127.0.0.1:{ops.port}", "push": f"http://127.0.0.1:{listener.port}"}
    listener.join(5)
    ops.close()
    engine.dispose()


def on_push_port(case: Any) -> bool:
    return str(case.path).startswith("/push/")


def aim_at_accounts(case: Any) -> None:
    """A push case with the right token and its provider's named account: otherwise every
    push answer would be the bare 404 and the bodies would never be read."""
    case.path_parameters["token"] = PUSH_TOKEN
    if "account" in case.path_parameters:
        provider = "huawei" if case.path.endswith("/send-status") else "aliyun"
        case.path_parameters["account"] = NAMED[provider]


def excluded(case: Any) -> list[Any]:
    """Checks that do not apply, each for a reason the document states:

    * positive data accepted: a record the schema allows may still be refused with 400 (its
      account must be configured, ``sent_at`` a real moment), and so may a push body that is
      JSON of the documented shape but holds no readable envelope;
    * an undocumented method answered 405 with ``Allow``: the push app answers 405 without
      ``Allow`` (receiptd.ingest.push.listener: no detail by design)."""
    if on_push_port(case):
        return [checks.positive_data_acceptance, checks.unsupported_method]
    if case.method.upper() == "POST":
        return [checks.positive_data_acceptance]
    return []


def clear_error(response: Any, case: Any) -> None:
    """A 4xx of the send API says what is wrong, in JSON."""
    if case.path.startswith("/v1/") and 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body.get("error"), str) and len(body["error"]) >= 5, body


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_apps_answer_as_documented(case: Any, apps: dict[str, str]) -> None:
    if on_push_port(case):
        aim_at_accounts(case)
    base = apps["push"] if on_push_port(case) else apps["ops"]
    response = case.call_and_validate(base_url=base, excluded_checks=excluded(case))
    assert response.status_code < 500, response.text
    clear_error(response, case)
