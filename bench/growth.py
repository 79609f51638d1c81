"""Costs as the ledger grows: the same operations on a small ledger (10,000 finished tasks),
after adding a large history of finished tasks (2 million by default), and with a backlog of
100,000 queued tasks spread over many accounts; the growth factor of each row (large / small).
Every figure is the best of several runs; the target is every growth factor within x1.5.

    make bench-growth           (or: python bench/growth.py --history 2000000)
    python bench/growth.py --history 20000000      the contract's 20 million (about an hour)

The history is finished tasks spread over the retention period (120 days) with ULID keys that
match their times, written with COPY; the backlog's tasks were reserved ten minutes ago, one per
account on accounts of their own. Redis is rebuilt from the ledger wherever the bench changes
tasks behind the services' back.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from _setup import clear_redis, django_for_bench, truncate

ACCOUNTS = 25_000
ORDERS = 1_000


def best(
    run: Callable[[], object], times: int = 5, setup: Callable[[], object] | None = None
) -> float:
    spent = []
    for _ in range(times):
        if setup:
            setup()
        t0 = time.perf_counter()
        run()
        spent.append(time.perf_counter() - t0)
    return min(spent)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--history", type=int, default=2_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument(
        "--busy",
        type=int,
        default=1_000_000,
        help="successes written today for the busy-farm row (0: no busy row)",
    )
    parser.add_argument("--explain", action="store_true", help="time housekeeping's statements")
    parser.add_argument(
        "--keep", action="store_true", help="leave the data in the bench database (to EXPLAIN)"
    )
    opts = parser.parse_args()
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = django_for_bench()

    import psycopg
    from django.contrib.auth.models import User
    from django.test import Client
    from django.utils import timezone

    from orders.models import Order
    from telegram_tasks import claims, services
    from telegram_tasks.admin.lists import ulid_floor
    from telegram_tasks.links import normalize_link
    from telegram_tasks.models import (
        CROCKFORD,
        Membership,
        TelegramAccount,
        TelegramTask,
        default_provider_id,
        new_ulid,
    )

    dsn = os.environ["DATABASE_URL"]
    rng = random.Random(7)
    tasks_table = TelegramTask._meta.db_table

    def vacuum() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for table in (tasks_table, "orders", "telegram_accounts", "telegram_memberships"):
                conn.execute(f"VACUUM ANALYZE {table}")

    truncate(TelegramTask, Membership, Order, TelegramAccount)
    clear_redis(prefix)
    claims.mark_state("growth")
    TelegramAccount.objects.bulk_create(
        TelegramAccount(provider_account_id=f"g_{i}", phone=f"+1{i:09d}") for i in range(ACCOUNTS)
    )
    account_rows = list(TelegramAccount.objects.values_list("id", "provider_account_id", "phone"))
    targets = [normalize_link(f"t.me/growth{i:05d}/1") for i in range(ORDERS)]
    Order.objects.bulk_create(
        Order(action="view", link=t.link, post_id=1, link_hash=t.link_hash, quantity=10**6,
              remains=10**6, status="in_progress", next_run_at=datetime(2100, 1, 1, tzinfo=UTC))
        for t in targets
    )  # fmt: skip
    order_rows = list(Order.objects.values_list("id", "link", "link_hash"))
    User.objects.filter(username="bench").delete()
    bench_user = User.objects.create_superuser("bench", "b@example.com", "bench")
    admin = Client(HTTP_HOST="localhost")
    admin.force_login(bench_user)  # (the login form's throttling wants a request: not needed)

    def copy_tasks(
        n: int, *, status: str, start: datetime, span: timedelta, accounts: list | None = None
    ) -> None:
        """n tasks (finished, or queued) at times spread over ``span`` from ``start``."""
        columns = (
            "id, order_id, action, link_hash, telegram_account_id, provider_account_id, status, "
            "per_call, available_at, reserved_until, attempt, payload, failure_reason, "
            "last_error, created_at, updated_at, finished_at, lease_id, result, provider_id"
        )
        provider = default_provider_id()
        step = span / max(n, 1)
        with psycopg.connect(dsn) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY {tasks_table} ({columns}) FROM STDIN") as copy:
                for i in range(n):
                    at = start + step * i
                    order_id, link, lh = order_rows[i % ORDERS]
                    if accounts:
                        account, pid, phone = accounts[i % len(accounts)]
                    else:
                        account, pid, phone = account_rows[(i * 7919) % ACCOUNTS]
                    suffix = "".join(rng.choice(CROCKFORD) for _ in range(16))
                    task_id = ulid_floor(at)[:10] + suffix
                    snapshot = {"id": account, "provider_account_id": pid, "phone": phone}
                    payload = json.dumps({"order_id": order_id, "action": "view", "link": link,
                                          "post_id": 1, "link_hash": lh, "per_call": 1,
                                          "account": snapshot})  # fmt: skip
                    if status == "queued":
                        copy.write_row((task_id, order_id, "view", lh, account, pid, "queued", 1,
                                        at, at + timedelta(hours=2), 0, payload, "", "", at, at,
                                        None, None, None, provider))  # fmt: skip
                    else:
                        failed = i % 20 == 0
                        copy.write_row((task_id, order_id, "view", lh, account, pid,
                                        "failed" if failed else "done", 1, at, at, 0, payload,
                                        "provider_failed" if failed else "", "", at, at, at,
                                        new_ulid(), '{"state": "done"}', provider))  # fmt: skip
            conn.commit()

    now = timezone.now()
    live_orders = Order.objects.order_by("id")[: ORDERS // 2]

    results: dict[str, dict[str, float]] = {"small": {}, "large": {}, "backlog": {}}
    # (The busy farm adds a row of its own: housekeeping against the quiet farm's.)

    def claims_from_ledger() -> None:
        """Redis as the ledger says, as it would be had the bench's SQL shortcuts gone through
        the services: the locks of the tasks it marked done dropped, every live task's lock
        held (the backlog's included), so generation picks only free accounts."""
        clear_redis(prefix)
        services.claims_rebuild(now=timezone.now())

    def measure(phase: str) -> None:
        r = results[phase]
        n = timezone.now()
        vacuum()

        # Pull 1,000 (and then report one, extend one) from 1,000 fresh queued tasks.
        # The bench's own work is dated outside housekeeping's windows (the sweep, the heal):
        # every phase then has the same recent activity, and only the history differs.
        def fresh_queue() -> None:
            # Only the bench's own tasks (the backlog stays queued behind them).
            TelegramTask.objects.filter(status__in=["leased", "queued"]).filter(
                created_at__gte=n - timedelta(minutes=30), created_at__lt=n - timedelta(minutes=15)
            ).update(status="done", finished_at=n - timedelta(days=1))
            claims_from_ledger()
            copy_tasks(1000, status="queued", start=timezone.now() - timedelta(minutes=20),
                       span=timedelta(seconds=1))  # fmt: skip

        leased: list[dict] = []

        def pull() -> None:
            leased[:] = services.tasks_pull(limit=1000, now=timezone.now()).tasks

        r["pull 1,000"] = best(pull, setup=fresh_queue)
        one = leased[0]["account"]["provider_account_id"] if leased else "none"
        r["pull, accounts filter"] = best(
            lambda: services.tasks_pull(limit=10, now=timezone.now(), accounts=[one, "g_none"]),
            setup=fresh_queue,
        )
        r["empty pull"] = best(
            lambda: services.tasks_pull(limit=10, now=timezone.now(), accounts=["g_none"])
        )

        def report_one() -> None:
            services.tasks_report(
                reports=[services.ReportIn(leased.pop()["task_id"], "done")], now=timezone.now()
            )

        pull()
        r["single report"] = best(report_one)
        r["extend"] = best(
            lambda: services.tasks_extend(
                leases=[services.LeaseRef(leased[0]["task_id"], leased[0]["lease_id"])],
                now=timezone.now(),
            )
        )
        fresh_queue()
        r["housekeeping pass"] = best(lambda: services.tasks_housekeep(now=timezone.now()), 3)

        def due_orders() -> None:
            Order.objects.filter(pk__in=[o.pk for o in live_orders]).update(next_run_at=None)
            TelegramTask.objects.filter(
                status="queued", order_id__in=[o.pk for o in live_orders]
            ).delete()
            claims_from_ledger()

        r["generation pass (500 orders)"] = best(
            lambda: services.tasks_generate(limit=1000, now=timezone.now()), 3, setup=due_orders
        )
        Order.objects.update(next_run_at=datetime(2100, 1, 1, tzinfo=UTC))
        tasks = "/admin/telegram_tasks/telegramtask/"
        pages = {
            "admin task list": tasks,
            "admin tasks, status filter": f"{tasks}?status__exact=failed",
            "admin tasks, queued": f"{tasks}?status__exact=queued",
            "admin tasks, reason filter": f"{tasks}?reason=provider_failed",
            "admin tasks, search (account)": f"{tasks}?q=g_probe",
            "admin tasks, drill-down (day)": f"{tasks}?created="
            + (n - timedelta(days=10)).strftime("%Y-%m-%d"),
            "admin order list": "/admin/orders/order/",
            "admin order page": f"/admin/orders/order/{live_orders[0].pk}/change/",
            "admin account list": "/admin/telegram_tasks/telegramaccount/",
            "admin dashboard": "/admin/dashboard/",
        }
        for label, url in pages.items():

            def get(url: str = url) -> None:
                response = admin.get(url)
                assert response.status_code == 200, (url, response.status_code)

            r[label] = best(get, 3)
        r["rebuild_claims"] = best(lambda: services.claims_rebuild(now=timezone.now()), 2)

    print(f"small: {opts.small} finished tasks", flush=True)
    # The account the admin search looks for: the same 50 tasks whatever the history.
    probe = TelegramAccount.objects.create(provider_account_id="g_probe", phone="+19999999999")
    copy_tasks(50, status="done", start=now - timedelta(days=30), span=timedelta(days=1),
               accounts=[(probe.pk, probe.provider_account_id, probe.phone)])  # fmt: skip
    copy_tasks(opts.small, status="done", start=now - timedelta(days=119), span=timedelta(days=118))
    measure("small")
    print(f"large: + {opts.history} finished tasks", flush=True)
    chunk = 1_000_000
    for start in range(0, opts.history, chunk):
        size = min(chunk, opts.history - start)
        copy_tasks(
            size,
            status="done",
            start=now - timedelta(days=119) + timedelta(days=118) * start / opts.history,
            span=timedelta(days=118) * size / opts.history,
        )
        print(f"  {start + size:,} written", flush=True)
    measure("large")
    if opts.busy:
        busy_farm(opts.busy, copy_tasks, services, timezone, results, opts.explain)
    print(f"backlog: + {opts.backlog} queued tasks", flush=True)
    # The backlog keeps the broker's rule of one live task per account and action: accounts of
    # its own, one queued task each (a farm whose every account has work waiting).
    TelegramAccount.objects.bulk_create(
        (
            TelegramAccount(provider_account_id=f"gb_{i}", phone=f"+2{i:09d}")
            for i in range(opts.backlog)
        ),
        batch_size=5000,
    )
    backlog_rows = list(
        TelegramAccount.objects.filter(provider_account_id__startswith="gb_").values_list(
            "id", "provider_account_id", "phone"
        )
    )
    copy_tasks(
        opts.backlog,
        status="queued",
        start=now - timedelta(minutes=10),
        span=timedelta(minutes=1),
        accounts=backlog_rows,
    )
    measure("backlog")
    if opts.explain:
        explain(lambda: services.tasks_housekeep(now=timezone.now()))

    width = max(len(k) for k in results["small"])
    print(f"\n{'operation':<{width}}  {'small':>9}  {'large':>9}  {'growth':>6}  "
          f"{'+backlog':>9}  {'growth':>6}")  # fmt: skip
    worst = 0.0
    for key, small in results["small"].items():
        large, backlog = results["large"][key], results["backlog"][key]
        g1, g2 = large / small, backlog / small
        worst = max(worst, g1, g2)
        print(f"{key:<{width}}  {small * 1000:7.1f}ms  {large * 1000:7.1f}ms  x{g1:5.2f}  "
              f"{backlog * 1000:7.1f}ms  x{g2:5.2f}")  # fmt: skip
    if "busy" in results:
        quiet = results["small"]["housekeeping pass"]
        for key, spent in results["busy"].items():
            print(f"busy farm: {key}: {spent * 1000:.1f} ms  x{spent / quiet:.2f} of the quiet "
                  f"farm's pass ({quiet * 1000:.1f} ms)  target <= x1.5")  # fmt: skip
    board = max(results[phase]["admin dashboard"] for phase in results if phase != "busy")
    print(f"\nadmin dashboard at most {board * 1000:.0f} ms  target < 300 ms")
    print(f"worst growth x{worst:.2f}  target <= x1.5 "
          f"(history {opts.history:,}, backlog {opts.backlog:,})")  # fmt: skip
    if not opts.keep:
        truncate(TelegramTask, Membership, Order, TelegramAccount)
        clear_redis(prefix)


def explain(run: Callable[[], object]) -> None:
    """Time each SQL statement of one run; print the slowest."""
    from django.db import connection as dbc

    timings: list[tuple[float, str]] = []

    def timed(execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timings.append((time.perf_counter() - t0, " ".join(sql.split())[:150]))

    t0 = time.perf_counter()
    with dbc.execute_wrapper(timed):
        run()
    print(f"  {(time.perf_counter() - t0) * 1000:8.1f} ms  in all, of which:")
    for seconds, text in sorted(timings, reverse=True)[:12]:
        print(f"  {seconds * 1000:8.1f} ms  {text}")


def busy_farm(successes: int, copy_tasks, services, timezone, results, show: bool) -> None:
    """A farm at work: ``successes`` done today (since midnight, up to five minutes ago) and
    60,000 in the last four minutes (about 250 a second), Redis intact (nothing lost). One
    housekeeping pass catches up (the rollup counts the day once, reported on its own), then
    the pass as every minute runs it: its cost must not follow the day's throughput."""
    now = timezone.now()
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    start = max(midnight, now - timedelta(hours=20))
    print(f"busy: + {successes:,} successes today, + 60,000 in the last 4 minutes", flush=True)
    chunk = 500_000
    for first in range(0, successes, chunk):
        size = min(chunk, successes - first)
        span = (now - timedelta(minutes=5) - start) * size / successes
        copy_tasks(size, status="done", start=start + (now - start) * first / successes,
                   span=span)  # fmt: skip
    copy_tasks(60_000, status="done", start=now - timedelta(minutes=4), span=timedelta(minutes=4))
    t0 = time.perf_counter()
    services.tasks_housekeep(now=timezone.now())
    results["busy"] = {"first pass (counts the day once)": time.perf_counter() - t0}
    results["busy"]["housekeeping pass"] = best(
        lambda: services.tasks_housekeep(now=timezone.now()), 3
    )
    if show:
        explain(lambda: services.tasks_housekeep(now=timezone.now()))


if __name__ == "__main__":
    main()
