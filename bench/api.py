"""The hot paths, each beside its baseline in the same run, through the real server (gunicorn with
config/gunicorn.conf.py: the serving model of production), several rounds, best / median /
spread of each ratio:

single report  reports/s, one task per request (the seed's shape), 8 and 64 keep-alive clients;
               then the latency (p50, p99) of one client, one report at a time
               baseline: a no-op Django JSON POST view on the same server, same clients
               (/bench/noop, served with BENCH_ENDPOINTS=1)     goal >= 0.5 (64), >= 0.35 (8)
pull 1,000     tasks/s, one client pulling limit=1000 until the queue is empty
               baseline: the same lease statement alone over psycopg, returning the plain
               columns (no JSON, no Redis, no Django, no HTTP)                     goal >= 0.8
generation     tasks/s of one pass over 1,000 orders x 10,000 accounts (bench/generate.py)
               baseline: its floor (the same RESERVEs, a COPY of the same task rows and one
               UPDATE of the same orders, plain psycopg); the reserve script alone for
               reference                                                           goal >= 0.7
long-poll      W pulls waiting (wait_seconds=20) on an empty queue: the server's CPU while they
               wait, the database connections open, a no-op request's latency beside them (and
               without them); then tasks made available one at a time: the time from the
               commit that announces each to the answer of the pull that gets it (wake-up).

    make bench-api     (or: python bench/api.py --rounds 5 --clients 8 --waiters 500)
    python bench/api.py --worker-class gthread --threads 4    (compare serving models)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import secrets
import socket
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from _http import (
    NOOP,
    PULL,
    REPORT,
    Client,
    StdlibClient,
    cpu_by_program,
    cpu_spent,
    in_threads,
    server_cpu_seconds,
    serving,
    split,
)
from _setup import clear_redis, django_for_bench, truncate

PULL_LIMIT = 1000
NO_TASK = "0" * 26  # a ULID no task has: warms the report path, writes nothing


def summary(ratios: Sequence[float]) -> str:
    return (
        f"best {max(ratios):.2f}, median {statistics.median(ratios):.2f}, "
        f"spread {min(ratios):.2f}-{max(ratios):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--clients", default="8,64", help="concurrent report clients (comma-separated: each)"
    )
    parser.add_argument(
        "--latency", type=int, default=500, help="single reports sent one at a time (p50/p99)"
    )
    parser.add_argument("--single", type=int, default=2000, help="single reports per round")
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks pulled per round")
    parser.add_argument("--waiters", type=int, default=500, help="long-polls waiting at once")
    parser.add_argument("--wakes", type=int, default=20, help="wake-ups measured")
    parser.add_argument("--orders", type=int, default=1000, help="generation: orders")
    parser.add_argument("--accounts", type=int, default=10_000, help="generation: accounts")
    parser.add_argument("--workers", default=os.environ.get("WEB_WORKERS", "2"))
    parser.add_argument("--worker-class", default=os.environ.get("WEB_WORKER_CLASS", ""))
    parser.add_argument("--threads", default=os.environ.get("WEB_THREADS", "4"))
    parser.add_argument(
        "--only", default="report,pull,generation,longpoll", help="comma-separated sections"
    )
    opts = parser.parse_args()
    only = set(opts.only.split(","))
    concurrencies = [int(c) for c in str(opts.clients).split(",") if c.strip()]

    token = secrets.token_urlsafe(24)
    os.environ["PROVIDER_TOKEN"] = token
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = django_for_bench()

    import psycopg
    from django import db
    from django.utils import timezone

    from orders.models import Order
    from telegram_tasks import claims, services
    from telegram_tasks.api import waiting
    from telegram_tasks.claims import Claim, Target
    from telegram_tasks.links import link_hash
    from telegram_tasks.models import TelegramAccount, TelegramTask, default_provider_id, new_ulid
    from telegram_tasks.services import settle

    dsn = os.environ["DATABASE_URL"]
    tasks_table = TelegramTask._meta.db_table
    n_accounts = max(opts.single, opts.tasks, opts.wakes + 1)
    results: dict[str, Any] = {}

    def world() -> list[tuple[int, str, str]]:
        truncate(TelegramTask, Order, TelegramAccount)
        clear_redis(prefix)
        claims.mark_state(f"bench-{prefix}")
        TelegramAccount.objects.bulk_create(
            TelegramAccount(provider_account_id=f"bench_{i}", phone=f"+1{i:09d}")
            for i in range(n_accounts)
        )
        return list(
            TelegramAccount.objects.order_by("id").values_list("id", "provider_account_id", "phone")
        )

    def vacuum() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"VACUUM ANALYZE {tasks_table}")
            conn.execute(f"VACUUM ANALYZE {Order._meta.db_table}")

    def make_tasks(n: int, accounts: list[tuple[int, str, str]], orders: int = 80) -> list[str]:
        """n queued pull tasks, due now, one account each, their locks held as generation
        holds them (see settle.queued_lock_until)."""
        truncate(TelegramTask, Order)
        clear_redis(prefix)
        claims.mark_state(f"bench-{prefix}")
        n_orders = min(orders, n)
        Order.objects.bulk_create(
            Order(action="view", link=(link := f"https://t.me/benchapi{o:05d}"),
                  link_hash=link_hash(link), post_id=1, quantity=10_000_000,
                  remains=10_000_000)
            for o in range(n_orders)
        )  # fmt: skip
        orders_ = list(Order.objects.order_by("id").values_list("id", "link", "link_hash"))
        now = timezone.now()
        reserved = now + timedelta(minutes=30)
        provider = default_provider_id()  # PROVIDER_TOKEN's: the one the clients pull as
        rows, locks = [], []
        for i in range(n):
            order_id, link, lh = orders_[i * n_orders // n]
            account_id, pid, phone = accounts[i]
            task_id = new_ulid()
            payload = {
                "order_id": order_id, "action": "view", "link": link, "post_id": 1,
                "link_hash": lh, "per_call": 1,
                "account": {"id": account_id, "provider_account_id": pid, "phone": phone},
            }  # fmt: skip
            rows.append(
                (task_id, order_id, "view", lh, account_id, pid, "queued", 1,
                 now - timedelta(seconds=1), reserved, 0, json.dumps(payload), "", "", now, now,
                 provider)
            )  # fmt: skip
            locks.append(Claim(account_id, "view", Target(lh, 1), task_id))
        with db.connection.cursor() as cursor:
            columns = (
                "id, order_id, action, link_hash, telegram_account_id, provider_account_id, "
                "status, per_call, available_at, reserved_until, attempt, payload, "
                "failure_reason, last_error, created_at, updated_at, provider_id"
            )
            with cursor.cursor.copy(f"COPY {tasks_table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        until = settle.queued_lock_until(reserved)
        for start in range(0, n, 1000):
            refused = claims.reserve_many(locks[start : start + 1000], now=now, until=until)
            assert not any(refused), "locks refused"
        return [r[0] for r in rows]

    def lease_all(n: int) -> None:
        got = 0
        while got < n:
            leased = services.tasks_pull(limit=PULL_LIMIT, now=timezone.now()).tasks_json
            if not leased:
                break
            got += len(leased)
        assert got == n, f"leased {got} of {n}"

    def restore() -> None:
        with db.connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {tasks_table} SET status = 'queued', lease_id = NULL, "  # noqa: S608
                "leased_at = NULL, leased_until = NULL, attempt = 0"
            )

    def count(status: str) -> int:
        return TelegramTask.objects.filter(status=status).count()

    # --- generation (in this process, before the server starts) ------------------------------
    if "generation" in only:
        import generate

        rounds = generate.generation_rounds(opts.orders, opts.accounts, opts.rounds)
        results["generation"] = rounds

    accounts = world()
    # The server as in production: DEBUG off (no query log), a secret of its own; the long-poll
    # caps above the waiters measured (one token holds them all).
    most = str(max(opts.waiters, 500))
    env = dict(
        os.environ, PROVIDER_TOKEN=token, TG_KEY_PREFIX=prefix, BENCH_ENDPOINTS="1", DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(40), MAX_WAITING_PULLS=most,
        MAX_WAITING_PULLS_PER_PROVIDER=most,
    )  # fmt: skip
    overrides = {"WEB_WORKERS": str(opts.workers), "WEB_THREADS": str(opts.threads)}
    if opts.worker_class:
        overrides["WEB_WORKER_CLASS"] = opts.worker_class
    try:
        with serving(env, **overrides) as (port, proc):
            clients = [Client(port, token) for _ in range(max(concurrencies))]

            def warm(chunk: Sequence[Client]) -> None:
                for client in chunk:
                    for _ in range(20):
                        assert client.post(NOOP, {"task_id": NO_TASK})[0] == 200
                        assert client.post(REPORT, {"task_id": NO_TASK, "state": "done"})[0] == 404
                        assert client.post(PULL, {"limit": 1, "accounts": []})[0] == 200

            in_threads([[c] for c in clients], warm)

            # --- single report vs the no-op view --------------------------------------------
            # Both client kinds, round after round: the standard library's http.client (what
            # a provider's client costs, as the issue's own measurement had it), and lean raw
            # sockets (the server's capacity alone).
            if "report" in only:
                for n_clients in concurrencies:
                    kinds = {
                        "http.client": [StdlibClient(port, token) for _ in range(n_clients)],
                        "raw sockets": clients[:n_clients],
                    }
                    for kind, pool in kinds.items():
                        report_rounds = []
                        for _ in range(opts.rounds):
                            ids = make_tasks(opts.single, accounts)
                            lease_all(opts.single)
                            vacuum()
                            bodies = [
                                json.dumps({"task_id": t, "state": "done"}).encode() for t in ids
                            ]

                            def send_all(
                                path: str, pool: list = pool, bodies: list = bodies
                            ) -> float:
                                jobs = list(zip(pool, split(bodies, len(pool)), strict=False))

                                def work(job: tuple[Any, Sequence[bytes]]) -> None:
                                    client, datas = job
                                    for data in datas:
                                        status, body = client.call(path, data)
                                        assert status == 200, (path, status, body[:200])

                                return in_threads(jobs, work)

                            cpu0 = cpu_by_program()
                            noop_s = send_all(NOOP)
                            cpu1 = cpu_by_program()
                            report_s = send_all(REPORT)
                            cpu2 = cpu_by_program()
                            assert count("done") == opts.single
                            report_rounds.append((opts.single / report_s, opts.single / noop_s))
                        key = f"{kind}, {n_clients} clients"
                        results.setdefault("report", {})[key] = report_rounds
                        results.setdefault("report_cpu", {})[key] = (
                            cpu_spent(cpu0, cpu1),
                            cpu_spent(cpu1, cpu2),
                        )

                # One client, one report at a time: the latency a lone report sees (beside a
                # no-op request's), p50 and p99.
                ids = make_tasks(opts.latency, accounts)
                lease_all(opts.latency)
                vacuum()
                client = clients[0]
                lone: dict[str, list[float]] = {"no-op": [], "report": []}
                for task_id in ids:
                    data = json.dumps({"task_id": task_id, "state": "done"}).encode()
                    for name, path in (("no-op", NOOP), ("report", REPORT)):
                        t0 = time.perf_counter()
                        status, body = client.call(path, data)
                        lone[name].append((time.perf_counter() - t0) * 1000)
                        assert status == 200, (path, status, body[:200])
                results["latency"] = {
                    name: (statistics.median(ms), statistics.quantiles(ms, n=100)[98])
                    for name, ms in lone.items()
                }

            # --- pull 1,000 vs the bare lease statement -------------------------------------
            if "pull" in only:
                make_tasks(opts.tasks, accounts)
                bare = services.lease_sql(bare=True)
                pull_rounds = []
                client = clients[0]
                for _ in range(opts.rounds):
                    restore()
                    vacuum()
                    got = 0
                    t0 = time.perf_counter()
                    while got < opts.tasks:
                        status, body = client.post(PULL, {"limit": PULL_LIMIT})
                        assert status == 200, (status, body)
                        if not body["count"]:
                            break
                        got += body["count"]
                    api_s = time.perf_counter() - t0
                    assert got == opts.tasks == count("leased"), f"API leased {got}"
                    restore()
                    vacuum()
                    with psycopg.connect(dsn) as conn:
                        conn.execute("SELECT 1")
                        conn.commit()
                        got = 0
                        t0 = time.perf_counter()
                        while got < opts.tasks:
                            params = services.lease_params(
                                limit=PULL_LIMIT, now=datetime.now(UTC), accounts=None,
                                lease_id=new_ulid(), provider_id=default_provider_id(),
                            )  # fmt: skip
                            rows = conn.execute(bare, params).fetchall()
                            conn.commit()
                            if not rows:
                                break
                            got += len(rows)
                        base_s = time.perf_counter() - t0
                    assert got == opts.tasks, f"SQL leased {got}"
                    pull_rounds.append((opts.tasks / api_s, opts.tasks / base_s))
                results["pull"] = pull_rounds

            # --- long-poll ------------------------------------------------------------------
            if "longpoll" in only:
                results["longpoll"] = long_poll(
                    port, proc, token, opts, dsn, accounts, waiting, db, timezone
                )
    finally:
        truncate(TelegramTask, Order, TelegramAccount)
        clear_redis(prefix)

    print_table(results, opts)


def latencies(send: Callable[[], None], n: int) -> tuple[float, float]:
    """p50 and p99 of ``n`` sequential requests, in ms."""
    seen = []
    for _ in range(n):
        t0 = time.perf_counter()
        send()
        seen.append((time.perf_counter() - t0) * 1000)
    seen.sort()
    return seen[len(seen) // 2], seen[min(len(seen) - 1, int(len(seen) * 0.99))]


def long_poll(port, proc, token, opts, dsn, accounts, waiting, db, timezone) -> dict[str, Any]:
    """W pulls waiting on an empty queue: CPU, connections, others' latency; then wake-ups."""
    import psycopg

    from telegram_tasks.models import TelegramTask

    TelegramTask.objects.all().delete()
    probe = Client(port, token)
    noop = probe.request(NOOP, {"task_id": NO_TASK})
    empty_pull = probe.request(PULL, {"limit": 1, "accounts": []})
    idle = latencies(lambda: probe.send(noop), 300)
    idle_pull = latencies(lambda: probe.send(empty_pull), 300)

    answers: queue.Queue[tuple[float, bytes]] = queue.Queue()
    request = Client(port, token).request(PULL, {"limit": 1, "wait_seconds": 20})
    sockets = []

    def wait_one() -> None:
        sock = socket.create_connection(("127.0.0.1", port), 60)
        sockets.append(sock)
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                return
            data += chunk
        answers.put((time.perf_counter(), data))

    waiters = [threading.Thread(target=wait_one, daemon=True) for _ in range(opts.waiters)]
    for t in waiters:
        t.start()
    time.sleep(3)  # all asleep in the server by now
    with psycopg.connect(dsn, autocommit=True) as conn:
        [(backends,)] = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    cpu0, t0 = server_cpu_seconds(proc), time.perf_counter()
    time.sleep(5)
    cpu = (server_cpu_seconds(proc) - cpu0) / (time.perf_counter() - t0)
    busy = latencies(lambda: probe.send(noop), 300)
    busy_pull = latencies(lambda: probe.send(empty_pull), 300)

    # Wake-ups: one task at a time, announced in its transaction; commit to answer.
    from django.db import transaction

    from orders.models import Order
    from telegram_tasks import claims
    from telegram_tasks.claims import Claim, Target
    from telegram_tasks.links import link_hash
    from telegram_tasks.models import new_ulid
    from telegram_tasks.services import settle

    order = Order.objects.create(
        action="view", link="https://t.me/benchwake", link_hash=link_hash("https://t.me/benchwake"),
        post_id=1, quantity=10**6, remains=10**6,
    )  # fmt: skip
    wakes = []
    for i in range(opts.wakes):
        account_id, pid, _ = accounts[i]
        now = timezone.now()
        task = TelegramTask(
            id=new_ulid(), order=order, action="view", link_hash=order.link_hash,
            telegram_account_id=account_id, provider_account_id=pid, status="queued",
            per_call=1, available_at=now - timedelta(seconds=1),
            reserved_until=now + timedelta(minutes=5),
            payload={"order_id": order.pk, "action": "view", "link": order.link, "post_id": 1,
                     "link_hash": order.link_hash, "per_call": 1,
                     "account": {"id": account_id, "provider_account_id": pid, "phone": ""}},
        )  # fmt: skip
        claims.reserve_many(
            [Claim(account_id, "view", Target(order.link_hash, 1), task.id)],
            now=now,
            until=settle.queued_lock_until(task.reserved_until),
        )
        with transaction.atomic():
            task.save(force_insert=True)
            waiting.announce([(task.available_at, task.provider_id, pid, "pull")])
        committed = time.perf_counter()
        at, data = answers.get(timeout=30)
        assert task.id.encode() in data, data[-300:]
        wakes.append((at - committed) * 1000)
        time.sleep(0.2)
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()
    db.connection.close()
    wakes.sort()
    return {
        "waiters": opts.waiters,
        "cpu": cpu,
        "backends": backends,
        "idle": idle,
        "busy": busy,
        "idle_pull": idle_pull,
        "busy_pull": busy_pull,
        "wake_p50": wakes[len(wakes) // 2],
        "wake_max": wakes[-1],
    }


def print_table(results: dict[str, Any], opts: argparse.Namespace) -> None:
    worker = opts.worker_class or os.environ.get("WEB_WORKER_CLASS") or "config default"
    print(
        f"\nserver: gunicorn -c config/gunicorn.conf.py, {opts.workers} workers, class "
        f"{worker} (threads {opts.threads} if gthread); report clients {opts.clients}; "
        f"{opts.rounds} rounds"
    )
    print(f"{'path':<16} {'this project (best)':>22} {'baseline (best)':>24}  ratio")
    for kind, rounds in results.get("report", {}).items():
        ratios = [r / b for r, b in rounds]
        print(
            f"{'single report':<16} {max(r for r, _ in rounds):>14,.0f} reports/s "
            f"{max(b for _, b in rounds):>13,.0f} req/s no-op  {summary(ratios)}  goal >= 0.5"
            f"  [{kind}]"
        )
        noop_cpu, report_cpu = results["report_cpu"][kind]
        n = opts.single
        print(
            "  CPU per request, ms (no-op | report): "
            + ", ".join(
                f"{name} {noop_cpu.get(name, 0) * 1000 / n:.2f} | "
                f"{report_cpu.get(name, 0) * 1000 / n:.2f}"
                for name in ("gunicorn", "postgres", "redis-server", "python")
            )
            + " (python: the clients)"
        )
    if "latency" in results:
        noop, report = results["latency"]["no-op"], results["latency"]["report"]
        print(
            f"single report, one client, one at a time: p50 {report[0]:.2f} ms, p99 "
            f"{report[1]:.2f} ms (no-op: p50 {noop[0]:.2f} ms, p99 {noop[1]:.2f} ms)"
        )
    if "pull" in results:
        rounds = results["pull"]
        ratios = [a / b for a, b in rounds]
        print(
            f"{'pull 1,000':<16} {max(a for a, _ in rounds):>16,.0f} tasks/s "
            f"{max(b for _, b in rounds):>11,.0f} rows/s lease SQL  {summary(ratios)}  goal >= 0.8"
        )
    if "generation" in results:
        rounds = results["generation"]
        floors = [floor / spent for spent, _, _, floor in rounds]
        ratios = [base / spent for spent, base, _, _ in rounds]
        best = max(rounds, key=lambda r: r[2] / r[0])
        print(
            f"{'generation':<16} {best[2] / best[0]:>16,.0f} tasks/s "
            f"{max(c / f for _, _, c, f in rounds):>8,.0f} tasks/s floor  floor ratio "
            f"{summary(floors)}  goal >= 0.7"
        )
        print(
            f"{'':<16} {'':>24} {max(c / b for _, b, c, _ in rounds):>8,.0f} reserves/s "
            f"alone  {summary(ratios)}  (reference)"
        )
    if "longpoll" in results:
        lp = results["longpoll"]
        print(
            f"long-poll: {lp['waiters']} pulls waiting cost {lp['cpu'] * 100:.1f}% of a core, "
            f"{lp['backends']} database connections open (listeners and pools, none per pull); "
            f"wake-up {lp['wake_p50']:.1f} ms p50, {lp['wake_max']:.1f} ms max (commit to answer)"
        )
        print(
            f"           no-op request p50/p99 {lp['idle'][0]:.2f}/{lp['idle'][1]:.2f} ms alone, "
            f"{lp['busy'][0]:.2f}/{lp['busy'][1]:.2f} ms beside them; empty pull "
            f"{lp['idle_pull'][0]:.2f}/{lp['idle_pull'][1]:.2f} -> "
            f"{lp['busy_pull'][0]:.2f}/{lp['busy_pull'][1]:.2f} ms"
        )


if __name__ == "__main__":
    main()
