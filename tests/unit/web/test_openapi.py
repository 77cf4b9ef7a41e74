"""receiptd/web/openapi.json, the HTTP API's contract: a valid OpenAPI 3.1 document (the
specification's own schema, as schemathesis checks it, and every schema in it a valid JSON
Schema 2020-12), naming every route the ops and push apps answer and no other, served as it is
kept in the repository. tests/system/test_openapi.py tests the running apps against it."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import schemathesis

from receiptd import ports
from receiptd.daemon import ops
from receiptd.daemon.ops import OpsApp, Probes
from receiptd.ingest.push import routes

DOCUMENT = Path(ops.__file__).parents[1] / "web" / "openapi.json"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    return data


def schemas(node: Any) -> Iterator[dict[str, Any]]:
    """Every Schema Object of the document: components' and each ``schema`` of a parameter,
    a request body or a response."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema" and isinstance(value, dict):
                yield value
            elif key == "schemas" and isinstance(value, dict):
                yield from value.values()
            else:
                yield from schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from schemas(value)


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(json.loads(json.dumps(document))).validate()
    found = list(schemas(document))
    assert len(found) > 30, "the schema walk found too few schemas: is it still looking?"
    for schema in found:
        jsonschema.Draft202012Validator.check_schema(schema)


def test_an_invalid_document_is_refused(document: dict[str, Any]) -> None:
    """The validation above can fail: a response without its description is not OpenAPI."""
    broken = json.loads(json.dumps(document))
    del broken["paths"]["/healthz"]["get"]["responses"]["200"]["description"]
    with pytest.raises(Exception, match="description"):
        schemathesis.openapi.from_dict(broken).validate()


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    text = DOCUMENT.read_text(encoding="utf-8")
    names = set(re.findall(r'"#/components/schemas/([A-Za-z]+)"', text))
    assert names and names <= set(document["components"]["schemas"])


def push_paths() -> set[str]:
    """The push app's paths as templates: each channel for the ``default`` account and for a
    named one (receiptd.ingest.push.routes)."""
    return {
        f"/push/{{token}}{account}/{channel}"
        for channel in routes.CHANNELS
        for account in ("", "/{account}")
    }


def test_every_route_the_apps_answer_is_documented_and_only_those(
    document: dict[str, Any],
) -> None:
    documented = {
        path: sorted(m.upper() for m in item if m in METHODS)
        for path, item in document["paths"].items()
    }
    answered = {path: sorted(methods) for path, methods in ops.ROUTES.items()}
    answered |= {path: ["POST"] for path in push_paths()}
    assert documented == answered


@pytest.mark.parametrize("template", sorted(push_paths()))
def test_each_documented_push_path_is_routed(template: str) -> None:
    """A documented push path, its token and account filled in, is a route of the push app."""
    token = "t0k3n"
    router = routes.Router(
        [
            routes.PushAccount("default", "aliyun", token),
            routes.PushAccount("default", "huawei", token),
            routes.PushAccount("brand_b", "aliyun", token),
            routes.PushAccount("hw", "huawei", token),
        ]
    )
    channel = template.rsplit("}/", 1)[1]
    account = "hw" if routes.CHANNELS[channel].provider == "huawei" else "brand_b"
    path = template.replace("{token}", token).replace("{account}", account)
    route = router.route(path)
    assert route is not None and route.channel is routes.CHANNELS[channel]
    assert router.route(path.replace(token, "wrong")) is None


def test_each_documented_ops_path_is_answered() -> None:
    """Every ops path of the document, filled in, reaches its handler: none answers the 404
    of an unknown path (``not found``), which a path missing from the routing would get."""
    app = OpsApp(
        Probes({}, {}),
        status_token="tok",
        lookup=lambda b, a, k: [],
        register=len,
        summary=ports.StatusSummary,
    )
    for template, methods in ops.ROUTES.items():
        path = template.replace("{biz_id}", "b1^0")
        status, body = wsgi(app, methods[0], path, {"HTTP_AUTHORIZATION": "Bearer tok"})
        assert body != {"error": "not found"}, (template, status)
    assert wsgi(app, "GET", "/v1/nope", {}) == ("404 Not Found", {"error": "not found"})


def test_the_ops_app_serves_the_document_as_kept() -> None:
    status, body = wsgi(OpsApp(Probes({}, {})), "GET", "/openapi.json", {})
    assert status == "200 OK"
    assert body == json.loads(DOCUMENT.read_text(encoding="utf-8"))


def wsgi(app: OpsApp, method: str, path: str, extra: dict[str, str]) -> tuple[str, Any]:
    answer: dict[str, str] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer["status"] = status

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(b"[]")}
    environ |= {"CONTENT_LENGTH": "2"} if method == "POST" else {}
    data = b"".join(app({**environ, **extra}, start_response))
    return answer["status"], json.loads(data) if data.startswith((b"{", b"[")) else data
