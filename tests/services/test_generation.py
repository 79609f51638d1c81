"""The generation pass over real PostgreSQL and Redis."""

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import DatabaseError
from django.db import connection as db_connection

from orders.models import Order
from telegram_tasks import claims, services
from telegram_tasks.claims import keys
from telegram_tasks.models import TelegramTask
from telegram_tasks.services import order_slots, tasks_generate
from tests.concurrency import run_concurrently
from tests.factories import make_account, make_accounts, make_order, make_task

pytestmark = pytest.mark.django_db

EPS = timedelta(milliseconds=1)
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def lock_tokens(redis_client, prefix):
    found = {}
    for key in redis_client.scan_iter(match=f"{prefix}:*:lock:*"):
        found[key.decode()] = redis_client.hget(key, "token").decode()
    return found


def test_due_order_gets_a_task_with_a_reserved_account(redis_client, redis_prefix):
    account = make_account()
    order = make_order(action="view", link="t.me/durov/42", quantity=1)
    summary = tasks_generate(limit=100, now=NOW)
    assert (summary.examined, summary.created, summary.starved_orders) == (1, 1, 0)
    task = TelegramTask.objects.get()
    assert task.telegram_account_id == account.id
    assert task.provider_account_id == account.provider_account_id
    assert (task.status, task.available_at, task.attempt) == ("queued", NOW, 0)
    assert task.reserved_until == NOW + timedelta(seconds=120)
    assert task.payload == {
        "order_id": order.pk, "action": "view", "link": "https://t.me/durov", "post_id": 42,
        "link_hash": order.link_hash, "per_call": 1, "params": {},
        "account": {"id": account.id, "provider_account_id": account.provider_account_id,
                    "phone": account.phone, "tier": "default"},
    }  # fmt: skip
    order.refresh_from_db()
    assert order.status == Order.Status.IN_PROGRESS
    assert order.next_run_at > NOW
    assert lock_tokens(redis_client, redis_prefix) == {keys.lock(account.id, "view"): task.id}


@pytest.mark.parametrize(
    "fields",
    [
        {"next_run_at": NOW + timedelta(seconds=1)},
        {"status": Order.Status.COMPLETED},
        {"status": Order.Status.CANCELED},
        {"status": Order.Status.PARTIAL},
        {"remains": 0},
    ],
)
def test_orders_that_are_not_due_get_nothing(fields):
    make_account()
    make_order(action="view", quantity=1, **fields)
    assert tasks_generate(limit=100, now=NOW).created == 0
    assert not TelegramTask.objects.exists()


@pytest.mark.parametrize("status", [Order.Status.PENDING, Order.Status.IN_PROGRESS])
def test_pending_and_in_progress_orders_are_due(status):
    make_account()
    make_order(action="view", quantity=1, status=status, next_run_at=NOW)
    assert tasks_generate(limit=100, now=NOW).created == 1


def test_in_flight_units_count_against_remains():
    account = make_account()
    make_account()
    order = make_order(action="view", quantity=1)
    make_task(order, account)
    assert tasks_generate(limit=100, now=NOW).created == 0
    order2 = make_order(action="view", quantity=3, per_call=1)
    make_task(order2, account, status="leased")
    make_task(order2, account, status="pending")
    assert tasks_generate(limit=100, now=NOW).created == 1


def test_drip_feed_makes_one_task_per_slot_of_the_tick():
    make_accounts(10)
    order = make_order(action="view", quantity=100, interval_seconds=10)
    assert tasks_generate(limit=100, now=NOW).created == 6
    slots = sorted(TelegramTask.objects.values_list("available_at", flat=True))
    assert slots == [NOW + timedelta(seconds=10 * i) for i in range(6)]
    reserved = sorted(TelegramTask.objects.values_list("reserved_until", flat=True))
    assert reserved == [s + timedelta(seconds=120) for s in slots]
    order.refresh_from_db()
    assert order.next_run_at == NOW + timedelta(seconds=60)
    # The next pass, a tick later, continues the cadence.
    assert tasks_generate(limit=100, now=NOW + timedelta(seconds=30)).created == 0
    assert tasks_generate(limit=100, now=NOW + timedelta(seconds=60)).created >= 1


