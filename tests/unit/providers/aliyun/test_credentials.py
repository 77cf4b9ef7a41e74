"""What the Aliyun adapters are given (receiptd.providers.aliyun.credentials): no secret in
a repr."""

from __future__ import annotations

from receiptd.providers.aliyun.credentials import MnsCredentials, OpenApiAccess, StaticCredentials


def test_secrets_never_appear_in_a_repr() -> None:
    keys = MnsCredentials("AK-id", "sk-secret-value", "sts-token-value")
    access = OpenApiAccess("https://h", "AK-id", "sk-secret-value")
    for text in (repr(keys), repr(access), repr(StaticCredentials(keys))):
        assert "AK-id" in text
        assert "sk-secret-value" not in text and "sts-token-value" not in text


def test_static_credentials_stay_what_they_are_after_invalidation() -> None:
    keys = MnsCredentials("AK", "SK")
    source = StaticCredentials(keys)
    source.invalidate(keys)
    assert source.current() is keys
