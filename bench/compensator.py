"""Compensator benchmark: QuerySendDetails calls per settled send, and time to settle at a rate.

    .venv/bin/python bench/compensator.py                     # defaults below, SQLite
    .venv/bin/python bench/compensator.py --sends 100000 --rate 2000 --sdk-sends 20000

1. *mix*: a realistic mix of pending sends (singles, order notifications grouped by phone with
   unique OutIds, groups without OutIds, multi-recipient batches) through the real Dysmsapi SDK
   against the emulator: calls per settled send (target <= 1.0).
1b. *mixed sites*: the same with international sends (issue 24), in the same table: one
   China-site account (70 % of the sends: SendSms sends of the mix's shapes, keyed by BizId;
   20 %: SendMessageToGlobe sends, keyed by MessageId) and one international-site account
   (10 %: SendMessageToGlobe, a few SendMessageWithTemplate to mainland numbers), receipts lost
   at the demo's rate (receiptd/demo.py DEMO_PROFILE). As in *mix*, every send is registered
   (no consumer runs: none has its receipt stored). Each account's lookup is the production
   one, ``wiring.providers.account_lookup`` (KeyedLookup: QuerySendDetails and QueryMessage
   through the real SDKs, QueryMessage at the account's ``query_message_rate_limit``); the
   compensator runs until every send is settled: calls of both APIs per settled send
   (target <= 1.0).
2. *throughput*: N pending single sends (one call each, the worst case) settled at a configured
   rate by the in-memory lookup: wall time versus the ideal N / rate (target <= 1.05x). This
   measures the compensator's own overhead (claims, settles, planning) against the limiter.
3. *sdk throughput* (optional, --sdk-sends): the same through the real SDK and the emulator.
4. *never settles*: sends the provider reports "waiting for receipt" forever, cycles every
   600 s on a controlled clock for ``--never-days`` (31) days with the production backoff (600 s
   doubling, 6 h cap): QuerySendDetails calls per send without a status horizon (before) and
   with the 72-hour horizon (after), side by side (target <= 10).

The compensator's info logs (two lines a cycle) are kept out of the tables (bench/harness.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import harness  # bench/harness.py

from receiptd import config, domain, ports
from receiptd.compensation import horizon
from receiptd.compensation.cycle import AccountLookup, Compensator
from receiptd.compensation.ratelimit import TokenBucket, default_burst
from receiptd.db import migrate
from receiptd.db.engine import create_db_engine
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.demo import DEMO_PROFILE
from receiptd.providers.aliyun.credentials import OpenApiAccess
from receiptd.providers.aliyun.dysms import AliyunStatusLookup, make_client
from receiptd.testing import emulated
from receiptd.testing.lookups import CountingLimiter, FakeLookup, Truth
from receiptd.wiring import providers
from receiptd_emulator import Emulator, Profile, SeedGlobeSend, SeedSend

NOW = datetime.now(UTC)


def fresh_store(url: str | None, tmp: Path, name: str) -> SendStore:
    engine = create_db_engine(url or f"sqlite:///{tmp / name}")
    migrate.upgrade(engine)
    return SendStore(SqlStore(engine))


def compensator(store: SendStore, lookup: object, rate: float, batch: int) -> Compensator:
    return Compensator(
        store,
        [lookup],  # type: ignore[list-item]
        TokenBucket(rate, default_burst(rate)),
        grace=timedelta(0),
        batch_size=batch,
        base_backoff=600.0,
        max_backoff=3600.0,
        replica="bench",
        horizons={domain.Provider.ALIYUN: horizon.DEFAULT_HORIZON},
    )


def mix_seeds(n: int, emu: Emulator, rng: random.Random) -> list[SeedSend]:
    """~50 % singles, ~30 % grouped by phone with unique OutIds, ~10 % grouped without OutIds,
    ~10 % recipients of 5-number batch sends."""
    info, phone = emu.info, 13000000000
    seeds: list[SeedSend] = []
    sent = NOW - timedelta(hours=2)

    def one(out_id: str = "", biz_id: str | None = None) -> SeedSend:
        outcome = "delivered" if rng.random() < 0.9 else "failed"
        return SeedSend(
            str(phone), info.sign_name, info.template_code, out_id, sent, outcome, biz_id=biz_id
        )

    while len(seeds) < n:
        phone += 1
        kind = rng.random()
        if kind < 0.5:
            seeds.append(one(f"o{len(seeds)}"))
        elif kind < 0.8:
            seeds.extend(one(f"o{len(seeds)}-{k}") for k in range(rng.randint(2, 4)))
        elif kind < 0.9:
            seeds.extend(one() for _ in range(rng.randint(2, 3)))
        else:
            biz = f"{phone}^batch"
            for _ in range(5):
                seeds.append(one("campaign-7", biz))
                phone += 1
    return seeds[:n]


def register_seeded(store: SendStore, seeds: list[SeedSend], biz_ids: list[str]) -> None:
    sends = [
        ports.NewSend(domain.Provider.ALIYUN, b, s.phone, s.send_time or NOW, s.out_id or None)
        for s, b in zip(seeds, biz_ids, strict=True)
    ]
    for i in range(0, len(sends), 10_000):
        store.register(sends[i : i + 10_000], NOW)


def sdk_lookup(emu: Emulator, concurrency: int) -> AliyunStatusLookup:
    info = emu.info
    access = OpenApiAccess(info.dysms_endpoint, info.access_key_id, info.access_key_secret)
    return AliyunStatusLookup(make_client(access), concurrency=concurrency)


def bench_mix(n: int, url: str | None, tmp: Path, concurrency: int) -> dict[str, float]:
    rng = random.Random(42)
    with Emulator(profile=Profile.load("lossy").with_overrides(seed=1)) as emu:
        seeds = mix_seeds(n, emu, rng)
        store = fresh_store(url, tmp, "mix.db")
        register_seeded(store, seeds, emu.seed_sends(seeds))
        summary = compensator(store, sdk_lookup(emu, concurrency), 5000, 5000).run_once()
        calls = len(emu.calls("QuerySendDetails"))
    settled = sum(summary.settled.values())
    return {"sends": n, "calls": calls, "settled": settled, "per_send": calls / settled}


# International numbers of the SendMessageToGlobe sends: (country code, digits after it).
GLOBE_COUNTRIES = (("852", 8), ("65", 8), ("44", 10), ("1", 10), ("81", 10), ("60", 9))
INTL = "intl"


def globe_seeds(
    n: int, rng: random.Random, start: int, template_share: float = 0.0
) -> list[SeedGlobeSend]:
    """SendMessageToGlobe sends to international numbers, outcomes and receipt fates drawn
    from the demo's profile (``template_share``: SendMessageWithTemplate to mainland numbers)."""
    sent = NOW - timedelta(hours=2)
    seeds: list[SeedGlobeSend] = []
    for i in range(start, start + n):
        outcome = DEMO_PROFILE.pick_outcome(rng)
        if outcome == "failed" and rng.random() < DEMO_PROFILE.expired_share:
            outcome = "expired"
        fate = DEMO_PROFILE.pick_fate(rng)
        if rng.random() < template_share:
            to, template = f"86139{i:08d}", "SMS_154950909"
        else:
            code, digits = rng.choice(GLOBE_COUNTRIES)
            to, template = f"+{code} {i % 10**digits:0{digits}d}", ""
        seeds.append(
            SeedGlobeSend(to, send_time=sent, outcome=outcome, receipt=fate, template_code=template)
        )
    return seeds