def test_no_burst_after_downtime():
    make_accounts(20)
    order = make_order(
        action="view", quantity=1000, interval_seconds=10, next_run_at=NOW - timedelta(hours=3)
    )
    assert tasks_generate(limit=1000, now=NOW).created == 6
    first = TelegramTask.objects.order_by("available_at").first()
    assert first.available_at == NOW
    order.refresh_from_db()
    assert order.next_run_at == NOW + timedelta(seconds=60)


def test_interval_zero_gets_up_to_the_per_pass_maximum(settings):
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "MAX_TASKS_PER_ORDER_PER_PASS": 4}
    make_accounts(10)
    make_order(action="view", quantity=100)
    assert tasks_generate(limit=100, now=NOW).created == 4
    small = make_order(action="reaction", quantity=5, per_call=2)
    assert tasks_generate(limit=100, now=NOW).created == 3 + 0  # ceil(5 / 2) tasks
    assert TelegramTask.objects.filter(order=small).count() == 3


def test_one_live_task_per_account_and_action_spreads_work():
    accounts = make_accounts(3)
    make_order(action="view", quantity=10)
    assert tasks_generate(limit=100, now=NOW).created == 3
    used = TelegramTask.objects.values_list("telegram_account_id", flat=True)
    assert sorted(used) == [a.id for a in accounts]


def test_order_without_an_eligible_account_is_starved_and_pushed_behind():
    make_account(is_active=False)
    order = make_order(action="view", quantity=1)
    summary = tasks_generate(limit=100, now=NOW)
    assert (summary.created, summary.starved_orders, summary.starved_slots) == (0, 1, 1)
    order.refresh_from_db()
    # Still due at the next pass, but behind every order that has waited longer.
    assert order.status == Order.Status.AWAITING and NOW < order.next_run_at < NOW + EPS
    make_account()
    assert tasks_generate(limit=100, now=NOW + EPS).created == 1


def test_limit_caps_the_pass():
    make_accounts(20)
    for _ in range(10):
        make_order(action="view", quantity=1)
    summary = tasks_generate(limit=3, now=NOW)
    assert summary.created == 3 == TelegramTask.objects.count()
    assert tasks_generate(limit=100, now=NOW).created == 7


def test_order_slots_rules():
    kwargs = {"open_units": 100, "per_call": 1}
    assert order_slots(next_run_at=None, interval=20, now=NOW, **kwargs) == [
        NOW,
        NOW + timedelta(seconds=20),
        NOW + timedelta(seconds=40),
    ]
    # An interval longer than the tick still gets its one due slot.
    assert order_slots(next_run_at=NOW, interval=3600, now=NOW, **kwargs) == [NOW]
    # Few units left: no more tasks than they need.
    assert len(order_slots(next_run_at=None, interval=1, now=NOW, open_units=3, per_call=1)) == 3


def test_reservations_are_rolled_back_when_the_insert_fails(redis_client, redis_prefix):
    make_accounts(5)
    order = make_order(action="view", quantity=3)
    with db_connection.cursor() as cursor:  # a real PostgreSQL error, raised by the insert
        cursor.execute(
            "CREATE FUNCTION tg_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'disk full'; END $$;"
            "CREATE TRIGGER tg_refuse BEFORE INSERT ON telegram_tasks "
            "FOR EACH ROW EXECUTE FUNCTION tg_refuse();"
        )
    with pytest.raises(DatabaseError, match="disk full"):
        tasks_generate(limit=100, now=NOW)
    assert lock_tokens(redis_client, redis_prefix) == {}
    assert not TelegramTask.objects.exists()
    order.refresh_from_db()
    assert order.next_run_at is None and order.status == Order.Status.AWAITING


