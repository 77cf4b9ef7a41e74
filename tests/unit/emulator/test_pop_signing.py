"""POP (Dysmsapi) signatures and nonces (receiptd_emulator.pop_signing): the verifiers agree
with the SDKs' own signers, for any input (hypothesis)."""

from __future__ import annotations

from urllib.parse import urlencode

from alibabacloud_tea_openapi.utils import Utils
from darabonba.request import DaraRequest
from hypothesis import given
from hypothesis import strategies as st

from receiptd_emulator.http_types import Request
from receiptd_emulator.pop_signing import NonceCache, acs3_signature, rpc_signature

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)
names = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,10}", fullmatch=True)


@given(params=st.dictionaries(names, text, min_size=1, max_size=6), secret=names)
def test_acs3_signature_matches_sdk(params: dict[str, str], secret: str) -> None:
    dara = DaraRequest()
    dara.method, dara.pathname, dara.query = "POST", "/", params
    dara.headers = {
        "host": "127.0.0.1:1",
        "x-acs-action": "SendSms",
        "x-acs-version": "2017-05-25",
        "x-acs-date": "2026-11-24T01:26:09Z",
        "x-acs-signature-nonce": "n",
        "x-acs-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "accept": "application/json",
    }
    payload = dara.headers["x-acs-content-sha256"]
    auth = Utils.get_authorization(dara, "ACS3-HMAC-SHA256", payload, "AK", secret)
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    wire = Request("POST", "/?" + urlencode(params), dara.headers)  # requests encodes like this
    assert auth.endswith("Signature=" + acs3_signature(wire, signed, payload, secret))


@given(params=st.dictionaries(names, text, min_size=1, max_size=6), secret=names)
def test_rpc_signature_matches_sdk(params: dict[str, str], secret: str) -> None:
    assert rpc_signature("POST", params, secret) == Utils.get_rpcsignature(params, "POST", secret)


def test_nonce_cache_rejects_reuse_and_forgets_after_15_minutes() -> None:
    now = [0.0]
    cache = NonceCache(clock=lambda: now[0])
    assert cache.use("a") and not cache.use("a")
    now[0] = 901.0
    assert cache.use("b") and cache.use("a")
