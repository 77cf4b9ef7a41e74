"""Signature verifiers: MNS (HMAC-SHA1 over headers + resource), Alibaba Cloud POP V3
(`ACS3-HMAC-SHA256`) and POP RPC V2 (`Signature=` HMAC-SHA1).

Each verifier returns the caller's `Credential` or raises `AuthError` with the provider's error
code, so a client with a wrong key, secret, clock or token fails here as it would for real.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from urllib.parse import quote

from receiptd.emulator.credentials import Credential, CredentialStore, KeyKind
from receiptd.emulator.http_types import Request, decode_form

#: Both MNS and POP reject requests whose clock is more than 15 minutes off.
MAX_CLOCK_SKEW = 15 * 60
MNS_VERSION = "2015-06-06"
_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method."
)


class AuthError(Exception):
    """Authentication failed: answer `status` with the provider's error `code`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status = status
        self.code = code
        self.message = message


# --------------------------------------------------------------------------------------- MNS


class MnsVerifier:
    def __init__(self, store: CredentialStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._date_cache: tuple[str, float] = ("", 0.0)

    def verify(self, request: Request) -> Credential:
        access_key_id, signature = _mns_authorization(request.header("authorization"))
        self._check_date(request.header("date"))
        _check_mns_version(request.header("x-mns-version"))
        credential = self._store.get(access_key_id)
        if credential is None or credential.kind is KeyKind.ACCOUNT:
            # The customer's own key does not exist in Alicom's MNS account.
            raise AuthError(
                403, "InvalidAccessKeyId", "The AccessKey Id you provided is not exist."
            )
        self._check_token(request, credential)
        expected = mns_signature(request, credential.access_key_secret)
        if not hmac.compare_digest(expected, signature):
            raise AuthError(403, "SignatureDoesNotMatch", _SIGNATURE_MISMATCH)
        _check_content_md5(request)
        return credential

    def _check_date(self, date: str) -> None:
        if not date:
            raise AuthError(400, "MissingDateHeader", "Date header is required.")
        cached_text, cached_value = self._date_cache
        if date == cached_text:
            sent = cached_value
        else:
            try:
                sent = email.utils.parsedate_to_datetime(date).timestamp()
            except (TypeError, ValueError, IndexError):
                raise AuthError(
                    400, "InvalidDateHeader", "The Date header format is invalid."
                ) from None
            self._date_cache = (date, sent)  # dates change once a second: parse each once
        if abs(self._clock() - sent) > MAX_CLOCK_SKEW:
            raise AuthError(408, "TimeExpired", "The http request you sent is expired.")

    def _check_token(self, request: Request, credential: Credential) -> None:
        if credential.kind is not KeyKind.STS:
            return
        token = request.header("security-token")
        if not hmac.compare_digest(token, credential.security_token):
            raise AuthError(
                403, "InvalidSecurityToken", "The security token you provided is invalid."
            )
        if self._store.is_expired(credential):
            raise AuthError(
                403, "SecurityTokenExpired", "The security token you provided has expired."
            )


def _mns_authorization(header: str) -> tuple[str, str]:
    if not header:
        raise AuthError(400, "MissingAuthorizationHeader", "Authorization header is required.")
    scheme, _, rest = header.partition(" ")
    access_key_id, sep, signature = rest.partition(":")
    if scheme != "MNS" or not sep or not access_key_id or not signature:
        raise AuthError(
            400, "InvalidAuthorizationHeader", "The Authorization header format is invalid."
        )
    return access_key_id, signature


def _check_mns_version(version: str) -> None:
    if not version:
        raise AuthError(400, "MissingVersionHeader", "x-mns-version header is required.")
    if version != MNS_VERSION:
        raise AuthError(400, "InvalidVersionHeader", "The x-mns-version header is invalid.")


def _check_content_md5(request: Request) -> None:
    sent = request.header("content-md5")
    if request.body and sent:
        # The SDK's quirk, and what MNS checks: base64 of the *hex* MD5 string.
        expected = base64.b64encode(hashlib.md5(request.body).hexdigest().encode()).decode()  # noqa: S324 - protocol-mandated MD5
        if sent != expected:
            raise AuthError(400, "InvalidDegist", "The Content-MD5 you specified is invalid.")


def mns_signature(request: Request, secret: str) -> str:
    """The MNS string-to-sign (mns.md §3), signed; the resource is the raw request target."""
    mns_headers = "".join(
        f"{name}:{request.headers[name]}\n"
        for name in sorted(request.headers)
        if name.startswith("x-mns-")
    )
    string_to_sign = (
        f"{request.method}\n{request.header('content-md5')}\n{request.header('content-type')}\n"
        f"{request.header('date')}\n{mns_headers}{request.target}"
    )
    digest = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# --------------------------------------------------------------------------------------- POP


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
        expected = acs3_signature(request, signed, payload_hash, credential.access_key_secret)
        if not hmac.compare_digest(expected, fields["Signature"]):
            raise AuthError(
                400, "SignatureDoesNotMatch", "Specified signature does not match our calculation."
            )
        return credential

    def _verify_rpc(self, request: Request, params: Mapping[str, str]) -> Credential:
        for name in ("AccessKeyId", "SignatureMethod", "SignatureNonce", "Timestamp"):
            if not params.get(name):
                raise AuthError(400, f"Missing{name}", f"{name} is mandatory for this action.")
        if params["SignatureMethod"] != "HMAC-SHA1" or params.get("SignatureVersion") != "1.0":
            raise AuthError(400, "IncompleteSignature", "Only HMAC-SHA1 / 1.0 is supported.")
        self._check_time_and_nonce(params["Timestamp"], params["SignatureNonce"])
        credential = self._credential(params["AccessKeyId"])
        expected = rpc_signature(request.method, params, credential.access_key_secret)
        if not hmac.compare_digest(expected, params["Signature"]):
            raise AuthError(
                400, "SignatureDoesNotMatch", "Specified signature does not match our calculation."
            )
        return credential


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
    string_to_sign = f"ACS3-HMAC-SHA256\n{hashed}"
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def rpc_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """Alibaba Cloud RPC V2 signature (HMAC-SHA1, key = secret + "&")."""
    canonical = "&".join(
        f"{_pop_quote(k)}={_pop_quote(params[k])}" for k in sorted(params) if k != "Signature"
    )
    string_to_sign = f"{method}&%2F&{_pop_quote(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _decoded_query(raw_query: str) -> list[tuple[str, str]]:
    return list(decode_form(raw_query).items())
