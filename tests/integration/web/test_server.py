"""The HTTP listener (receiptd.web.server) on a real socket: answers, headers, body bound,
closing. Connection limits are receiptd.web.connections' own
(tests/integration/test_http_connections.py)."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from receiptd.web import connections, server
from tests.system.reliability import raw_request


def app(environ: dict[str, Any], start_response: server.StartResponse) -> list[bytes]:
    path = environ["PATH_INFO"]
    if path == "/json":
        return server.json_response(start_response, 200, {"text": "退订"}, [("X-Extra", "1")])
    if path == "/echo":
        data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        return server.send_response(start_response, 200, data, "application/octet-stream")
    return server.json_response(start_response, 418, {"error": "teapot"})


@pytest.fixture
def listening() -> Iterator[server.HttpServer]:
    http = server.HttpServer(
        app, "127.0.0.1", 0, limits=connections.Limits(), name="test", threads=2
    )
    http.start()
    yield http
    http.close()


def request(
    port: int, method: str, path: str, body: bytes | None = None
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, path, body=body)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_json_answers_carry_length_type_and_no_store(listening: server.HttpServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", listening.port, timeout=5)
    conn.request("GET", "/json")
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 200 and response.reason == "OK"
    assert json.loads(body) == {"text": "退订"}
    assert response.getheader("Content-Type") == "application/json"
    assert response.getheader("Content-Length") == str(len(body))
    assert response.getheader("Cache-Control") == "no-store"
    assert response.getheader("X-Extra") == "1"
    assert response.getheader("Server") == "receiptd"


def test_a_status_without_a_known_text_is_named_error(listening: server.HttpServer) -> None:
    response = request(listening.port, "GET", "/other")
    assert (response.status, response.reason) == (418, "Error")


def test_a_body_at_the_bound_is_taken_one_byte_over_is_refused_from_its_head(
    listening: server.HttpServer,
) -> None:
    at_bound = request(listening.port, "POST", "/echo", b"x" * server.MAX_REQUEST_BODY)
    assert at_bound.status == 200
    # The refusal comes from the declared length, before any of the body is read; the client
    # waits for it after the head (a client still sending when the server closes may see a
    # reset instead of the answer, as with any server that will not read a body it refuses).
    head = (
        f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {server.MAX_REQUEST_BODY + 1}\r\n\r\n"
    )
    assert raw_request(listening.port, head.encode() + b"x" * 1000)[0] == 413


def test_close_stops_listening_and_ends_open_connections() -> None:
    http = server.HttpServer(
        app, "127.0.0.1", 0, limits=connections.Limits(), name="test", threads=2
    )
    http.start()
    port = http.port
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert request(port, "GET", "/json").status == 200
    http.close()
    assert idle.recv(1) == b""  # closed by the server
    idle.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert http.failed is None
