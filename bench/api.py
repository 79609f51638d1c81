"""The provider API through a real HTTP server (gunicorn, 4 workers), beside the same work done
without HTTP, in the same run.

pull:   N queued tasks (each on an account of its own, its RESERVE lock held by its token) are
        leased by POST /api/provider/telegram/tasks/pull {"limit": 1000} from one client, until
        all are out. Baseline: the same tasks put back to queued and leased by the pull's SQL
        statement alone (one WITH … FOR UPDATE SKIP LOCKED … UPDATE … RETURNING per 1,000 rows,
        committed each time) over psycopg: no Redis, no Django, no HTTP.
report: leased tasks reported "done" from 8 client threads, one report per request and 100 per
        request ({"reports": [...]}). Baseline: the same batches of 100 handed to
        services.tasks_report (Redis COMMIT, then the ledger transaction) from 8 threads in this
        process, on fresh leased tasks; and, for reference, one report per call the same way.

ratio = baseline seconds / API seconds for the same amount of work (1.0 = HTTP, DRF and the
view cost nothing extra). Each thread reports its own contiguous run of tasks, and the tasks of
one order are contiguous, so concurrent transactions rarely update the same order row
(--interleave spreads every batch over all orders instead: batches then queue on those rows and
can deadlock; a refused report is sent again and counted).

    make bench-api           (or: python bench/api.py --tasks 10000 --single 3000 --batched 10000)
    python bench/api.py --profile      also cProfile a pull, a batched and a single report
                                       in-process (Django's test client, no HTTP)
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import http.client
import itertools
import json
import os
import pstats
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _setup import ROOT, clear_redis, django_for_bench, truncate

PULL = "/api/provider/telegram/tasks/pull"
REPORT = "/api/provider/telegram/tasks/report"
PULL_LIMIT = 1000
# A ULID no task has: warms the report path without writing anything.
NO_TASK = "0" * 26


# --- HTTP --------------------------------------------------------------------------------------


class Client:
    """One HTTP/1.1 connection (http.client reconnects by itself when the server closes it:
    gunicorn's sync workers close after every response)."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Content-Type": "application/json", "X-Provider-Token": token}

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        self.conn.request("POST", path, body=json.dumps(body), headers=self.headers)
        response = self.conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None

    def close(self) -> None:
        self.conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(env: dict[str, str]) -> Iterator[int]:
    """gunicorn on a free loopback port, answering; yields the port, stops it on the way out
    and shows what it logged beyond INFO lines."""
    port = free_port()
    gunicorn = Path(sys.executable).parent / "gunicorn"
    cmd = [str(gunicorn), "config.wsgi:application", "--workers", "4"]
    cmd += ["--bind", f"127.0.0.1:{port}"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            wait_until_up(proc, port)
            yield port
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.seek(0)
            lines = log.read().decode(errors="replace").splitlines()
            # (The warm-up's reports of an unknown task log "Not Found" on purpose.)
            noisy = [
                line
                for line in lines
                if line.strip() and "[INFO]" not in line and "Not Found: " not in line
            ]
            if noisy:
                print("gunicorn logged:", *noisy[-30:], sep="\n  ")


def wait_until_up(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/ready")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not answer within 60 s")


def in_threads(
    chunks: Sequence[Sequence[Any]],
    work: Callable[[Sequence[Any]], None],
    prepare: Callable[[], None] | None = None,
) -> float:
    """Run ``work(chunk)`` in one thread per chunk, all released at once once each thread ran
    ``prepare`` (untimed); wall seconds from the release to the last thread's end."""
    barrier = threading.Barrier(len(chunks) + 1)
    errors: list[BaseException] = []

    def run(chunk: Sequence[Any]) -> None:
        try:
            if prepare is not None:
                prepare()
        finally:
            barrier.wait()
        try:
            work(chunk)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return elapsed


def split(items: Sequence[Any], parts: int) -> list[Sequence[Any]]:
    """``parts`` contiguous runs of nearly equal length."""
    bounds = [len(items) * i // parts for i in range(parts + 1)]
    return [items[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks pulled")
    parser.add_argument("--rounds", type=int, default=5, help="pull rounds (best of)")
    parser.add_argument("--single", type=int, default=3_000, help="reports, one per request")
    parser.add_argument("--batched", type=int, default=10_000, help="reports, batched")
    parser.add_argument("--batch", type=int, default=100, help="reports per batched request")
    parser.add_argument("--threads", type=int, default=8, help="concurrent report clients")
    parser.add_argument("--orders", type=int, default=80, help="orders the tasks belong to")
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="task i belongs to order i %% orders (concurrent batches then share order rows)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile pull and report")
    opts = parser.parse_args()

    token = secrets.token_urlsafe(24)
    os.environ["PROVIDER_TOKEN"] = token  # this process too (the --profile test client)
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = django_for_bench()

    import psycopg
    from django import db
    from django.utils import timezone

    from orders.models import Order
    from telegram_tasks import claims, services
    from telegram_tasks.claims import Claim, Target
    from telegram_tasks.links import link_hash
    from telegram_tasks.models import TelegramAccount, TelegramTask, new_ulid

    tasks_table = TelegramTask._meta.db_table
    dsn = os.environ["DATABASE_URL"]
    sizes = (opts.tasks, opts.single, opts.batched)
    n_accounts = max(sizes)

    truncate(TelegramTask, Order, TelegramAccount)
    TelegramAccount.objects.bulk_create(
        TelegramAccount(provider_account_id=f"bench_{i}", phone=f"+1{i:09d}")
        for i in range(n_accounts)
    )
    accounts = list(
        TelegramAccount.objects.order_by("id").values_list("id", "provider_account_id", "phone")
    )

    def sql(statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        with db.connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def vacuum() -> None:
        # The pulls and restores leave dead rows; every timed part starts from a clean table.
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"VACUUM ANALYZE {tasks_table}")
            conn.execute(f"VACUUM ANALYZE {Order._meta.db_table}")

    def make_tasks(n: int) -> list[str]:
        """n queued tasks, due now, reserved for an hour, one account each, their locks held.
        Task i belongs to order i * orders // n, so an order's tasks are contiguous (or, with
        --interleave, to order i % orders)."""
        truncate(TelegramTask, Order)
        clear_redis(prefix)
        # An empty prefix has no claim state: mark it present (what rebuild_claims does), or
        # the pull refuses to re-arm locks against it.
        claims.mark_state(f"bench-{prefix}")
        n_orders = min(opts.orders, n)
        Order.objects.bulk_create(
            Order(action="view", link=(link := f"https://t.me/benchapi{o:05d}"),
                  link_hash=link_hash(link), post_id=1, quantity=10_000_000,
                  remains=10_000_000)
            for o in range(n_orders)
        )  # fmt: skip
        orders = list(Order.objects.order_by("id").values_list("id", "link", "link_hash"))
        now = timezone.now()
        until = now + timedelta(hours=1)
        rows, locks = [], []
        for i in range(n):
            order_id, link, lh = orders[i % n_orders if opts.interleave else i * n_orders // n]
            account_id, pid, phone = accounts[i]
            task_id = new_ulid()
            payload = {
                "order_id": order_id, "action": "view", "link": link, "post_id": 1,
                "link_hash": lh, "per_call": 1,
                "account": {"id": account_id, "provider_account_id": pid, "phone": phone},
            }  # fmt: skip
            rows.append(
                (task_id, order_id, "view", lh, account_id, pid, "queued", 1,
                 now - timedelta(seconds=1), until, 0, json.dumps(payload), "", "", now, now)
            )  # fmt: skip
            locks.append(Claim(account_id, "view", Target(lh, 1), task_id))
        with db.connection.cursor() as cursor:
            copy_sql = (
                f"COPY {tasks_table} (id, order_id, action, link_hash, telegram_account_id, "
                "provider_account_id, status, per_call, available_at, reserved_until, attempt, "
                "payload, failure_reason, last_error, created_at, updated_at) FROM STDIN"
            )
            with cursor.cursor.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
        refused = 0
        for chunk in batches(locks, 1000):
            refused += sum(r is not None for r in claims.reserve_many(chunk, now=now, until=until))
        assert refused == 0, f"{refused} locks refused"
        return [r[0] for r in rows]

    def lease_all(n: int) -> None:
        got = 0
        while got < n:
            leased = services.tasks_pull(limit=PULL_LIMIT, now=timezone.now()).tasks
            if not leased:
                break
            got += len(leased)
        assert got == n, f"leased {got} of {n}"

    def restore() -> None:
        sql(
            f"UPDATE {tasks_table} SET status = 'queued', lease_id = NULL, leased_at = NULL, "  # noqa: S608
            "leased_until = NULL, attempt = 0"
        )

    def count_status(status: str) -> int:
        return sql(f"SELECT count(*) FROM {tasks_table} WHERE status = %s", [status])[0][0]  # noqa: S608

    def remains_taken() -> int:
        total = sql(f"SELECT coalesce(sum(quantity - remains), 0) FROM {Order._meta.db_table}")  # noqa: S608
        return int(total[0][0])

    # The pull's own statement, sent directly (no Django, no Redis, no HTTP).
    lease_sql = services.lease_sql()

    def sql_pull(n: int) -> float:
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT 1")
            conn.commit()
            got = 0
            t0 = time.perf_counter()
            while got < n:
                params = services.lease_params(
                    limit=PULL_LIMIT, now=datetime.now(UTC), accounts=None, lease_id=new_ulid()
                )
                rows = conn.execute(lease_sql, params).fetchall()
                conn.commit()
                if not rows:
                    break
                got += len(rows)
            elapsed = time.perf_counter() - t0
        assert got == n, f"SQL leased {got} of {n}"
        return elapsed

    env = dict(os.environ)
    env.update(PROVIDER_TOKEN=token, DEBUG="1", TG_KEY_PREFIX=prefix)
    try:
        with serving(env) as port:
            # Warm every worker on both endpoints (imports, URL resolver, DB and Redis connections);
            # nothing is leased or written: accounts [] matches no task, NO_TASK is no task.
            def warm(_: Sequence[Any]) -> None:
                client = Client(port, token)
                for _ in range(6):
                    status, _body = client.post(PULL, {"limit": PULL_LIMIT, "accounts": []})
                    assert status == 200, (status, _body)
                    status, _body = client.post(
                        REPORT, {"reports": [{"task_id": NO_TASK, "state": "done"}]}
                    )
                    assert status == 200, (status, _body)
                    status, _body = client.post(REPORT, {"task_id": NO_TASK, "state": "done"})
                    assert status == 404, (status, _body)
                client.close()

            in_threads([[i] for i in range(opts.threads)], warm)

            # --- pull ------------------------------------------------------------------------
            make_tasks(opts.tasks)
            api_pull, base_pull = [], []
            pull_requests = 0
            for _ in range(opts.rounds):
                restore()
                vacuum()
                client = Client(port, token)
                got = pull_requests = 0
                t0 = time.perf_counter()
                while got < opts.tasks:
                    status, body = client.post(PULL, {"limit": PULL_LIMIT})
                    pull_requests += 1
                    assert status == 200, (status, body)
                    if not body["count"]:
                        break
                    got += body["count"]
                api_pull.append(time.perf_counter() - t0)
                client.close()
                assert got == opts.tasks == count_status("leased"), f"API leased {got}"
                restore()
                vacuum()
                base_pull.append(sql_pull(opts.tasks))

            if opts.profile:
                restore()
                vacuum()
                profile_pull(opts.tasks, token)

            # --- report ----------------------------------------------------------------------
            # A report the server could not apply (503: PostgreSQL refused the transaction, e.g.
            # a deadlock between two batches on the same orders) is sent again, as a provider
            # would; reporting is idempotent. Retries are counted and printed.
            retries: dict[str, list[int]] = {}

            def api_reports(n: int, size: int) -> float:
                ids = make_tasks(n)
                lease_all(n)
                vacuum()
                taken = remains_taken()
                retried = retries.setdefault(f"api, {size} per request", [])

                def work(chunk: Sequence[str]) -> None:
                    client = Client(port, token)
                    for batch in batches(chunk, size):
                        body: Any = {"reports": [{"task_id": t, "state": "done"} for t in batch]}
                        if size == 1:
                            body = body["reports"][0]
                        while True:
                            status, out = client.post(REPORT, body)
                            if status != 503:
                                break
                            retried.append(1)
                        assert status == 200, (status, out)
                        results = [out] if size == 1 else out["results"]
                        assert all(r["ok"] and r["status"] == "done" for r in results), out
                    client.close()

                elapsed = in_threads(split(ids, opts.threads), work)
                assert count_status("done") == n == remains_taken() - taken
                return elapsed

            def direct_reports(n: int, size: int) -> float:
                ids = make_tasks(n)
                lease_all(n)
                vacuum()
                taken = remains_taken()
                retried = retries.setdefault(f"direct, {size} per call", [])

                def work(chunk: Sequence[str]) -> None:
                    try:
                        for batch in batches(chunk, size):
                            reports = [services.ReportIn(task_id=t, state="done") for t in batch]
                            while True:
                                try:
                                    outs = services.tasks_report(
                                        reports=reports, now=timezone.now()
                                    )
                                    break
                                except db.OperationalError:
                                    retried.append(1)
                            assert all(o.ok and o.status == "done" for o in outs)
                    finally:
                        db.connection.close()

                # Each thread has its own database connection: opened before the clock starts.
                elapsed = in_threads(
                    split(ids, opts.threads), work, db.connection.ensure_connection
                )
                assert count_status("done") == n == remains_taken() - taken
                return elapsed

            single_s = api_reports(opts.single, 1)
            batched_s = api_reports(opts.batched, opts.batch)
            base_s = direct_reports(opts.batched, opts.batch)
            base1_s = direct_reports(opts.single, 1)

            if opts.profile:
                for n, size in ((opts.batched, opts.batch), (opts.single, 1)):
                    ids = make_tasks(n)
                    lease_all(n)
                    vacuum()
                    profile_report(ids, size, token)
    finally:
        truncate(TelegramTask, Order, TelegramAccount)
        clear_redis(prefix)

    pull_api, pull_base = min(api_pull), min(base_pull)
    n = opts.tasks
    print(
        f"tasks={n} pull limit={PULL_LIMIT} ({pull_requests} requests) rounds={opts.rounds} "
        f"report threads={opts.threads} single={opts.single} batched={opts.batched}x{opts.batch}"
    )
    print("pull (one client, best of rounds)")
    print(f"  api:       {pull_api:.3f} s, {n / pull_api:,.0f} tasks/s")
    print(f"  baseline:  {pull_base:.3f} s, {n / pull_base:,.0f} tasks/s (the lease SQL alone)")
    print(f"  ratio (baseline s / api s): {pull_base / pull_api:.2f}  target >= 0.5")
    single, batched = opts.single / single_s, opts.batched / batched_s
    base, base1 = opts.batched / base_s, opts.single / base1_s
    print(f"report done ({opts.threads} threads)")
    print(f"  api single:          {single_s:.3f} s, {single:,.0f} reports/s")
    print(f"  api batched ({opts.batch}):   {batched_s:.3f} s, {batched:,.0f} reports/s")
    print(f"  baseline ({opts.batch}):      {base_s:.3f} s, {base:,.0f} reports/s (tasks_report)")
    print(f"  baseline (1):        {base1_s:.3f} s, {base1:,.0f} reports/s (tasks_report)")
    print(f"  ratio single / baseline ({opts.batch}):  {single / base:.2f}")
    print(f"  ratio batched / baseline ({opts.batch}): {batched / base:.2f}  target >= 0.5")
    print(f"  ratio single / baseline (1):    {single / base1:.2f}")
    if any(retries.values()):
        counts = ", ".join(f"{k}: {len(v)}" for k, v in retries.items())
        print(f"  retried after a refused transaction (deadlock): {counts}")


def _profiled(label: str, run: Callable[[], None]) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    t0 = time.perf_counter()
    run()
    elapsed = time.perf_counter() - t0
    profiler.disable()
    print(f"\n=== profile: {label} in-process ({elapsed:.3f} s under cProfile) ===")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats(30)


def profile_pull(n: int, token: str) -> None:
    from django.test import Client as TestClient

    client = TestClient(HTTP_HOST="127.0.0.1", HTTP_X_PROVIDER_TOKEN=token)

    def run() -> None:
        got = 0
        while got < n:
            response = client.post(PULL, {"limit": PULL_LIMIT}, content_type="application/json")
            assert response.status_code == 200, response.content[:300]
            count = json.loads(response.content)["count"]
            if not count:
                break
            got += count

    _profiled(f"pull of {n} tasks through the test client", run)


def profile_report(ids: Sequence[str], size: int, token: str) -> None:
    from django.test import Client as TestClient

    client = TestClient(HTTP_HOST="127.0.0.1", HTTP_X_PROVIDER_TOKEN=token)

    def run() -> None:
        for batch in batches(ids, size):
            body: Any = {"reports": [{"task_id": t, "state": "done"} for t in batch]}
            if size == 1:
                body = body["reports"][0]
            response = client.post(REPORT, body, content_type="application/json")
            assert response.status_code == 200, response.content[:300]

    _profiled(f"report of {len(ids)}, {size} per request, one thread", run)


if __name__ == "__main__":
    main()
