"""Client construction for the Alibaba Cloud OpenAPI products
(receiptd.providers.aliyun.openapi)."""

from __future__ import annotations

import pytest

from receiptd.providers.aliyun.credentials import OpenApiAccess
from receiptd.providers.aliyun.openapi import ApiEndpoint, tea_config


@pytest.mark.parametrize(
    ("url", "host", "protocol"),
    [
        ("https://dysmsapi.aliyuncs.com", "dysmsapi.aliyuncs.com", "https"),
        ("dysmsapi.aliyuncs.com", "dysmsapi.aliyuncs.com", "https"),
        ("http://127.0.0.1:8443/", "127.0.0.1:8443", "http"),
    ],
)
def test_an_endpoint_is_split_into_host_and_protocol(url: str, host: str, protocol: str) -> None:
    assert ApiEndpoint.parse(url) == ApiEndpoint(host, protocol)


@pytest.mark.parametrize("url", ["ftp://host", "https://", "http:///path"])
def test_anything_but_an_http_endpoint_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        ApiEndpoint.parse(url)


def test_the_config_bounds_connect_and_read_in_milliseconds() -> None:
    slow = tea_config(OpenApiAccess("http://127.0.0.1:1", "AK", "SK", "cn-shanghai", 12.5))
    assert (slow.endpoint, slow.protocol, slow.region_id) == ("127.0.0.1:1", "http", "cn-shanghai")
    assert (slow.connect_timeout, slow.read_timeout) == (5000, 12500)
    assert (slow.access_key_id, slow.access_key_secret) == ("AK", "SK")
    quick = tea_config(OpenApiAccess("https://h", "AK", "SK", timeout_seconds=2))
    assert (quick.connect_timeout, quick.read_timeout) == (2000, 2000)
