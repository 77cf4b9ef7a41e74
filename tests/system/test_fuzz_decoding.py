"""Malformed input: >100,000 fuzzed bodies only ever raise the typed BodyError."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiptd import domain, receipt_shapes

FUZZ = Path(__file__).parent.parent / "fuzz"
RUNS = 200_000

pytestmark = pytest.mark.system


def test_atheris_coverage_guided(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ / "corpus", corpus)  # atheris adds inputs to its corpus directory
    proc = subprocess.run(
        [sys.executable, str(FUZZ / "fuzz_decode.py"), f"-runs={RUNS}", str(corpus)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Done {RUNS} runs" in proc.stderr


FIELD_NAMES = [
    "phone_number",
    "success",
    "biz_id",
    "out_id",
    "send_time",
    "report_time",
    "err_code",
    "err_msg",
    "sms_size",
    "content",
    "dest_code",
    "sequence_id",
    # GlobeSmsReport and the international site's receipts (receiptd.receipt_shapes)
    *("to", "status", "message_id", "send_date", "receive_date", "error_code"),
    *("To", "Status", "MessageId", "TaskId", "SmsSize", "SendDate", "ReceiveDate", "ErrorCode"),
]
HOSTILE = ["'; DROP TABLE sms_send; --", "\x00", "\u202e", "𝄞" * 20, "2017-13-45 25:61:61"]
# ... and the values the international shapes' decoders branch on
SHAPED = [
    "9" * 30,
    "1",
    "2",
    "6",
    "Thu, 25 Nov 2021 10:27:00 +0800",
    "Fri, 31 Dec 9999 23:59:59 -1200",
]
hostile_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=80) | st.sampled_from(
    [*HOSTILE, *SHAPED]
)
values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | hostile_text
    | st.lists(st.integers(), max_size=2)
)


# 2,000 in `make test` (it took 20,000 and 4 of the suite's 11 minutes before the grammar
# fuzzer, tests/system/test_fuzz_grammar.py, took over extreme well-formed bodies); the long
# run sets RECEIPTD_FUZZ_EXAMPLES as the grammar fuzzer does.
FIELD_EXAMPLES = int(os.environ.get("RECEIPTD_FUZZ_EXAMPLES", "2000"))


@settings(max_examples=FIELD_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(FIELD_NAMES), values, max_size=12))
def test_hypothesis_field_level(fields: dict[str, Any]) -> None:
    import json

    try:
        raw = base64.b64encode(json.dumps(fields).encode())
    except ValueError:  # NaN etc. are not JSON; json.dumps allows them, keep going
        return
    for parse in (domain.parse_report, domain.parse_up, receipt_shapes.parse_receipt):
        with contextlib.suppress(domain.BodyError):
            parse(raw)
