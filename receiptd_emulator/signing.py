"""Signature verification shared pieces (`AuthError`, clock skew) and the MNS verifier
(HMAC-SHA1 over method, headers and the raw resource). POP verifiers: `pop_signing`.

A verifier returns the caller's `Credential` or raises `AuthError` with the provider's error
code, so a client with a wrong key, secret, clock or token fails here as it would for real.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import time
from collections.abc import Callable

from receiptd_emulator.credentials import Credential, CredentialStore, KeyKind
from receiptd_emulator.http_types import Request

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
    """The MNS string-to-sign (the MNS API's signature scheme), signed; the resource is the
    raw request target."""
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
