"""The verifiers agree with the SDKs' own signers, for any input (hypothesis)."""

from __future__ import annotations

import time
from urllib.parse import urlencode

from alibabacloud_tea_openapi.utils import Utils
from darabonba.request import DaraRequest
from hypothesis import given
from hypothesis import strategies as st
from mns.mns_client import MNSClient

from receiptd_emulator.credentials import Credential, CredentialStore, KeyKind
from receiptd_emulator.http_types import Request
from receiptd_emulator.pop_signing import NonceCache, acs3_signature, rpc_signature
from receiptd_emulator.signing import AuthError, MnsVerifier, mns_signature

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)
names = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,10}", fullmatch=True)


class _Credential:
    def __init__(self, secret: str) -> None:
        self.secret = secret

    def get_access_key_id(self) -> str:
        return "AK"

    def get_access_key_secret(self) -> str:
        return self.secret


@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    resource=st.from_regex(
        r"/queues/[A-Za-z0-9-]{1,10}/messages(\?[A-Za-z0-9=&+/]{0,40})?", fullmatch=True
    ),
    extra=st.dictionaries(st.from_regex(r"x-mns-[a-z-]{1,8}", fullmatch=True), names, max_size=3),
    secret=names,
)
def test_mns_signature_matches_sdk(
    method: str, resource: str, extra: dict[str, str], secret: str
) -> None:
    headers = {
        "x-mns-version": "2015-06-06",
        "date": "Tue, 24 Nov 2026 00:52:19 GMT",
        "content-type": "text/xml;charset=UTF-8",
        "content-md5": "abc",
        **extra,
    }
    client = MNSClient.__new__(MNSClient)  # only the pure get_signature method is needed
    expected = client.get_signature(method, headers, resource, _Credential(secret))
    request = Request(method, resource, headers)
    assert f"MNS AK:{mns_signature(request, secret)}" == expected


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


def test_mns_verifier_token_checks() -> None:
    clock = [time.time()]
    store = CredentialStore(clock=lambda: clock[0])
    store.add(Credential("OWNER", "s", KeyKind.MNS_OWNER))
    sts = store.issue_sts("q", 10)
    verifier = MnsVerifier(store, clock=lambda: clock[0])
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(clock[0]))

    def signed(ak: str, secret: str, token: str = "") -> Request:
        headers = {"x-mns-version": "2015-06-06", "date": date, "security-token": token}
        unsigned = Request("GET", "/queues/q/messages", headers)
        headers["authorization"] = f"MNS {ak}:{mns_signature(unsigned, secret)}"
        return Request("GET", "/queues/q/messages", headers)

    assert verifier.verify(signed("OWNER", "s")).kind is KeyKind.MNS_OWNER
    ok = signed(sts.access_key_id, sts.access_key_secret, sts.security_token)
    assert verifier.verify(ok) == sts
    clock[0] += 11
    try:
        verifier.verify(ok)
    except AuthError as error:
        assert (error.status, error.code) == (403, "SecurityTokenExpired")
    else:
        raise AssertionError("expired token accepted")
