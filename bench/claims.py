"""Reserves per second through account selection, beside the bare reserve script.

10,000 active accounts, a realistic mix: 10 % hold a lock of another task, 10 % are in cooldown,
5 % reached today's cap, 2 % are under a flood-wait hold. Several batches of 1,000 demands (distinct
targets) go through ``select_accounts``; every RESERVE it sends is recorded with the size of its
pipeline. The baseline then sends the same number of EVALSHA calls of the reserve script, in
pipelines of the same sizes, over the same connection, with no selection logic around them.
ratio = baseline seconds / selection seconds (1.0 = selection costs nothing on top).

    make bench-claims        (or: python bench/claims.py --accounts 10000 --batch 1000 --batches 5)
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta

from _setup import baseline_reserves, clear_redis, django_for_bench, truncate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--batches", type=int, default=5)
    opts = parser.parse_args()
    prefix = django_for_bench()

    from telegram_tasks import claims
    from telegram_tasks.claims import Claim, Demand, Target, keys, selection
    from telegram_tasks.claims.scripts import connection
    from telegram_tasks.conf import app_settings
    from telegram_tasks.models import TelegramAccount, TelegramTask

    truncate(TelegramTask, TelegramAccount)
    TelegramAccount.objects.bulk_create(
        TelegramAccount(provider_account_id=f"bench_{i}", phone=f"+1{i:09d}")
        for i in range(opts.accounts)
    )
    ids = list(TelegramAccount.objects.order_by("id").values_list("id", flat=True))
    now = datetime.now(UTC).replace(microsecond=0)
    rng = random.Random(7)
    sample = rng.sample(ids, k=len(ids) * 27 // 100)
    locked, cooling = sample[: len(ids) // 10], sample[len(ids) // 10 : len(ids) // 5]
    capped, held = sample[len(ids) // 5 : len(ids) // 4], sample[len(ids) // 4 :]
    other = Target("f" * 64)
    claims.reserve_many([Claim(a, "view", other, f"x{a}") for a in locked], now=now,
                        until=now + timedelta(days=1))  # fmt: skip
    claims.commit_many([Claim(a, "view", Target("e" * 64, a), f"c{a}") for a in cooling], now=now)
    cap = app_settings.policy("view").daily_cap
    pipe = connection().pipeline(transaction=False)
    for a in capped:
        pipe.set(keys.cap(a, "view", claims.operations.local_day(now)), cap, ex=86400)
    pipe.execute()
    for a in held:
        claims.hold(a, now=now, seconds=3600)

    sizes: list[int] = []
    real_reserve_many = selection.reserve_many

    def recording(batch, **kwargs):
        sizes.append(len(batch))
        return real_reserve_many(batch, **kwargs)

    selection.reserve_many = recording
    reserved = 0
    elapsed = 0.0
    for b in range(opts.batches):
        demands = [Demand(Target(f"{b:032d}{i:032d}", 1), f"b{b}t{i}") for i in range(opts.batch)]
        t0 = time.perf_counter()
        results = claims.select_accounts(action="view", demands=demands, now=now)
        elapsed += time.perf_counter() - t0
        served = [(r.account.id, d) for r, d in zip(results, demands, strict=True) if r.account]
        reserved += len(served)
        claims.rollback_many([Claim(a, "view", d.target, d.token) for a, d in served])
    selection.reserve_many = real_reserve_many
    calls = sum(sizes)

    # Baseline: the reserve script alone, the same number of calls in pipelines of the same
    # sizes, on accounts that accept.
    baseline = baseline_reserves(sizes, calls, now, "base")
    clear_redis(prefix)

    print(f"accounts={opts.accounts} demands={opts.batch * opts.batches} reserved={reserved}")
    print(f"evalsha calls={calls} pipelines={len(sizes)} (mean size {calls / len(sizes):.0f})")
    print(f"selection: {elapsed:.3f} s, {reserved / elapsed:,.0f} reserves/s")
    print(f"baseline:  {baseline:.3f} s, {reserved / baseline:,.0f} reserves/s (same calls)")
    print(f"ratio (baseline s / selection s): {baseline / elapsed:.2f}  target >= 0.5")


if __name__ == "__main__":
    main()