def test_command_prints_one_summary_line():
    make_account()
    make_order(action="view", quantity=1)
    from io import StringIO

    out = StringIO()
    call_command("generate_telegram_tasks", "--limit=5", stdout=out)
    line = out.getvalue().strip()
    assert "\n" not in line
    assert line.startswith("examined=1 created=1 starved=0") and "seconds=" in line


def test_beat_task_and_command_call_the_one_pass_function(monkeypatch):
    from telegram_tasks import tasks
    from telegram_tasks.management.commands import generate_telegram_tasks as command

    assert tasks.tasks_generate is services.tasks_generate is command.tasks_generate
    make_account()
    make_order(action="view", quantity=2)
    assert (
        tasks.generate_telegram_tasks.apply(kwargs={"limit": 1})
        .get()
        .startswith("examined=1 created=1")
    )


def test_beat_task_never_overlaps_itself():
    from telegram_tasks import tasks

    held = claims.pass_lock("generate", timeout=tasks.PASS_LOCK_SECONDS)
    assert held.acquire()
    try:
        make_account()
        make_order(action="view", quantity=1)
        assert tasks.generate_telegram_tasks.apply().get() is None
        assert not TelegramTask.objects.exists()
    finally:
        held.release()


def test_command_and_beat_task_restore_a_lost_state_instead_of_refusing(redis_client, redis_prefix):
    from telegram_tasks import tasks

    redis_client.delete(f"{redis_prefix}:marker")
    make_account()
    make_order(action="view", quantity=2, link="t.me/durov/5")
    call_command("generate_telegram_tasks", "--limit=1")
    redis_client.delete(f"{redis_prefix}:marker")
    assert tasks.generate_telegram_tasks.apply().get().startswith("examined=1")
    assert TelegramTask.objects.count() == 1