def register_globe(
    store: SendStore, seeds: list[SeedGlobeSend], message_ids: list[str], account: str
) -> None:
    sends = [
        ports.NewSend(
            domain.Provider.ALIYUN,
            m,
            domain.normalize_globe_phone(s.to),
            s.send_time or NOW,
            template_code=s.template_code or None,
            account=account,
            matched_by=domain.SendKey.MESSAGE_ID,
        )
        for s, m in zip(seeds, message_ids, strict=True)
    ]
    for i in range(0, len(sends), 10_000):
        store.register(sends[i : i + 10_000], NOW)


def bench_mixed(n: int, url: str | None, tmp: Path) -> dict[str, Any]:
    """70 % mainland BizId sends + 20 % China-site MessageId sends (account ``default``),
    10 % international-site MessageId sends (account ``intl``), settled to the last."""
    rng = random.Random(43)
    n_globe, n_intl = round(n * 0.2), round(n * 0.1)
    n_main = n - n_globe - n_intl
    profile = DEMO_PROFILE.with_overrides(seed=3)
    with Emulator(profile=profile) as emu:
        emu.add_account(INTL, site="intl")
        mainland = [
            dataclasses.replace(s, receipt=DEMO_PROFILE.pick_fate(rng))
            for s in mix_seeds(n_main, emu, rng)
        ]
        china_globe = globe_seeds(n_globe, rng, 0)
        intl_globe = globe_seeds(n_intl, rng, n_globe, template_share=0.2)
        store = fresh_store(url, tmp, "mixed.db")
        register_seeded(store, mainland, emu.seed_sends(mainland))
        register_globe(
            store, china_globe, emu.seed_globe_sends(china_globe), domain.DEFAULT_ACCOUNT
        )
        register_globe(store, intl_globe, emu.seed_globe_sends(intl_globe, account=INTL), INTL)
        settings = emulated.emulator_settings(
            emu.info, accounts={INTL: emulated.account_keys(emu.info, emu.account(INTL))}
        )
        served = []
        for name in (domain.DEFAULT_ACCOUNT, INTL):
            account = settings.parts.account(name, "aliyun")
            assert isinstance(account, config.AliyunAccount)
            limiter = TokenBucket(5000, default_burst(5000))  # QuerySendDetails, as in *mix*
            served.append(AccountLookup(providers.account_lookup(account), name, limiter))
        clock = [datetime.now(UTC)]
        comp = Compensator(
            store,
            served,
            TokenBucket(5000, default_burst(5000)),
            grace=timedelta(0),
            batch_size=5000,
            base_backoff=600.0,
            max_backoff=3600.0,
            replica="bench",
            clock=lambda: clock[0],
            horizons={domain.Provider.ALIYUN: horizon.DEFAULT_HORIZON},
        )
        settled: dict[str, int] = {}
        started, cycles = time.perf_counter(), 0
        while pending(store) and cycles < 20:
            summary = comp.run_once()
            for path, k in summary.settled.items():
                settled[path] = settled.get(path, 0) + k
            cycles += 1
            clock[0] += timedelta(seconds=3601)  # past the longest backoff: all due again
        elapsed = time.perf_counter() - started
        qsd, qm = len(emu.calls("QuerySendDetails")), len(emu.calls("QueryMessage"))
        per_account = {
            name: (
                len(emu.calls("QuerySendDetails", account=name)),
                len(emu.calls("QueryMessage", account=name)),
            )
            for name in (domain.DEFAULT_ACCOUNT, INTL)
        }
        fates = [s.receipt for s in mainland] + [s.receipt for s in china_globe + intl_globe]
        lost = fates.count("lost")
        left = pending(store)
    total = sum(settled.values())
    return {
        "sends": n,
        "shares": (n_main, n_globe, n_intl),
        "settled": total,
        "by_path": settled,
        "qsd": qsd,
        "qm": qm,
        "per_send": (qsd + qm) / max(total, 1),
        "per_account": per_account,
        "lost": lost,
        "pending": left,
        "cycles": cycles,
        "seconds": elapsed,
        "qm_rate": settings.parts.aliyun.query_message_rate,
    }


