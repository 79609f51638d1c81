"""End-to-end simulation: the real web server (gunicorn) over a private PostgreSQL and Redis,
generation and housekeeping on a short tick, three provider fleets (the default one, whose token
is PROVIDER_TOKEN, and two made with their own tokens), each with its own accounts and provider
processes pulling and reporting over HTTP with a random mix of outcomes, two of them receiving
pushes at their own endpoints; Redis restarted empty and PostgreSQL restarted mid-run, and one
fleet disabled midway (its work moves to the others); then a checker verifies every invariant of
docs/contract.md on what is left, and that no fleet was handed another's task.

    python sim/run.py                 # small: ~1 minute, run by `make test`
    python sim/run.py --size large    # on demand (`make sim-large`), prints its figures

Exit status 0 when every order finished and every invariant holds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from cluster import PrivateCluster  # noqa: E402
from devstack import PrivatePostgres, PrivateRedis, free_port  # noqa: E402

from sim.world import DISABLED, FLEETS, make_fleets, make_panel, make_world, panel_orders  # noqa: E402

SIZES = {
    "small": {"orders": 120, "accounts": 80, "providers": 4, "web_workers": 3, "deadline": 100},
    "large": {"orders": 1000, "accounts": 400, "providers": 8, "web_workers": 4, "deadline": 600},
}


def log(message: str) -> None:
    print(f"[sim {time.strftime('%H:%M:%S')}] {message}", flush=True)


# The fleets: (name, takes pushes). The default provider's token is PROVIDER_TOKEN; "west" is
# disabled midway.
class TimeMachine(threading.Thread):
    """Days pass in seconds: a membership bought for a day becomes due a second after it
    opened (the ORM moves its due time, as an operator's clock would)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()

    def run(self) -> None:
        from datetime import timedelta

        from django.db import close_old_connections
        from django.utils import timezone

        from telegram_tasks.models import Membership

        while not self.stop.is_set():
            with contextlib.suppress(Exception):
                now = timezone.now()
                Membership.objects.filter(
                    state="open", due_at__gt=now, subscribed_at__lte=now - timedelta(seconds=1)
                ).update(due_at=now)
            close_old_connections()
            self.stop.wait(0.5)


def due_open_memberships() -> int:
    from telegram_tasks.models import Membership

    # A dead account's memberships stay open: nothing can unsubscribe it any more; a disabled
    # provider's wait for it to come back.
    return Membership.objects.filter(
        state="open", due_at__isnull=False, account__is_active=True,
        account__provider__enabled=True,
    ).count()  # fmt: skip


class Scheduler(threading.Thread):
    """Generation and housekeeping on a short tick, as beat would run them, riding out outages."""

    def __init__(self, tick: float) -> None:
        super().__init__(daemon=True)
        self.tick = tick
        self.stop = threading.Event()
        self.errors = 0
        self.created = 0

    def run(self) -> None:
        from django.db import close_old_connections, connection
        from django.utils import timezone

        from orders.services import orders_settle_due
        from telegram_tasks.api import push_transport
        from telegram_tasks.services import tasks_generate, tasks_housekeep, tasks_push

        def dispatch(now):
            return tasks_push(now=now, deliver=push_transport.deliver)

        while not self.stop.is_set():
            for step in (tasks_housekeep, tasks_generate, dispatch, orders_settle_due):
                try:
                    kwargs = {"limit": 1000} if step is tasks_generate else {}
                    result = step(now=timezone.now(), **kwargs)
                    self.created += getattr(result, "created", 0)
                except Exception:  # an outage: try again next tick
                    self.errors += 1
                    with contextlib.suppress(Exception):
                        connection.close()
                close_old_connections()
            self.stop.wait(self.tick)


def unfinished_orders() -> int:
    from orders.models import Order

    return Order.objects.filter(status__in=[s.value for s in Order.ACTIVE]).count()


def in_flight() -> int:
    from telegram_tasks.models import TelegramTask

    return TelegramTask.objects.filter(status__in=["queued", "leased", "pending"]).count()


def retry(what, attempts: int = 100):
    for i in range(attempts):
        try:
            return what()
        except Exception:
            if i == attempts - 1:
                raise
            from django.db import connection

            with contextlib.suppress(Exception):
                connection.close()
            time.sleep(0.2)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SIM_SEED", "7")))
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder")
    parser.add_argument(
        "--redis",
        choices=["single", "cluster"],
        default="single",
        help="a single Redis (restarted empty mid-run) or a Redis Cluster of 3 masters and 3 "
        "replicas (one master failed over mid-run)",
    )
    opts = parser.parse_args()
    size = SIZES[opts.size]
    rng = random.Random(opts.seed)
    base = Path(tempfile.mkdtemp(prefix="tg-sim-", dir=os.environ.get("SIM_DIR")))
    logs = base / "logs"
    logs.mkdir()
    log(f"size={opts.size} seed={opts.seed} folder={base}")
    pg = PrivatePostgres(base / "postgres").start()
    redis = (
        PrivateCluster().start()
        if opts.redis == "cluster"
        else PrivateRedis(base / "redis").start()
    )
    web = None
    providers: list[subprocess.Popen] = []
    try:
        import psycopg

        with psycopg.connect(pg.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as c:
            c.execute("CREATE DATABASE tg_broker")
        token = secrets.token_urlsafe(32)
        push_ports = {name: free_port() for name, pushed in FLEETS if pushed}
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "sim.settings",
            "DATABASE_URL": pg.url,
            "REDIS_URL": redis.url,
            # Celery is not used here; its broker could not live on a cluster anyway.
            "CELERY_BROKER_URL": "memory://",
            "PROVIDER_TOKEN": token,
            "SECRET_KEY": secrets.token_urlsafe(32),
            "DEBUG": "1",
            "PYTHONPATH": str(ROOT),
            "SIM_PUSH_URL": f"http://127.0.0.1:{push_ports['default']}/push",
        }
        os.environ.update(env)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        tokens = make_fleets(
            {name: f"http://127.0.0.1:{port}/push" for name, port in push_ports.items()}
        )
        make_world(size["orders"], size["accounts"], rng)
        panel_key, panel_services = make_panel()
        call_command("rebuild_claims", verbosity=0)

        port = free_port()
        bindir = Path(sys.executable).parent
        web = subprocess.Popen(
            # The production configuration (gevent workers, a database pool each).
            [str(bindir / "gunicorn"), "-c", "config/gunicorn.conf.py", "--bind",
             f"127.0.0.1:{port}", "--workers", str(size["web_workers"]), "--graceful-timeout", "5",
             "--log-level", "warning", "config.wsgi:application"],
            cwd=ROOT, env={**env, "WEB_ACCESS_LOG": ""}, stdout=(base / "web.log").open("w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        base_url = f"http://127.0.0.1:{port}"
        _wait_http(port)
        # A push endpoint per fleet that takes pushes: the default one verifies with its token
        # (PROVIDER_TOKEN signs), the others with their token's digest.
        push_providers = []
        for name, port in push_ports.items():
            push_providers.append(
                subprocess.Popen(
                    [sys.executable, str(ROOT / "tests" / "push_provider.py"), str(port),
                     base_url, tokens[name], str(logs / f"push-{name}.jsonl"), str(opts.seed),
                     "token" if name == "default" else "digest"],
                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                )
            )  # fmt: skip
            _wait_http(port)
        providers += push_providers
        # A quarter more orders arrive from a panel, through /api/v2.
        made = panel_orders(base_url, panel_key, panel_services, size["orders"] // 4, rng)
        log(f"panel API: {made} orders added (each retried once), some canceled")
        scheduler = Scheduler(tick=0.5)
        scheduler.start()
        time_machine = TimeMachine()
        time_machine.start()
        stop_file = base / "stop"
        for n in range(size["providers"]):
            fleet = FLEETS[n % len(FLEETS)][0]
            providers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(ROOT / "sim" / "provider.py"),
                        base_url,
                        tokens[fleet],
                        str(logs / f"provider-{fleet}-{n}.jsonl"),
                        str(stop_file),
                        str(opts.seed * 100 + n),
                    ],
                    cwd=ROOT,
                    env=env,
                )
            )
        started = time.monotonic()
        faults = [] if opts.no_faults else [(0.2, "redis"), (0.35, "postgres")]
        deadline = size["deadline"]
        expected = 35 if opts.size == "small" else 60  # seconds a clean run needs, roughly
        # Midway (a third of the orders finished), one fleet is disabled: its queued work moves
        # to the others, it is handed nothing more (not a fault: --no-faults does it too).
        total = retry(unfinished_orders)
        enabled = True
        while True:
            elapsed = time.monotonic() - started
            remaining = retry(unfinished_orders)
            if enabled and (remaining <= total * 2 // 3 or elapsed >= 0.5 * expected):
                enabled = False
                retry(lambda: call_command("provider_token", DISABLED, "--disable"))
                (logs / "disabled.json").write_text(json.dumps({DISABLED: time.time()}))
                log(f"provider {DISABLED} disabled ({total - remaining} of {total} orders done)")
            if faults and elapsed >= faults[0][0] * expected:
                _, which = faults.pop(0)
                if which == "redis" and opts.redis == "cluster":
                    port = redis.failover()
                    log(f"fault: Redis Cluster failed over (node {port} promoted)")
                elif which == "redis":
                    log("fault: Redis restarted empty")
                    redis.restart_empty()
                    retry(lambda: call_command("rebuild_claims", verbosity=0))
                    log("rebuild_claims done")
                else:
                    log("fault: PostgreSQL restarted")
                    pg.restart()
            if (
                remaining == 0
                and retry(in_flight) == 0
                and retry(due_open_memberships) == 0
                and not faults
                and not enabled
            ):
                break
            if elapsed > deadline:
                log(f"deadline: {remaining} orders unfinished")
                break
            time.sleep(1)
        run_seconds = time.monotonic() - started
        stop_file.touch()
        for push_provider in push_providers:
            push_provider.terminate()
        for p in providers:
            p.wait(timeout=60)
        scheduler.stop.set()
        scheduler.join(timeout=30)
        time_machine.stop.set()
        time_machine.join(timeout=10)
        # A last housekeeping gives back any lock an ended task still holds.
        from django.utils import timezone

        from telegram_tasks.services import tasks_housekeep

        retry(lambda: tasks_housekeep(now=timezone.now()))
        from orders.services import orders_settle_due

        retry(lambda: orders_settle_due(now=timezone.now()))
        return report(base, run_seconds, scheduler)
    finally:
        for p in providers:
            if p.poll() is None:
                p.kill()
        if web is not None:
            web.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                web.wait(timeout=10)
        redis.stop()
        pg.stop()
        if not opts.keep:
            shutil.rmtree(base, ignore_errors=True)


def _wait_http(port: int) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError("gunicorn did not start")


def report(base: Path, run_seconds: float, scheduler: Scheduler) -> int:
    from collections import Counter

    from orders.models import Order
    from sim.check import check_all, read_logs
    from telegram_tasks.models import TelegramTask

    events = read_logs(base / "logs")
    kinds = Counter(e["ev"] for e in events)
    statuses = Counter(TelegramTask.objects.values_list("status", flat=True))
    reasons = Counter(
        TelegramTask.objects.filter(status="failed").values_list("failure_reason", flat=True)
    )
    orders = Counter(Order.objects.values_list("status", flat=True))
    log(f"ran {run_seconds:.1f}s; scheduler errors during outages: {scheduler.errors}")
    log(f"orders: {dict(orders)}")
    actions = Counter(Order.objects.values_list("action", flat=True))
    mixes = sum(
        len(p.get("reactions", [])) > 1 for p in Order.objects.values_list("params", flat=True)
    )
    log(f"orders by action: {dict(actions)} (reaction mixes: {mixes})")
    log(f"tasks: {dict(statuses)}; failed by reason: {dict(reasons)}")
    log(f"provider events: {dict(kinds)}")
    fleets = Counter(e.get("fleet") for e in events if e["ev"] == "lease")
    log(f"hand-outs by provider: {dict(fleets)}")
    done = statuses.get("done", 0)
    handouts = kinds["lease"] / run_seconds
    log(f"throughput: {done / run_seconds:.1f} successes/s, {handouts:.1f} hand-outs/s")
    violations = 0
    for name, found in check_all(base / "logs").items():
        violations += len(found)
        log(f"{'PASS' if not found else 'FAIL'} {name}" + (f": {len(found)}" if found else ""))
        for line in found[:10]:
            log(f"    {line}")
    unfinished = orders.get("awaiting", 0) + orders.get("pending", 0) + orders.get("in_progress", 0)
    if unfinished:
        log(f"FAIL {unfinished} orders did not finish")
        from telegram_tasks.models import OrderPassStats

        active = Order.objects.filter(status__in=[s.value for s in Order.ACTIVE])
        for order in active[:10]:
            stats = OrderPassStats.objects.filter(order=order).first()
            log(
                f"    order {order.pk} {order.action} remains {order.remains}: last pass "
                + (f"made {stats.created} starved {stats.starved_slots} {stats.refusals}"
                   if stats else "none")
            )  # fmt: skip
    from telegram_tasks.models import Membership

    for m in Membership.objects.filter(state="open").exclude(due_at=None)[:5]:
        tasks = TelegramTask.objects.filter(membership=m).values_list("status", "failure_reason")
        log(f"    open membership {m.pk}: attempts {m.attempts}, next {m.next_attempt_at}, "
            f"tasks {list(tasks)}")  # fmt: skip
    ok = violations == 0 and unfinished == 0
    log("checker: all invariants hold" if ok else "checker: FAILED")
    print(f"{1 if ok else 0} passed, {0 if ok else 1} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
