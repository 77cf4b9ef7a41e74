"""MNS signatures and tokens (receiptd_emulator.signing): the verifier agrees with the SDK's own
signer, for any input (hypothesis)."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st
from mns.mns_client import MNSClient

from receiptd_emulator.credentials import Credential, CredentialStore, KeyKind
from receiptd_emulator.http_types import Request
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
