"""One generation pass over 1,000 due orders and 10,000 accounts, beside the bare reserve script.

The pass (PostgreSQL page reads with FOR UPDATE SKIP LOCKED, selection, RESERVE pipelines,
bulk insert of the tasks, bulk update of the orders) is timed end to end. The baseline, in the
same run, sends as many EVALSHA calls of the reserve script as the pass made tasks, in
pipelines of the sizes the pass used. ratio = baseline seconds / pass seconds.

    make bench-generate      (or: python bench/generate.py --orders 1000 --accounts 10000)
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from datetime import UTC, datetime

from _setup import baseline_reserves, clear_redis, django_for_bench, truncate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=1_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each pass")
    opts = parser.parse_args()
    prefix = django_for_bench()

    from django import db

    from orders.models import Order
    from telegram_tasks.claims import mark_state, selection
    from telegram_tasks.links import link_hash
    from telegram_tasks.models import TelegramAccount, TelegramTask
    from telegram_tasks.services import tasks_generate

    truncate(TelegramTask, Order, TelegramAccount)
    TelegramAccount.objects.bulk_create(
        TelegramAccount(provider_account_id=f"bench_{i}", phone=f"+1{i:09d}")
        for i in range(opts.accounts)
    )
    now = datetime.now(UTC).replace(microsecond=0)
    pass_seconds, base_seconds, created = [], [], []
    for r in range(opts.rounds):
        truncate(TelegramTask, Order)
        clear_redis(prefix)
        mark_state("bench")
        actions = ["view", "reaction", "subscribe"]
        Order.objects.bulk_create(
            Order(action=actions[i % 3], link=(link := f"https://t.me/bench{r}x{i:05d}"),
                  link_hash=link_hash(link), post_id=1 if i % 3 < 2 else None,
                  quantity=1, remains=1)
            for i in range(opts.orders)
        )  # fmt: skip
        sizes: list[int] = []
        real = selection.reserve_many

        def recording(batch, _real=real, _sizes=sizes, **kwargs):
            _sizes.append(len(batch))
            return _real(batch, **kwargs)

        selection.reserve_many = recording
        profiler = cProfile.Profile() if opts.profile else None
        t0 = time.perf_counter()
        timings: list[tuple[float, str]] = []

        def timed(execute, sql, params, many, context, _t=timings):
            start = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                _t.append((time.perf_counter() - start, " ".join(sql.split())[:90]))

        if profiler:
            profiler.enable()
        with db.connection.execute_wrapper(timed):
            summary = tasks_generate(limit=opts.orders, now=now)
        pass_seconds.append(time.perf_counter() - t0)
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
            for seconds, sql in timings:
                print(f"  sql {seconds * 1000:7.1f} ms  {sql}")
        selection.reserve_many = real
        created.append(summary.created)

        # Baseline: as many reserve calls as tasks made, in pipelines of the pass's sizes.
        base_seconds.append(baseline_reserves(sizes, summary.created, now, f"base{r}."))
    clear_redis(prefix)

    best_pass, best_base = min(pass_seconds), min(base_seconds)
    tasks = created[pass_seconds.index(best_pass)]
    print(f"orders={opts.orders} accounts={opts.accounts} rounds={opts.rounds} created={created}")
    print(f"pass:     {best_pass:.3f} s, {tasks / best_pass:,.0f} tasks/s (best of {opts.rounds})")
    print(
        f"baseline: {best_base:.3f} s, {tasks / best_base:,.0f} reserves/s (best of {opts.rounds})"
    )
    print(f"ratio (baseline s / pass s): {best_base / best_pass:.2f}  target >= 0.33")


if __name__ == "__main__":
    main()