def mixed_note(r: dict[str, Any]) -> str:
    """The mixed-sites row's make-up, per account, and how it settled."""
    main, globe, intl = r["shares"]
    (cn_qsd, cn_qm), (intl_qsd, intl_qm) = r["per_account"].values()
    paths = ", ".join(f"{k} {v}" for k, v in sorted(r["by_path"].items()))
    return (
        f"mixed sites: default (China site) {main} SendSms + {globe} SendMessageToGlobe sends, "
        f"{cn_qsd} QuerySendDetails + {cn_qm} QueryMessage; intl {intl} sends, "
        f"{intl_qsd} QuerySendDetails + {intl_qm} QueryMessage; receipts lost (demo rate "
        f"{DEMO_PROFILE.lost:.0%}) {r['lost']}, all registered; settled by {paths} in "
        f"{r['cycles']} cycle(s), {r['pending']} left pending; QueryMessage at "
        f"{r['qm_rate']:g}/s per account"
    )


def pending(store: SendStore) -> int:
    counts = store.summary().counts
    return sum(k for (_p, _a, status), k in counts.items() if status == "pending")


def bench_fake(n: int, rate: float, url: str | None, tmp: Path, batch: int) -> dict[str, float]:
    store = fresh_store(url, tmp, "fake.db")
    sends = [
        ports.NewSend(domain.Provider.ALIYUN, f"{i}^0", f"138{i:08d}", NOW - timedelta(hours=1))
        for i in range(n)
    ]
    for i in range(0, n, 10_000):
        store.register(sends[i : i + 10_000], NOW)
    truths = {(s.biz_id, s.phone_number): Truth(3, "DELIVERED") for s in sends}
    return timed(compensator(store, FakeLookup(truths), rate, batch), n, rate)


def bench_sdk(
    n: int, rate: float, url: str | None, tmp: Path, concurrency: int
) -> dict[str, float]:
    with Emulator(profile=Profile.load("default").with_overrides(seed=2)) as emu:
        info = emu.info
        sent = NOW - timedelta(hours=1)
        seeds = [
            SeedSend(f"13{i:09d}", info.sign_name, info.template_code, send_time=sent)
            for i in range(n)
        ]
        store = fresh_store(url, tmp, "sdk.db")
        register_seeded(store, seeds, emu.seed_sends(seeds))
        return timed(compensator(store, sdk_lookup(emu, concurrency), rate, 5000), n, rate)


