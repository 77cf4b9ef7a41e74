"""Provider adapters, one package per external provider, and the registry of status lookups.

A third provider implements ``ports.StatusLookup`` in its own package and is added to
:func:`build_lookups`; the compensator core does not change.
"""

from __future__ import annotations

from receiptd import config, ports


def build_lookups(settings: config.Settings) -> list[ports.StatusLookup]:
    """The status lookups of every configured provider.

    Raises config.ConfigError when a provider is configured but unusable (e.g. Huawei without
    the ``receiptd[huawei]`` extra): a daemon must not silently leave its sends unsettled.
    """
    lookups: list[ports.StatusLookup] = []
    if settings.aliyun_configured:
        from receiptd.providers.aliyun import dysms

        lookups.append(dysms.AliyunStatusLookup.from_settings(settings))
    if settings.huawei_configured:
        from receiptd.providers.huawei import koomessage

        lookups.append(koomessage.build_lookup(settings))
    return lookups