def test_beat_schedule_is_created_by_a_migration():
    from django_celery_beat.models import PeriodicTask

    periodic = PeriodicTask.objects.get(task="telegram_tasks.generate")
    assert (
        periodic.enabled and periodic.interval.every == 60 and periodic.interval.period == "seconds"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "postgres://postgres@127.0.0.1:1/nope"}, "PostgreSQL is unavailable"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "Redis is unavailable"),
    ],
)
def test_command_fails_clearly_when_a_server_is_down(env, message, redis_prefix):
    import os

    proc = subprocess.run(
        [sys.executable, "manage.py", "generate_telegram_tasks", "--limit=1"],
        env={**os.environ, "DEBUG": "1", "TG_KEY_PREFIX": redis_prefix, **env, **_test_db_env(env)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert message in proc.stderr


def _test_db_env(env):
    if "DATABASE_URL" in env:
        return {}
    settings_db = db_connection.settings_dict
    url = f"postgres://{settings_db['USER']}@{settings_db['HOST']}:{settings_db['PORT']}/{settings_db['NAME']}"
    return {"DATABASE_URL": url}


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_passes_create_each_task_once():
    make_accounts(250)
    orders = [make_order(action="view", link=f"t.me/chan{i:05d}/1", quantity=1) for i in range(200)]
    summaries = run_concurrently(lambda _: tasks_generate(limit=1000, now=NOW), 2)
    assert len(summaries) == 2
    assert sum(s.created for s in summaries) == 200
    per_order = TelegramTask.objects.values_list("order_id", flat=True)
    assert sorted(per_order) == sorted(o.pk for o in orders)
    accounts = list(TelegramTask.objects.values_list("telegram_account_id", flat=True))
    assert len(accounts) == len(set(accounts))  # one live view task per account


def test_the_last_task_carries_only_what_the_order_still_needs():
    make_accounts(5)
    order = make_order(action="view", quantity=5, per_call=2)
    assert tasks_generate(limit=100, now=NOW).created == 3
    units = sorted(TelegramTask.objects.filter(order=order).values_list("per_call", flat=True))
    assert units == [1, 2, 2] and sum(units) == order.quantity
    assert sorted(t.payload["per_call"] for t in TelegramTask.objects.all()) == [1, 2, 2]


# --- head-of-line starvation, budgets, long passes (hardening) ------------------------------


def test_starved_orders_at_the_head_stop_nobody_behind_them():
    """Subscribe orders larger than the pool, due first and refused by every account, must not
    spend the pass's budget: the orders behind them, of any action, still get their tasks."""
    accounts = make_accounts(5)
    for i in range(3):
        order = make_order(action="subscribe", link=f"t.me/bigchan{i}", quantity=100)
        Order.objects.filter(pk=order.pk).update(next_run_at=NOW - timedelta(minutes=10))
    for a in accounts:  # every account is busy with another subscribe
        claims.reserve(
            claims.Claim(a.id, "subscribe", claims.Target("x" * 64), f"busy{a.id}"), now=NOW
        )
    views = [make_order(action="view", link=f"t.me/viewchan{i}/1", quantity=1) for i in range(4)]
    Order.objects.filter(pk__in=[v.pk for v in views]).update(
        next_run_at=NOW - timedelta(minutes=5)
    )
    summary = tasks_generate(limit=4, now=NOW)
    assert summary.created == 4 and summary.starved_orders == 3
    assert set(TelegramTask.objects.values_list("order_id", flat=True)) == {v.pk for v in views}


def test_a_starved_order_goes_behind_the_orders_that_waited_longer():
    [account] = make_accounts(1)
    starved = make_order(action="view", link="t.me/starvedchan/1", quantity=1)
    Order.objects.filter(pk=starved.pk).update(next_run_at=NOW - timedelta(minutes=10))
    claims.reserve(claims.Claim(account.id, "view", claims.Target("y" * 64), "busy"), now=NOW)
    assert tasks_generate(limit=10, now=NOW).starved_orders == 1
    claims.rollback(claims.Claim(account.id, "view", claims.Target("y" * 64), "busy"))
    waiting = make_order(action="view", link="t.me/waitingchan/1", quantity=1)
    Order.objects.filter(pk=waiting.pk).update(next_run_at=NOW - timedelta(seconds=5))
    # One account, one task: the order that waited longer than the pushed-back one wins.
    assert tasks_generate(limit=10, now=NOW + timedelta(seconds=1)).created == 1
    assert TelegramTask.objects.get().order_id == waiting.pk


def test_target_refusals_are_learned_once_per_order_not_once_per_slot():
    accounts = make_accounts(10)
    order = make_order(action="view", link="t.me/durov/3", quantity=50)
    for a in accounts:  # every account already viewed this post
        c = claims.Claim(a.id, "view", claims.Target(order.link_hash, 3), f"old{a.id}")
        claims.reserve(c, now=NOW - timedelta(hours=1))
        claims.commit(c, now=NOW - timedelta(hours=1))
    summary = tasks_generate(limit=100, now=NOW)
    assert summary.created == 0 and summary.starved_slots == 50
    assert summary.refusals == {"dedupe": 10}


def test_pages_are_read_by_keyset_not_by_a_growing_exclusion_list(monkeypatch):
    from django.test.utils import CaptureQueriesContext

    from telegram_tasks.services import generation

    monkeypatch.setattr(generation, "PAGE_SIZE", 5)
    make_accounts(1)
    for i in range(20):
        make_order(action="view", link=f"t.me/keysetchan{i}/1", quantity=1)
    with CaptureQueriesContext(db_connection) as ctx:
        summary = tasks_generate(limit=100, now=NOW)
    assert summary.examined == 20
    pages = [
        q["sql"]
        for q in ctx.captured_queries
        if "SKIP LOCKED" in q["sql"] and "FROM orders AS o" in q["sql"]
    ]
    assert len(pages) == 5  # four full pages, then an empty one
    assert len({len(sql) for sql in pages[1:]}) == 1  # the same statement on every page


def test_a_long_pass_schedules_each_page_from_when_it_starts(monkeypatch):
    """A pass that takes minutes must not create tasks whose reservation already lapsed."""
    from telegram_tasks.services import generation

    monkeypatch.setattr(generation, "PAGE_SIZE", 2)
    make_accounts(4)
    for i in range(4):
        make_order(action="view", link=f"t.me/longchan{i}/1", quantity=1)
    ticks = iter([0.0, 0.0, 300.0, 300.0, 600.0, 600.0])
    tasks_generate(limit=100, now=NOW, clock=lambda: next(ticks, 600.0))
    times = sorted(TelegramTask.objects.values_list("available_at", "reserved_until"))
    assert [t[0] for t in times] == [NOW, NOW, NOW + timedelta(seconds=300)] * 1 + [
        NOW + timedelta(seconds=300)
    ]
    assert all(until > at for at, until in times)


# --- fair sharing and priority ----------------------------------------------------------------


def jain(values):
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


@pytest.fixture
def repeatable(settings):
    """An action an account may repeat at once on the same target: only the lock limits it."""
    settings.TELEGRAM_TASKS = {
        **settings.TELEGRAM_TASKS,
        "ACTIONS": {"like": {"cooldown": 0, "daily_cap": None, "gate": None, "one_shot": False}},
    }


def deliver_passes(passes, now=NOW):
    from django.test import TestCase

    from telegram_tasks.services import ReportIn, tasks_pull, tasks_report

    for _ in range(passes):
        tasks_generate(limit=1000, now=now)
        leased = tasks_pull(limit=1000, now=now).tasks
        with TestCase.captureOnCommitCallbacks(execute=True):
            tasks_report(reports=[ReportIn(t["task_id"], "done") for t in leased], now=now)
        now += timedelta(seconds=1)


def test_a_huge_order_does_not_starve_small_ones(repeatable):
    """One order of 10,000 and twenty of 100 compete for 200 accounts: every small order
    progresses from the first pass, at the big order's rate."""
    make_accounts(200)
    big = make_order(action="like", link="t.me/bigorder/1", quantity=10_000)
    small = [
        make_order(action="like", link=f"t.me/smallorder{i}/1", quantity=100) for i in range(20)
    ]
    deliver_passes(1)
    first = {o.pk: 0 for o in [big, *small]}
    for order_id in TelegramTask.objects.filter(status="done").values_list("order_id", flat=True):
        first[order_id] += 1
    assert all(first[o.pk] > 0 for o in small)
    deliver_passes(4, now=NOW + timedelta(seconds=10))
    delivered = {o.pk: o.quantity - Order.objects.get(pk=o.pk).remains for o in [big, *small]}
    assert jain(list(delivered.values())) >= 0.9, delivered
    assert delivered[big.pk] <= 1.5 * min(delivered[o.pk] for o in small)


def test_higher_priority_is_served_first_when_accounts_run_short(repeatable):
    make_accounts(10)
    low = make_order(action="like", link="t.me/loworder/1", quantity=50)
    high = make_order(action="like", link="t.me/highorder/1", quantity=50, priority=5)
    tasks_generate(limit=1000, now=NOW)
    assert TelegramTask.objects.filter(order=high).count() == 10
    assert not TelegramTask.objects.filter(order=low).exists()


def test_an_orders_pass_stats_say_why_it_is_slow():
    from telegram_tasks.models import OrderPassStats

    [account] = make_accounts(1)
    order = make_order(action="view", link="t.me/slowchan/1", quantity=5)
    claims.reserve(claims.Claim(account.id, "view", claims.Target("q" * 64, 1), "busy"), now=NOW)
    tasks_generate(limit=10, now=NOW)
    stats = OrderPassStats.objects.get(order=order)
    assert (stats.created, stats.starved_slots) == (0, 5)
    assert stats.refusals == {"locked": 1}
    claims.rollback(claims.Claim(account.id, "view", claims.Target("q" * 64, 1), "busy"))
    tasks_generate(limit=10, now=NOW + timedelta(seconds=1))
    stats.refresh_from_db()
    # One account for five slots: one task made, the others starved by its own lock.
    assert (stats.created, stats.starved_slots, stats.troubled, len(stats.recent)) == (
        1,
        4,
        True,
        2,
    )
