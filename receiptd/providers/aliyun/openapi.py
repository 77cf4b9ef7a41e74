"""Shared construction of the alibabacloud (Tea/Darabonba) API clients: Dysmsapi, Dybaseapi."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from alibabacloud_tea_openapi.utils_models import Config

from receiptd.providers.aliyun.credentials import OpenApiAccess


@dataclass(frozen=True, slots=True)
class ApiEndpoint:
    """An API endpoint setting (``https://host[:port]``) split the way the SDK wants it."""

    host: str  # host[:port], no scheme: what Config.endpoint takes
    protocol: str  # "http" | "https"

    @classmethod
    def parse(cls, url: str) -> ApiEndpoint:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) endpoint: {url!r}")
        return cls(parts.netloc, parts.scheme)


def tea_config(access: OpenApiAccess) -> Config:
    """A client Config with bounded connect and read timeouts (the SDK takes milliseconds)."""
    parsed = ApiEndpoint.parse(access.endpoint)
    millis = int(access.timeout_seconds * 1000)
    return Config(
        access_key_id=access.access_key_id,
        access_key_secret=access.access_key_secret,
        endpoint=parsed.host,
        protocol=parsed.protocol,
        region_id=access.region_id,
        connect_timeout=min(millis, 5000),
        read_timeout=millis,
    )
