"""What the Aliyun adapters are given instead of Settings: keys, endpoints, timeouts.

Built by ``receiptd.wiring`` from the settings; secrets never appear in a repr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class MnsCredentials:
    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str = field(default="", repr=False)


class CredentialSource(Protocol):
    """Where an adapter gets its keys: fixed (direct mode) or a token cache (token mode)."""

    def current(self) -> MnsCredentials: ...

    def invalidate(self, credentials: MnsCredentials) -> None: ...


@dataclass(frozen=True, slots=True)
class StaticCredentials:
    credentials: MnsCredentials

    def current(self) -> MnsCredentials:
        return self.credentials

    def invalidate(self, credentials: MnsCredentials) -> None:
        """Fixed keys cannot be refreshed; the auth error surfaces to the loop's backoff."""


@dataclass(frozen=True, slots=True)
class OpenApiAccess:
    """One Alibaba Cloud OpenAPI product (Dysmsapi, Dybaseapi): where and with which keys."""

    endpoint: str
    access_key_id: str
    access_key_secret: str = field(repr=False)
    region_id: str = "cn-hangzhou"
    timeout_seconds: float = 10.0
