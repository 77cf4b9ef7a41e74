"""Coverage-guided fuzzing of queue-body decoding (atheris).

Any input must either parse into a typed value or raise ``domain.BodyError``; any other
exception is a crash that atheris reports with the input that caused it.
Run: python tests/fuzz/fuzz_decode.py -runs=200000
"""

from __future__ import annotations

import base64
import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from receiptd import domain, receipt_shapes


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    as_base64 = fdp.ConsumeBool()
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())
    # Half the inputs are valid base64 so the JSON and field layers get exercised too.
    raw: bytes = base64.b64encode(payload) if as_base64 else payload
    for parse in (domain.parse_report, domain.parse_up, receipt_shapes.parse_receipt):
        with contextlib.suppress(domain.BodyError):
            parse(raw)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
