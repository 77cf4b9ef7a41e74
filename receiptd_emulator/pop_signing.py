"""Alibaba Cloud POP signature verifiers (Dysmsapi, Dybaseapi): V3 `ACS3-HMAC-SHA256` and
RPC V2 `Signature=` (HMAC-SHA1), each checked the way the gateway checks it, so a wrong key,
secret, clock or reused nonce fails here as it would for real.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from urllib.parse import quote

from receiptd_emulator.credentials import Credential, CredentialStore, KeyKind
from receiptd_emulator.http_types import Request, decode_form
from receiptd_emulator.signing import MAX_CLOCK_SKEW, AuthError


class NonceCache:
    """Signature nonces seen in the last 15 minutes (POP rejects a reused nonce)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, limit: int = 1_000_000) -> None:
        self._clock = clock
        self._limit = limit
        self._seen: set[str] = set()
        self._order: deque[tuple[float, str]] = deque()
        self._lock = threading.Lock()

    def use(self, nonce: str) -> bool:
        """Record `nonce`; False if it was already used."""
        now = self._clock()
        with self._lock:
            while self._order and (
                self._order[0][0] < now - MAX_CLOCK_SKEW or len(self._order) > self._limit
            ):
                self._seen.discard(self._order.popleft()[1])
            if nonce in self._seen:
                return False
            self._seen.add(nonce)
            self._order.append((now, nonce))
            return True


class PopVerifier:
    """Verifies Dysmsapi/Dybaseapi requests signed either way the SDKs sign them."""

    def __init__(
        self,
        store: CredentialStore,
        clock: Callable[[], float] = time.time,
        nonces: NonceCache | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._nonces = nonces or NonceCache()

    def verify(self, request: Request, params: Mapping[str, str]) -> Credential:
        """`params`: decoded query + form parameters."""
        authorization = request.header("authorization")
        if authorization.startswith("ACS3-"):
            return self._verify_v3(request, params, authorization)
        if "Signature" in params:
            return self._verify_rpc(request, params)
        raise AuthError(400, "IncompleteSignature", "The request signature is missing.")

    def _credential(self, access_key_id: str) -> Credential:
        credential = self._store.get(access_key_id)
        if credential is None or credential.kind is not KeyKind.ACCOUNT:
            raise AuthError(
                400, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
            )
        return credential

    def _check_time_and_nonce(self, timestamp: str, nonce: str) -> None:
        try:
            sent = dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            raise AuthError(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            ) from None
        if abs(self._clock() - sent.timestamp()) > MAX_CLOCK_SKEW:
            raise AuthError(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )
        if not self._nonces.use(nonce):
            raise AuthError(
                400, "SignatureNonceUsed", "Specified signature nonce was used already."
            )

    def _verify_v3(self, request: Request, params: Mapping[str, str], header: str) -> Credential:
        fields = _acs3_fields(header)
        signed = fields["SignedHeaders"].split(";")
        required = {"host", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"}
        unsigned = sorted(required - set(signed)) + [
            name for name in request.headers if name.startswith("x-acs-") and name not in signed
        ]
        if unsigned:
            raise AuthError(
                400, "IncompleteSignature", f"Headers must be signed: {', '.join(unsigned)}."
            )
        self._check_time_and_nonce(
            request.header("x-acs-date"), request.header("x-acs-signature-nonce")
        )
        credential = self._credential(fields["Credential"])
        payload_hash = hashlib.sha256(request.body).hexdigest()
        if request.header("x-acs-content-sha256") != payload_hash:
            raise AuthError(400, "SignatureDoesNotMatch", "x-acs-content-sha256 does not match.")
        string_to_sign = acs3_string_to_sign(request, signed, payload_hash)
        expected = _hmac_hex(credential.access_key_secret, string_to_sign)
        if not hmac.compare_digest(expected, fields["Signature"]):
            raise signature_mismatch(string_to_sign)
        return credential

    def _verify_rpc(self, request: Request, params: Mapping[str, str]) -> Credential:
        for name in ("AccessKeyId", "SignatureMethod", "SignatureNonce", "Timestamp"):
            if not params.get(name):
                raise AuthError(400, f"Missing{name}", f"{name} is mandatory for this action.")
        if params["SignatureMethod"] != "HMAC-SHA1" or params.get("SignatureVersion") != "1.0":
            raise AuthError(400, "IncompleteSignature", "Only HMAC-SHA1 / 1.0 is supported.")
        self._check_time_and_nonce(params["Timestamp"], params["SignatureNonce"])
        credential = self._credential(params["AccessKeyId"])
        string_to_sign = rpc_string_to_sign(request.method, params)
        expected = _hmac_sha1_b64(credential.access_key_secret, string_to_sign)
        if not hmac.compare_digest(expected, params["Signature"]):
            raise signature_mismatch(string_to_sign)
        return credential


def signature_mismatch(string_to_sign: str) -> AuthError:
    """The service's SignatureDoesNotMatch: its message ends with the string it signed.

    Error texts are part of the wire format: the legacy V1 SDK (``aliyunsdkcore``) splits this
    message at its colon and compares the part after it with its own string to sign (equal:
    the secret is wrong, reported as InvalidAccessKeySecret); without it that SDK fails with
    an IndexError instead of a clear error.
    """
    return AuthError(
        400,
        "SignatureDoesNotMatch",
        "Specified signature is not matched with our calculation. "
        f"server string to sign is:{string_to_sign}",
    )


def _acs3_fields(header: str) -> dict[str, str]:
    algorithm, _, rest = header.partition(" ")
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(","))
    if algorithm != "ACS3-HMAC-SHA256" or not all(
        fields.get(k) for k in ("Credential", "SignedHeaders", "Signature")
    ):
        raise AuthError(
            400,
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards.",
        )
    return fields


def _pop_quote(text: str) -> str:
    return quote(text, safe="~")


def acs3_signature(request: Request, signed: list[str], payload_hash: str, secret: str) -> str:
    """Alibaba Cloud V3 signature: HMAC-SHA256 over the hashed canonical request."""
    return _hmac_hex(secret, acs3_string_to_sign(request, signed, payload_hash))


def _hmac_hex(secret: str, string_to_sign: str) -> str:
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def acs3_string_to_sign(request: Request, signed: list[str], payload_hash: str) -> str:
    query = sorted(
        (key, value) for key, value in _decoded_query(request.raw_query) if key != "Signature"
    )
    canonical_query = "&".join(f"{_pop_quote(k)}={_pop_quote(v)}" for k, v in query)
    canonical_headers = "".join(f"{name}:{request.header(name).strip()}\n" for name in signed)
    canonical_request = "\n".join(
        (
            request.method,
            request.path or "/",
            canonical_query,
            canonical_headers,
            ";".join(signed),
            payload_hash,
        )
    )
    hashed = hashlib.sha256(canonical_request.encode()).hexdigest()
    return f"ACS3-HMAC-SHA256\n{hashed}"


def rpc_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """Alibaba Cloud RPC V2 signature (HMAC-SHA1, key = secret + "&")."""
    return _hmac_sha1_b64(secret, rpc_string_to_sign(method, params))


def rpc_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    canonical = "&".join(
        f"{_pop_quote(k)}={_pop_quote(params[k])}" for k in sorted(params) if k != "Signature"
    )
    return f"{method}&%2F&{_pop_quote(canonical)}"


def _hmac_sha1_b64(secret: str, string_to_sign: str) -> str:
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _decoded_query(raw_query: str) -> list[tuple[str, str]]:
    return list(decode_form(raw_query).items())
