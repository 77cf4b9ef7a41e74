"""A named account's keys (receiptd.config.account_keys): the flat settings' bounds, each
error naming ``accounts.<id>.<key>``."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiptd import config
from tests.unit.config.tables import aliyun_table, load

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.mark.parametrize(
    ("extra", "key", "reason"),
    [
        ('project_id = "p"\n', "project_id", "unknown setting"),  # a Huawei key
        ('queue_prefx = "Q"\n', "queue_prefx", "unknown setting"),
        ("request_timeout = 0\n", "request_timeout", "greater than 0"),
        ("request_timeout = 121\n", "request_timeout", "less than or equal to 120"),
        ("consumer_report_threads = 65\n", "consumer_report_threads", "less than or equal to 64"),
        ("consumer_up_threads = -1\n", "consumer_up_threads", "greater than or equal to 0"),
        ("compensator_rate_limit = 5001\n", "compensator_rate_limit", "less than or equal"),
        ("compensator_horizon = -1\n", "compensator_horizon", "greater than or equal to 0"),
        ("compensator_horizon = nan\n", "compensator_horizon", "finite number"),
        ('dysms_endpoint = "dysmsapi.aliyuncs.com"\n', "dysms_endpoint", "must start with http"),
        ('mns_endpoint = "ftp://mns"\n', "mns_endpoint", "must start with http"),
        ('push_token = "short"\n', "push_token", "at least 16 characters"),
        ('push_token = "has spaces in it but long"\n', "push_token", "at least 16 characters"),
    ],
)
def test_a_bad_key_names_accounts_id_key(extra: str, key: str, reason: str, tmp_path: Path) -> None:
    with pytest.raises(
        config.ConfigError, match=rf"^invalid setting accounts.brand_a.{key}: .*{reason}"
    ):
        load(tmp_path, aliyun_table("brand_a") + extra)
