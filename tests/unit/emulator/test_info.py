"""EmulatorInfo (receiptd_emulator.info): the CLI's JSON line and the default account's keys."""

from __future__ import annotations

import json

from receiptd_emulator import Emulator, Profile
from receiptd_emulator.accounts import derive_info
from receiptd_emulator.info import ACCESS_KEY_ID, MNS_ACCESS_KEY_ID


def test_the_json_line_lists_every_account_default_first() -> None:
    profile = Profile.from_mapping({"accounts": [{"name": "brand_b", "uid": "42"}]})
    with Emulator(profile=profile) as emu:
        info = emu.info
    line = json.loads(json.dumps(info.as_dict()))
    assert line == info.as_dict()  # plain JSON types: the control API's `info` compares equal
    default, brand_b = line["accounts"]
    assert (default["name"], default["access_key_id"]) == ("default", ACCESS_KEY_ID)
    assert default["mns_access_key_id"] == MNS_ACCESS_KEY_ID
    assert (default["report_queue"], default["uid"]) == (line["report_queue"], line["account_uid"])
    assert brand_b == derive_info("brand_b", "42", profile).as_dict()
    assert info.pop_endpoint == f"{info.host}:{info.port}"


def test_account_secrets_stay_out_of_repr() -> None:
    account = derive_info("brand_b", None, Profile())
    assert account.access_key_secret not in repr(account)
    assert account.huawei_auth_token not in repr(account)
    assert len(account.uid) == 16 and account.uid == derive_info("brand_b", None, Profile()).uid
