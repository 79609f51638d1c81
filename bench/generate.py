"""One generation pass over 1,000 due orders and 10,000 accounts, beside two baselines.

The pass (PostgreSQL page reads with FOR UPDATE SKIP LOCKED, selection, RESERVE pipelines,
bulk insert of the tasks, bulk update of the orders) is timed end to end. Beside it, in the
same run:

- the **floor**: the pass's irreducible work done the fastest plain way — as many RESERVE calls
  as the pass made tasks, in pipelines of the sizes it used, then in one transaction over plain
  psycopg a COPY of the same task rows and one UPDATE of the same orders. floor ratio = floor
  seconds / pass seconds (goal >= 0.7);
- the **reserve script alone** (kept for reference): the same RESERVE calls, nothing else.
  ratio = baseline seconds / pass seconds.

    make bench-generate      (or: python bench/generate.py --orders 1000 --accounts 10000)
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import time
from datetime import UTC, datetime

from _setup import baseline_reserves, clear_redis, django_for_bench, truncate


def generation_rounds(
    orders: int, accounts: int, rounds: int, profile: bool = False
) -> list[tuple[float, float, int]]:
    """(pass seconds, baseline seconds, tasks created) of each round; Django must be set up
    (``django_for_bench``)."""
    from django import db

    from orders.models import Order
    from telegram_tasks.claims import mark_state, selection
    from telegram_tasks.links import link_hash
    from telegram_tasks.models import TelegramAccount, TelegramTask
    from telegram_tasks.services import tasks_generate

    prefix = os.environ["TG_KEY_PREFIX"]
    truncate(TelegramTask, Order, TelegramAccount)
    TelegramAccount.objects.bulk_create(
        TelegramAccount(provider_account_id=f"bench_{i}", phone=f"+1{i:09d}")
        for i in range(accounts)
    )
    now = datetime.now(UTC).replace(microsecond=0)
    out = []
    for r in range(rounds):
        truncate(TelegramTask, Order)
        clear_redis(prefix)
        mark_state("bench")
        actions = ["view", "reaction", "subscribe"]
        params = [{}, {"reactions": ["👍", "🔥"]}, {}]  # a reaction takes a mix in turn
        Order.objects.bulk_create(
            Order(action=actions[i % 3], link=(link := f"https://t.me/bench{r}x{i:05d}"),
                  link_hash=link_hash(link), post_id=1 if i % 3 < 2 else None,
                  quantity=1, remains=1, params=params[i % 3])
            for i in range(orders)
        )  # fmt: skip
        sizes: list[int] = []
        real = selection.reserve_many

        def recording(batch, _real=real, _sizes=sizes, **kwargs):
            _sizes.append(len(batch))
            return _real(batch, **kwargs)

        selection.reserve_many = recording
        profiler = cProfile.Profile() if profile else None
        timings: list[tuple[float, str]] = []

        def timed(execute, sql, params, many, context, _t=timings):
            start = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                _t.append((time.perf_counter() - start, " ".join(sql.split())[:90]))

        if profiler:
            profiler.enable()
        t0 = time.perf_counter()
        with db.connection.execute_wrapper(timed):
            summary = tasks_generate(limit=orders, now=now)
        pass_s = time.perf_counter() - t0
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            for seconds, sql in timings:
                print(f"  sql {seconds * 1000:7.1f} ms  {sql}")
        selection.reserve_many = real
        # Baseline: as many reserve calls as tasks made, in pipelines of the pass's sizes.
        base_s = baseline_reserves(sizes, summary.created, now, f"base{r}.")
        floor_s = floor_seconds(sizes, summary.created, now, f"floor{r}.")
        out.append((pass_s, base_s, summary.created, floor_s))
    clear_redis(prefix)
    truncate(TelegramTask, Order, TelegramAccount)
    return out


def floor_seconds(sizes: list[int], created: int, now: datetime, tag: str) -> float:
    """The pass's irreducible work, the fastest plain way: the same number of RESERVE calls
    in the same pipelines, then one transaction over plain psycopg — a COPY of the same task
    rows (the pass's own, under new ids) and one UPDATE of the same orders to the values the
    pass gave them."""
    import psycopg

    from telegram_tasks.models import TelegramTask, new_ulid
    from telegram_tasks.services.sql import NEW_TASK_COLUMNS, order_table

    o = order_table()
    tasks_table = TelegramTask._meta.db_table
    columns = ", ".join(NEW_TASK_COLUMNS)
    dsn = os.environ["DATABASE_URL"]
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f"SELECT {columns.replace('payload', 'payload::text')} FROM {tasks_table}"  # noqa: S608
        ).fetchall()
        orders = conn.execute(
            f"SELECT {o.pk}, {o['next_run_at']}, {o['status']} FROM {o.table} "  # noqa: S608
            f"WHERE {o.pk} IN (SELECT order_id FROM {tasks_table})"
        ).fetchall()
        conn.commit()
        fresh = [(new_ulid(), *row[1:]) for row in rows]
        values = ", ".join(["(%s, %s::timestamptz, %s)"] * len(orders))
        update = (
            f"UPDATE {o.table} AS x SET {o['next_run_at']} = v.at, {o['status']} = v.s "  # noqa: S608
            f"FROM (VALUES {values}) AS v(id, at, s) WHERE x.{o.pk} = v.id"
        )
        flat = [value for order in orders for value in order]
        reserves = baseline_reserves(sizes, created, now, tag)
        t0 = time.perf_counter()
        with conn.cursor() as cursor:
            with cursor.copy(f"COPY {tasks_table} ({columns}) FROM STDIN") as copy:
                for row in fresh:
                    copy.write_row(row)
            if orders:
                cursor.execute(update, flat)
        conn.commit()
        return reserves + time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=1_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each pass")
    opts = parser.parse_args()
    django_for_bench()
    rounds = generation_rounds(opts.orders, opts.accounts, opts.rounds, opts.profile)
    ratios = [base / spent for spent, base, _, _ in rounds]
    floors = [floor / spent for spent, _, _, floor in rounds]
    best = max(rounds, key=lambda r: r[3] / r[0])
    print(f"orders={opts.orders} accounts={opts.accounts} rounds={opts.rounds} "
          f"created={[r[2] for r in rounds]}")  # fmt: skip
    print(f"pass:     {min(r[0] for r in rounds):.3f} s best, "
          f"{best[2] / best[0]:,.0f} tasks/s")  # fmt: skip
    print(f"floor:    {min(r[3] for r in rounds):.3f} s best (RESERVE + COPY + UPDATE, plain)")
    print(f"baseline: {min(r[1] for r in rounds):.3f} s best (the reserve script alone)")
    print(f"floor ratio (floor s / pass s): best {max(floors):.2f}, median "
          f"{statistics.median(floors):.2f}, spread {min(floors):.2f}-{max(floors):.2f}  "
          "target >= 0.7")  # fmt: skip
    print(f"ratio (baseline s / pass s): best {max(ratios):.2f}, median "
          f"{statistics.median(ratios):.2f}, spread {min(ratios):.2f}-{max(ratios):.2f}  "
          "(reference)")  # fmt: skip


if __name__ == "__main__":
    main()
