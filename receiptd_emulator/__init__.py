"""A strict, stateful local emulator of the Alibaba Cloud SMS provider APIs.

MNS queues (as aliyun-mns-sdk 1.3.0 speaks them), Dybaseapi QueryTokenForMnsQueue and Dysmsapi
SendSms / QuerySendDetails (as the alibabacloud 4.x SDKs send them) on one HTTP port, and
Alibaba's international site (Dysmsapi 2018-05-01, its Dybaseapi and MNS) on a second one, for
one or several customer accounts, so the real, unmodified SDKs run against it. See
docs/emulator.md.
"""

from receiptd_emulator.accounts import AccountInfo
from receiptd_emulator.calls import RecordedCall
from receiptd_emulator.clock import ManualClock
from receiptd_emulator.emulator import Emulator, EmulatorInfo
from receiptd_emulator.faults import FaultSpec
from receiptd_emulator.globe_provider import SeedGlobeSend
from receiptd_emulator.globe_records import GlobeRecord
from receiptd_emulator.profiles import AccountSpec, Failure, Profile
from receiptd_emulator.provider import SeedSend
from receiptd_emulator.router import Route
from receiptd_emulator.sms_records import SendRecord

__all__ = [
    "AccountInfo",
    "AccountSpec",
    "Emulator",
    "EmulatorInfo",
    "Failure",
    "FaultSpec",
    "GlobeRecord",
    "ManualClock",
    "Profile",
    "RecordedCall",
    "Route",
    "SeedGlobeSend",
    "SeedSend",
    "SendRecord",
]
