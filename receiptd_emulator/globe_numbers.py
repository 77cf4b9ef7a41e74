"""Numbers and texts of international sends: what `To` may be, where a number is, how many
parts a text is billed as.

`To` is country code + number without `+` (Alibaba's SendMessageToGlobe page:
https://www.alibabacloud.com/help/en/sms/api-sendmessagetoglobe). SendMessageToGlobe does not
send to the Chinese mainland; SendMessageWithTemplate sends only there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_INTERNATIONAL = re.compile(r"[1-9]\d{6,14}")  # E.164: at most 15 digits, no leading 0
#: A mainland mobile number: 86 + 1[3-9]xxxxxxxxx, or the bare 11 digits (which a NANP
#: number with an area code 3xx..9xx also looks like: the emulator reads it as mainland).
_MAINLAND = re.compile(r"(?:86)?(1[3-9]\d{9})")
_MAINLAND_86 = re.compile(r"86(1[3-9]\d{9})")
# GSM 03.38 basic characters (the default alphabet): texts only of these are 7-bit.
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


@dataclass(frozen=True, slots=True)
class NumberDetail:
    """`NumberDetail` of the answers: country, region and carrier (illustrative names)."""

    country: str
    region: str
    carrier: str

    def as_fields(self) -> dict[str, str]:
        return {"Country": self.country, "Region": self.region, "Carrier": self.carrier}


#: Country code -> detail; longest code first when looked up. Carriers are illustrative.
_COUNTRIES: dict[str, NumberDetail] = {
    "852": NumberDetail("China", "HongKong", "CMI"),
    "853": NumberDetail("China", "Macao", "CTM"),
    "886": NumberDetail("China", "Taiwan", "Chunghwa Telecom"),
    "86": NumberDetail("China", "", "China Mobile"),
    "1": NumberDetail("United States", "", "Verizon Wireless"),
    "7": NumberDetail("Russia", "", "MTS"),
    "44": NumberDetail("United Kingdom", "", "Vodafone"),
    "49": NumberDetail("Germany", "", "Telekom"),
    "60": NumberDetail("Malaysia", "", "Maxis"),
    "62": NumberDetail("Indonesia", "", "Telkomsel"),
    "63": NumberDetail("Philippines", "", "Globe Telecom"),
    "65": NumberDetail("Singapore", "", "Singtel"),
    "66": NumberDetail("Thailand", "", "AIS"),
    "81": NumberDetail("Japan", "", "NTT Docomo"),
    "82": NumberDetail("South Korea", "", "SK Telecom"),
    "84": NumberDetail("Vietnam", "", "Viettel"),
    "91": NumberDetail("India", "", "Airtel"),
}
UNKNOWN = NumberDetail("Unknown", "", "Unknown")


def is_international(to: str) -> bool:
    """Digits only, country code first, 7..15 digits (no `+`, no leading 0)."""
    return _INTERNATIONAL.fullmatch(to) is not None


def is_mainland(to: str) -> bool:
    """`86` + a mainland mobile number, or its bare 11 digits."""
    return _MAINLAND.fullmatch(to) is not None


def mainland_86(to: str) -> bool:
    """The only form SendMessageWithTemplate takes: `86` + a mainland mobile number."""
    return _MAINLAND_86.fullmatch(to) is not None


def number_detail(to: str) -> NumberDetail:
    if is_mainland(to):
        return _COUNTRIES["86"]
    for length in (3, 2, 1):
        detail = _COUNTRIES.get(to[:length])
        if detail is not None:
            return detail
    return UNKNOWN


def segments(text: str) -> int:
    """Billed parts: 160 characters (GSM 7-bit) or 70 (UCS-2) in one SMS; longer texts go in
    parts of 153 or 67."""
    single, part = (160, 153) if set(text) <= _GSM7 else (70, 67)
    if len(text) <= single:
        return 1
    return -(-len(text) // part)
