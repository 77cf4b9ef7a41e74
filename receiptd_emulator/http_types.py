"""Plain request/response values passed between the HTTP server and the API handlers.

Handlers never touch sockets: they take a `Request` and return a `Response`, which keeps them
testable without a server and lets the server apply faults uniformly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

_ABSOLUTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")


def strip_absolute_uri(target: str) -> str:
    """`http://host:port/queues/q?x=1` -> `/queues/q?x=1` (the Alicom MNS fork sends proxy form).

    The SDK signs the path + query only, so this is also the MNS canonicalized resource.
    """
    match = _ABSOLUTE_URI.match(target)
    if match is None:
        return target
    rest = target[match.end() :]
    return rest if rest.startswith("/") else "/" + rest


def split_raw_query(raw_query: str) -> list[tuple[str, str]]:
    """Split on `&`, then on the first `=`, decoding nothing.

    The MNS SDK puts receipt handles into the query unencoded, and real handles can contain
    `+`, `/` and `=`: `parse_qs` would turn `+` into a space.
    """
    pairs: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((key, value))
    return pairs


def decode_form(raw: str) -> dict[str, str]:
    """Decode `application/x-www-form-urlencoded` text (Alibaba POP: `+` is a space)."""
    return {unquote_plus(k): unquote_plus(v) for k, v in split_raw_query(raw)}


@dataclass(slots=True)
class Request:
    """One parsed HTTP request; header names are lower-case."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes = b""
    client: str = ""
    path: str = field(init=False)
    raw_query: str = field(init=False)
    _raw_params: dict[str, str] | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.path, _, self.raw_query = self.target.partition("?")

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)

    @property
    def host(self) -> str:
        return self.headers.get("host", "")

    def raw_params(self) -> dict[str, str]:
        """Query parameters exactly as sent (not URL-decoded); the first occurrence wins."""
        if self._raw_params is None:
            params: dict[str, str] = {}
            for key, value in split_raw_query(self.raw_query):
                params.setdefault(key, value)
            self._raw_params = params
        return self._raw_params


@dataclass(slots=True)
class Response:
    """What a handler wants sent back. `reset` asks the server to drop the connection."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    outcome: str = "OK"
    reset: bool = False