def bench_never(
    n: int, limit: timedelta | None, url: str | None, tmp: Path, days: int
) -> dict[str, Any]:
    """Calls per send over the whole life of sends that never settle (controlled clock)."""
    store = fresh_store(url, tmp, f"never-{limit}.db")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    sends = [
        ports.NewSend(domain.Provider.ALIYUN, f"n{i}^0", f"137{i:08d}", start) for i in range(n)
    ]
    store.register(sends, start)
    lookup = FakeLookup({(s.biz_id, s.phone_number): Truth(1) for s in sends})
    clock = [start]
    comp = Compensator(
        store,
        [lookup],
        CountingLimiter(),
        grace=timedelta(seconds=300),  # the production defaults
        batch_size=5000,
        base_backoff=600.0,
        max_backoff=6 * 3600.0,
        replica="bench",
        clock=lambda: clock[0],
        horizons={domain.Provider.ALIYUN: limit} if limit else {},
    )
    while clock[0] < start + timedelta(days=days):
        comp.run_once()
        clock[0] += timedelta(seconds=600)
    (row,) = store.by_biz_id("n0^0")
    settled = row["settled_at"]
    return {
        "sends": n,
        "calls": len(lookup.calls),
        "per_send": len(lookup.calls) / n,
        "verdict": f"{row['status']}/{row['settled_by'] or '-'}",
        "after": "-" if settled is None else f"{(settled - start).total_seconds() / 3600:.1f} h",
    }


def timed(comp: Compensator, n: int, rate: float) -> dict[str, float]:
    start = time.perf_counter()
    summary = comp.run_once()
    elapsed = time.perf_counter() - start
    settled = sum(summary.settled.values())
    calls = sum(summary.calls.values())
    ideal = calls / rate
    return {"sends": n, "settled": settled, "calls": calls, "seconds": elapsed, "ideal": ideal}


def main() -> None:
    load = harness.start()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix-sends", type=int, default=5000)
    parser.add_argument(
        "--mixed-sends", type=int, default=5000, help="sends of the mixed-sites row (70/20/10)"
    )
    parser.add_argument("--sends", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--sdk-sends", type=int, default=0)
    parser.add_argument("--sdk-rate", type=float, default=500.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--never-sends", type=int, default=20)
    parser.add_argument("--never-days", type=int, default=31, help="simulated days")
    parser.add_argument("--database-url", default=None, help="default: a scratch SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        mix = bench_mix(args.mix_sends, args.database_url, tmp, args.concurrency)
        mixed = bench_mixed(args.mixed_sends, args.database_url, tmp)
        print(
            "| benchmark | sends | settled | QuerySendDetails | QueryMessage | calls/settled "
            "| seconds | ideal | ratio |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(
            f"| mix (SDK + emulator) | {mix['sends']} | {mix['settled']} | {mix['calls']} | 0 "
            f"| {mix['per_send']:.3f} | | | |"
        )
        print(
            f"| mixed sites (SDK + emulator) | {mixed['sends']} | {mixed['settled']} "
            f"| {mixed['qsd']} | {mixed['qm']} | {mixed['per_send']:.3f} "
            f"| {mixed['seconds']:.1f} | | |"
        )
        rows = [
            (
                "in-memory lookup",
                bench_fake(args.sends, args.rate, args.database_url, tmp, args.batch),
                args.rate,
            )
        ]
        if args.sdk_sends:
            sdk = bench_sdk(args.sdk_sends, args.sdk_rate, args.database_url, tmp, args.concurrency)
            rows.append(("SDK + emulator", sdk, args.sdk_rate))
        for name, r, rate in rows:
            print(
                f"| {name} @ {rate:g}/s | {r['sends']} | {r['settled']} | {r['calls']} | 0 "
                f"| {r['calls'] / max(r['settled'], 1):.3f} | {r['seconds']:.1f} "
                f"| {r['ideal']:.1f} | {r['seconds'] / r['ideal']:.3f}x |"
            )
        print(f"\n{mixed_note(mixed)}; {load.line()}")
        print()
        print("| never-settling sends | sends | calls | calls/send | verdict | after |")
        print("|---|---:|---:|---:|---|---:|")
        for name, limit in (("before: no horizon", None), ("after: 72 h", horizon.DEFAULT_HORIZON)):
            r = bench_never(args.never_sends, limit, args.database_url, tmp, args.never_days)
            print(
                f"| {name} | {r['sends']} | {r['calls']} | **{r['per_send']:.1f}** "
                f"| {r['verdict']} | {r['after']} |"
            )
        print(f"\nnever-settling: 600 s cycles for {args.never_days} days; {load.line()}")


if __name__ == "__main__":
    main()
