"""A grammar of receipt bodies with extreme values (hypothesis strategies), issue 21.

Random bytes almost never form well-formed JSON, so byte fuzzing (``fuzz_decode.py``) never
reached the body that crash-looped the daemon: a valid SmsReport object holding a
5,000-digit integer. These strategies write JSON *text* member by member, so every body is
well-formed unless an extreme makes it otherwise on purpose, and every field can hold:

* its valid values (any Unicode text up to the column's length, NUL and control characters
  included; both Alicom time formats over years 2-9998; numbers as text or as numbers);
* extremes: integers around and far past CPython's 4,300-digit limit, floats that overflow,
  underflow or carry thousands of digits, NaN/Infinity, nesting up to 100,000 deep, strings at
  and past each length limit, lone surrogates (as ``\\ud800`` escapes and as raw CESU-8
  bytes), raw control characters, out-of-range and impossible times, every wrong type;
* duplicate keys (an earlier copy is overridden: the body stays valid; a later one wins).

Shapes: the SmsReport and SmsUp queue bodies (base64 of UTF-8 JSON, as Alicom enqueues them),
the Alibaba HTTP push arrays of both, and the KooMessage AIM send-status callback envelope.
Each generated body says whether it was built from valid values only (then it must be
stored) and whether a stored text holds NUL (PostgreSQL refuses that: a dead letter there).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from hypothesis import strategies as st

Text = st.SearchStrategy[tuple[str, bool]]  # (JSON text, holds NUL)


@dataclass(frozen=True)
class Body:
    """One generated request or message body."""

    raw: bytes  # what the channel carries (queue bodies: the base64 text's bytes)
    valid: bool  # every part built from valid values: must be stored, never dead-lettered
    nul: bool = False  # a valid text holds NUL (PostgreSQL text cannot: dead-lettered there)
    elements: tuple[bool, ...] = field(default=())  # push: validity of each element

    @property
    def text(self) -> str:
        """A queue body as the consumer sees it (``QueueMessage.body``)."""
        return self.raw.decode("utf-8", "surrogatepass")

    def __repr__(self) -> str:
        # Hypothesis prints a failing example's repr: the whole body of a megabyte-deep nesting
        # made that repr itself fail ("overly large repr", an error under -W error) and hid
        # the finding. The head and the length say which body it was.
        head = self.raw[:120]
        more = f"… ({len(self.raw):,} bytes)" if len(self.raw) > len(head) else ""
        return f"Body(raw={head!r}{more}, valid={self.valid}, nul={self.nul})"


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


# --- extremes ----------------------------------------------------------------------------------

_digits = st.sampled_from([4299, 4300, 4301, 4302, 5000, 10_000, 50_000])
huge_integers = st.builds(
    lambda n, sign: sign + "1" + "0" * (n - 1), _digits, st.sampled_from(["", "-"])
)
huge_floats = st.sampled_from(
    [
        "1e999",
        "-1e999",
        "1e-999",
        "-0.0",
        "1.7976931348623157e308",
        "5e-324",
        "0." + "1" * 5000,
        "1" + "0" * 4400 + ".5",
        "NaN",
        "Infinity",
        "-Infinity",
        "13800000000.5",
    ]
)
_depth = st.sampled_from([2, 100, 900, 999, 1000, 1001, 3000, 100_000]) | st.integers(1, 1500)
deep_nesting = st.builds(lambda d: "[" * d + "]" * d, _depth) | st.builds(
    lambda d: '{"k":' * d + "null" + "}" * d, _depth
)
_lengths = st.sampled_from([0, 1, 32, 33, 64, 65, 128, 129, 512, 513, 4096, 4097, 65_536, 65_537])
long_strings = st.builds(
    lambda n, c: _json(c * n), _lengths, st.sampled_from(["x", "好", "😀", " "])
)
strange_strings = st.sampled_from(
    [
        '"\\ud800"',  # lone high surrogate, as an escape
        '"\\udfff"',
        '"a\\udc00b"',
        '"\\ud83d\\ude00"',  # a valid pair: 😀
        '"\ud800"',  # raw: encoded as CESU-8 bytes, not UTF-8
        '"\\u0000"',
        '"a\x01b"',  # a raw control character: not strict JSON
        '"\\u202e\\u200b\\ufeff"',
        '""',
        '"   "',
        '"\\n"',
    ]
)
times_out_of_range = st.sampled_from(
    [
        '"0001-01-01 00:00:00"',
        '"00010101000000"',
        '"0001-01-01 08:05:42"',
        '"9999-12-31 23:59:59"',
        '"99991231235959"',
        '"2026-02-30 10:00:00"',
        '"2026-13-01 00:00:00"',
        '"2026-11-25T10:00:00"',
        '"2026-11-25 10:00:00.5"',
        '"99999-01-01 00:00:00"',
        '"0000-00-00 00:00:00"',
        '"0001-01-01T00:00:00+14:00"',
        '"9999-12-31T23:59:59-12:00"',
        '"9999-12-31T23:59:59.999999-00:01"',
        '"20261125100000"',
        '"yesterday"',
    ]
)
wrong_types = st.sampled_from(
    ["[]", "{}", '[1,"a"]', '{"$gt":""}', "true", "false", "null", "0", "-1", "13800000000"]
)
extremes: st.SearchStrategy[str] = st.one_of(
    huge_integers,
    huge_floats,
    deep_nesting,
    long_strings,
    strange_strings,
    times_out_of_range,
    wrong_types,
    st.floats().map(_json),
    st.integers().map(str),
    st.text(max_size=20).map(json.dumps),
)


# --- valid values ------------------------------------------------------------------------------

_unicode = st.characters(exclude_categories=("Cs",))  # every code point but surrogates


def texts(limit: int, min_size: int = 1, alphabet: st.SearchStrategy[str] = _unicode) -> Text:
    """Valid text up to a column's length (NUL and control characters included), as JSON:
    mostly short, sometimes exactly ``limit`` characters (short draws keep the run fast)."""
    short = st.text(alphabet=alphabet, min_size=min_size, max_size=min(limit, 24))
    full = st.builds(lambda c, tail: (c * limit)[: limit - len(tail)] + tail, alphabet, short)
    # Raw UTF-8 here; \uXXXX escapes come from the extremes (fewer draws: a faster run).
    return (short | full).map(lambda s: (_json(s), "\x00" in s))


def _plain(strategy: st.SearchStrategy[str]) -> Text:
    return strategy.map(lambda text: (text, False))


# Naive on purpose: provider times carry no zone (the parser attaches it).
_datetimes = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31))  # noqa: DTZ001


def _alicom_time(d: datetime, compact: bool, pad: str) -> str:
    fmt = (
        "{:04d}{:02d}{:02d}{:02d}{:02d}{:02d}"
        if compact
        else "{:04d}-{:02d}-{:02d} {:02d}:{:02d}:{:02d}"
    )
    return _json(pad + fmt.format(d.year, d.month, d.day, d.hour, d.minute, d.second) + pad)


alicom_times = _plain(
    st.builds(_alicom_time, _datetimes, st.booleans(), st.sampled_from(["", "", " "]))
)


def _iso_time(d: datetime, zone: str) -> str:
    return _json(f"{d.year:04d}-{d.strftime('%m-%dT%H:%M:%S.%f')}{zone}")


iso_times = _plain(
    st.builds(_iso_time, _datetimes, st.sampled_from(["", "Z", "+08:00", "+00:00", "+05:30"]))
)
phones = _plain(
    st.sampled_from(["13800000000", "+8613800000000", "008613900000001", "8613700000002"]).map(
        _json
    )
    | st.integers(10_000_000_000, 19_999_999_999).map(str)
) | texts(32, min_size=0)
small_counts = _plain(
    st.integers(0, 999_999).map(str) | st.integers(0, 999_999).map(lambda n: _json(str(n)))
)
booleans = _plain(st.sampled_from(["true", "false"]))
ids = texts(64) | _plain(st.integers(0, 10**20).map(str))


# Text that is valid but for one lone surrogate (escaped: the JSON itself is fine).
_short = st.text(alphabet=_unicode, max_size=8)
surrogate_texts = st.builds(
    lambda a, lone, b: json.dumps(a + lone + b),
    _short,
    st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"]),
    _short,
)
_bad_texts = surrogate_texts | extremes
# Year 1 in a zone east of UTC, year 9999 west of it: no UTC time (OverflowError, once).
_year_edges = st.sampled_from(
    ['"0001-01-01 00:00:00"', '"00010101080542"', '"0001-01-01T00:00:00+14:00"']
)
_bad_times = _year_edges | times_out_of_range | extremes


@dataclass(frozen=True)
class Field:
    valid: Text
    required: bool = False
    extreme: st.SearchStrategy[str] = _bad_texts  # what an "extreme" choice draws


REPORT_FIELDS: Mapping[str, Field] = {
    "biz_id": Field(texts(64), required=True),
    "success": Field(booleans, required=True),
    "send_time": Field(alicom_times, required=True, extreme=_bad_times),
    "phone_number": Field(phones),
    "report_time": Field(alicom_times, extreme=_bad_times),
    "out_id": Field(texts(128)),
    "err_code": Field(texts(64)),
    "err_msg": Field(texts(512)),
    "sms_size": Field(small_counts),
    "message_id": Field(ids),
    "sign_name": Field(texts(64)),
    "template_code": Field(texts(64)),
}
UP_FIELDS: Mapping[str, Field] = {
    "content": Field(texts(600), required=True),
    "send_time": Field(alicom_times, required=True, extreme=_bad_times),
    "dest_code": Field(ids, required=True),
    "sequence_id": Field(ids, required=True),
    "phone_number": Field(phones),
    "sign_name": Field(texts(64)),
}
_STATUS_WORDS = ["Deliverd", "DELIVERED", "success", "fail", "Failed", "undeliverd", "sending"]
KOOMESSAGE_FIELDS: Mapping[str, Field] = {
    "send_status": Field(_plain(st.sampled_from(_STATUS_WORDS).map(_json)), required=True),
    "task_id": Field(texts(64), required=True),
    "cust_flag": Field(texts(32), required=True),
    "send_time": Field(iso_times, required=True, extreme=_bad_times),
    "receive_time": Field(iso_times, extreme=_bad_times),
    "send_status_desc": Field(texts(600)),
    "msg_id": Field(ids),
    "sms_sign": Field(texts(64)),
    "tpl_id": Field(texts(64)),
}


# --- bodies ------------------------------------------------------------------------------------

_RAW_BREAKERS = re.compile("[\x00-\x1f\ud800-\udfff]")
_CHOICE = st.sampled_from(["valid"] * 12 + ["absent", "extreme"])
_TENTH = st.integers(0, 9)
_SHUFFLE = st.randoms(use_true_random=True)  # 0: a whole body or element replaced by an extreme


def breaks_json(text: str) -> bool:
    """Whether a value's text may make the whole body unreadable wherever it stands (even
    under a key the parser never reads, or overridden by a later duplicate): more than 4,300
    digits, deep nesting, a raw control character or surrogate. Conservative."""
    digits = len(text) > 4300 and text.lstrip("-")[:1].isdigit()
    return digits or text.startswith(("[[", '{"k":{')) or bool(_RAW_BREAKERS.search(text))


@dataclass(frozen=True)
class Obj:
    text: str
    valid: bool
    nul: bool


def objects(fields: Mapping[str, Field]) -> st.SearchStrategy[Obj]:
    """One JSON object over ``fields``: each valid, absent or extreme; extra keys and a
    duplicate key (json.loads keeps the last copy)."""
    extra_keys = st.text(max_size=12).filter(lambda k: k not in fields)
    extras = st.lists(st.tuples(extra_keys, extremes), max_size=2)

    @st.composite
    def build(draw: st.DrawFn) -> Obj:
        members: list[tuple[str, str]] = []
        valid, nul = True, False
        for name, spec in fields.items():
            choice = draw(_CHOICE)
            if choice == "absent":
                valid = valid and not spec.required
                continue
            if choice == "valid":
                text, has_nul = draw(spec.valid)
                nul = nul or has_nul
            else:
                text, valid = draw(spec.extreme), False
            members.append((name, text))
        added = draw(extras)
        valid = valid and not any(breaks_json(text) for _, text in added)
        members += added
        draw(_SHUFFLE).shuffle(members)  # one draw, not one per member
        if members and draw(st.booleans()):
            i = draw(st.integers(0, len(members) - 1))
            later, copy = draw(st.booleans()), draw(extremes)
            members.insert(i + 1 if later else i, (members[i][0], copy))
            overrides = later and members[i][0] in fields
            valid = valid and not overrides and not breaks_json(copy)
        text = "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in members) + "}"
        return Obj(text, valid, nul)

    return build()


def _raw(text: str) -> bytes:
    """UTF-8, except that a raw lone surrogate becomes its CESU-8 bytes (not UTF-8)."""
    return text.encode("utf-8", "surrogatepass")


_extreme_objects = extremes.map(lambda text: Obj(text, False, False))
_HOW = st.sampled_from(["base64"] * 8 + ["plain", "truncated"])


def queue_bodies(fields: Mapping[str, Field]) -> st.SearchStrategy[Body]:
    """An MNS queue body: base64 of the UTF-8 JSON (sometimes not: raw JSON, or cut short)."""
    inner = objects(fields)

    @st.composite
    def build(draw: st.DrawFn) -> Body:
        obj = draw(_extreme_objects if draw(_TENTH) == 0 else inner)
        encoded = base64.b64encode(_raw(obj.text))
        how = draw(_HOW)
        if how == "plain":
            return Body(_raw(obj.text), valid=False)
        if how == "truncated":
            cut = draw(st.integers(0, max(0, len(encoded) - 1)))
            return Body(encoded[:cut] or b"=", valid=False)
        return Body(encoded, obj.valid, obj.nul)

    return build()


def push_arrays(fields: Mapping[str, Field]) -> st.SearchStrategy[Body]:
    """An Alibaba HTTP batch push body: a JSON array of elements (or one bare object)."""
    element = objects(fields)
    sizes = st.integers(0, 4)

    @st.composite
    def build(draw: st.DrawFn) -> Body:
        drawn = [
            draw(_extreme_objects if draw(_TENTH) == 0 else element) for _ in range(draw(sizes))
        ]
        if len(drawn) == 1 and draw(st.booleans()):
            only = drawn[0]
            return Body(_raw(only.text), only.valid, only.nul, (only.valid,))
        text = "[" + ",".join(e.text for e in drawn) + "]"
        valid = all(e.valid for e in drawn)
        return Body(_raw(text), valid, any(e.nul for e in drawn), tuple(e.valid for e in drawn))

    return build()


def koomessage_callbacks() -> st.SearchStrategy[Body]:
    """A KooMessage AIM send-status envelope: ``callback_type`` and ``body`` (the array as a
    JSON string, as documented, or the array itself, or an extreme)."""
    arrays = push_arrays(KOOMESSAGE_FIELDS)
    kinds = st.sampled_from(['"sms"'] * 6 + ['"shortchain"']) | extremes

    @st.composite
    def build(draw: st.DrawFn) -> Body:
        inner, kind = draw(arrays), draw(kinds)
        array = inner.raw.decode("utf-8", "surrogatepass")
        body = json.dumps(array) if draw(st.booleans()) else array
        replaced = draw(_TENTH) == 0
        if replaced:
            body = draw(extremes)
        valid = inner.valid and kind == '"sms"' and not replaced
        text = "{" + f'"callback_type":{kind},"body":{body}' + "}"
        return Body(_raw(text), valid, inner.nul, inner.elements)

    return build()


Shape = Callable[[], st.SearchStrategy[Body]]
SHAPES: Mapping[str, Shape] = {
    "SmsReport": lambda: queue_bodies(REPORT_FIELDS),
    "SmsUp": lambda: queue_bodies(UP_FIELDS),
    "push SmsReport": lambda: push_arrays(REPORT_FIELDS),
    "push SmsUp": lambda: push_arrays(UP_FIELDS),
    "KooMessage": koomessage_callbacks,
}
