"""The operator's dashboard: its page, the rollup it reads, the accounts' states, the passes."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from telegram_tasks import dashboard
from telegram_tasks.models import (
    GenerationPass,
    OrderPassStats,
    TaskHour,
    TaskTotal,
    TelegramAccount,
    TelegramTask,
)
from telegram_tasks.services import (
    ReportIn,
    farm,
    orders_pause,
    rollup,
    tasks_generate,
    tasks_housekeep,
    tasks_pull,
    tasks_report,
)
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
URL = "/admin/dashboard/"


def report(*reports, now):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return tasks_report(reports=list(reports), now=now)


@pytest.fixture
def worked():
    """Three views made, one done, one failed, one still leased."""
    make_accounts(3)
    make_order(action="view", link="t.me/durov/5", quantity=3)
    tasks_generate(limit=10, now=T0)
    done, failed, _ = tasks_pull(limit=10, now=T0).tasks
    report(ReportIn(done["task_id"], "done"), now=T0 + timedelta(seconds=5))
    report(ReportIn(failed["task_id"], "failed", error_code="USER_BANNED"), now=T0)
    return done, failed


@pytest.fixture
def now_worked():
    """The same, at the clock's time: tasks are counted as created by their ULID keys, which
    carry the real time they were made at."""
    now = timezone.now()
    make_accounts(3)
    make_order(action="view", link="t.me/durov/5", quantity=3)
    tasks_generate(limit=10, now=now)
    done, failed, _ = tasks_pull(limit=10, now=now).tasks
    report(ReportIn(done["task_id"], "done"), now=now)
    report(ReportIn(failed["task_id"], "failed", error_code="USER_BANNED"), now=now)
    return now


def test_the_rollup_counts_each_task_once(now_worked):
    later = now_worked + timedelta(minutes=5)
    assert rollup.rollup(now=later) == 5  # 3 created, 1 done, 1 failed
    assert rollup.rollup(now=later + timedelta(minutes=1)) == 0
    reason = TelegramTask.objects.get(status="failed").failure_reason
    hours = {(h.outcome, h.reason): h.count for h in TaskHour.objects.all()}
    assert hours == {("created", ""): 3, ("done", ""): 1, ("failed", reason): 1}
    totals = {(t.outcome, t.reason): t.count for t in TaskTotal.objects.all()}
    assert totals == hours


def test_what_finishes_within_the_lag_is_counted_next_time(now_worked):
    """A transaction still committing must not be missed: the rollup stops short of now."""
    assert rollup.rollup(now=now_worked + timedelta(seconds=30)) == 0
    assert rollup.rollup(now=now_worked + timedelta(minutes=3)) == 5


def test_every_pass_is_recorded(worked):
    [record] = GenerationPass.objects.all()
    assert (record.created, record.starved_slots, record.started_at) == (3, 0, T0)


def test_accounts_by_state(settings):
    settings.TELEGRAM_TASKS = {
        **settings.TELEGRAM_TASKS,
        "ACTIONS": {"view": {"cooldown": 600, "daily_cap": 1}},
    }
    busy, held, idle = make_accounts(3)
    TelegramAccount.objects.filter(pk=held.pk).update(held_until=T0 + timedelta(hours=1))
    make_accounts(1, is_active=False)
    make_order(action="view", link="t.me/durov/5", quantity=1)
    tasks_generate(limit=10, now=T0)
    [task] = tasks_pull(limit=10, now=T0).tasks
    report(ReportIn(task["task_id"], "done"), now=T0)
    counts = farm.refresh_account_counts(now=T0 + timedelta(seconds=10))
    assert (counts.active, counts.inactive, counts.held) == (3, 1, 1)
    assert (counts.cooling, counts.capped) == (1, 1)
    assert farm.account_counts(now=T0).capped == 1  # the snapshot
    later = farm.limited_accounts(now=T0 + timedelta(minutes=11))
    assert later == (set(), {TelegramAccount.objects.get(provider_account_id=task["account"][
        "provider_account_id"]).pk})  # fmt: skip
    del busy, idle


def test_the_dashboard_page(admin_client, worked):
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_housekeep(now=T0 + timedelta(minutes=5))
    board = dashboard.dashboard(now=T0 + timedelta(minutes=5))
    assert board.done_by_action["view"][-1] == 1
    # (What housekeeping itself ended then is counted by the next rollup: within the lag.)
    reasons = TelegramTask.objects.filter(
        status="failed", finished_at__lt=T0 + timedelta(minutes=3)
    ).values_list("failure_reason")
    assert sorted(board.failed_by_reason) == sorted((r, 1) for (r,) in reasons)
    # The third lease ran out and housekeeping ended it (lease_abandoned).
    assert (board.leases_live, board.leases_expired, board.pending) == (0, 0, 0)
    assert [p["created"] for p in board.passes] == [3]
    page = admin_client.get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    for marker in ("chart-hourly", "chart-reasons", "chart-passes", "chart-4.6.1.umd.min.js",
                   "starved-orders", "card-accounts", "card-push"):  # fmt: skip
        assert marker in html, marker
    assert "/admin/dashboard/" in admin_client.get("/admin/").content.decode()


def test_the_dashboard_needs_the_view_permission(client):
    staff = User.objects.create_user("op", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(URL).status_code == 403
    assert "/admin/dashboard/" not in client.get("/admin/").content.decode()
    staff.user_permissions.add(Permission.objects.get(codename="view_telegramtask"))
    assert client.get(URL).status_code == 200


def test_the_dashboard_costs_the_same_few_queries_whatever_the_ledger(admin_client, worked):
    from django.db import connection

    admin_client.get(URL)
    with CaptureQueriesContext(connection) as small:
        admin_client.get(URL)
    make_accounts(20)
    make_order(action="view", link="t.me/durov/9", quantity=20)
    tasks_generate(limit=100, now=T0)
    for t in tasks_pull(limit=100, now=T0).tasks:
        report(ReportIn(t["task_id"], "done"), now=T0)
    rollup.rollup(now=T0 + timedelta(minutes=5))
    with CaptureQueriesContext(connection) as large:
        admin_client.get(URL)
    assert len(large) == len(small) <= 12


def test_starved_orders_are_those_short_of_accounts_now():
    """An order a pass found short of accounts is listed while it can still get tasks and the
    passes still find it so; completed, paused or no longer looked at, it drops off (the
    dashboard and the starved-orders gauge alike)."""
    make_accounts(1)
    short, paused, done, stale = (
        make_order(action="subscribe", link=f"t.me/starving{n}", quantity=3) for n in range(4)
    )
    tasks_generate(limit=20, now=T0)
    later = T0 + timedelta(minutes=1)
    assert {s["order_id"] for s in dashboard.starved_orders(now=later)} == {
        short.pk, paused.pk, done.pk, stale.pk
    }  # fmt: skip
    orders_pause(order_ids=[paused.pk], now=T0)
    type(done).objects.filter(pk=done.pk).update(status="completed")
    type(stale).objects.filter(pk=stale.pk).update(next_run_at=T0 + timedelta(days=1))
    OrderPassStats.objects.filter(order_id=stale.pk).update(
        last_pass_at=T0 - dashboard.STARVED_WINDOW
    )
    assert [s["order_id"] for s in dashboard.starved_orders(now=later)] == [short.pk]
    assert dashboard.short_of_accounts(now=later).count() == 1


def test_inactive_accounts_are_never_counted_cooling_or_capped(settings):
    settings.TELEGRAM_TASKS = {
        **settings.TELEGRAM_TASKS,
        "ACTIONS": {"view": {"cooldown": 600, "daily_cap": 1}},
    }
    make_accounts(1)
    make_order(action="view", link="t.me/durov/5", quantity=1)
    tasks_generate(limit=10, now=T0)
    [task] = tasks_pull(limit=10, now=T0).tasks
    report(ReportIn(task["task_id"], "done"), now=T0)
    assert farm.limited_accounts(now=T0)[0]
    TelegramAccount.objects.update(is_active=False)
    counts = farm.refresh_account_counts(now=T0 + timedelta(seconds=10))
    assert (counts.inactive, counts.cooling, counts.capped) == (1, 0, 0)


def test_capped_today_reads_the_rollups_day_counts_and_only_the_minutes_since(settings):
    """Who is capped today costs the same whatever the day's volume: the rollup keeps each
    account's count per day, and only the successes since its mark are read from the tasks."""
    from django.db import connection

    settings.TELEGRAM_TASKS = {
        **settings.TELEGRAM_TASKS,
        "ACTIONS": {"view": {"cooldown": 1, "daily_cap": 2}},
    }
    [account] = make_accounts(1)
    for post, at in ((5, T0), (6, T0 + timedelta(minutes=2))):
        make_order(action="view", link=f"t.me/durov/{post}", quantity=1)
        tasks_generate(limit=10, now=at)
        [task] = tasks_pull(limit=10, now=at).tasks
        report(ReportIn(task["task_id"], "done"), now=at)
        if post == 5:
            rollup.rollup(now=at + timedelta(minutes=3))  # counted into the day's row
    assert farm.limited_accounts(now=T0 + timedelta(minutes=4))[1] == {account.pk}
    with connection.cursor() as cursor:
        cursor.execute("SELECT done FROM telegram_account_days")
        assert cursor.fetchall() == [(1,)]  # the second success: read from the tail
    # Yesterday's counts do not cap anyone today.
    assert farm.limited_accounts(now=T0 + timedelta(days=1))[1] == set()


def test_a_starved_order_links_to_the_order_models_own_admin_page(admin_client, monkeypatch):
    """The order model is the project's (ORDER_MODEL): its admin page, if it has one."""
    from django.contrib import admin

    from telegram_tasks.conf import get_order_model

    make_accounts(1)
    orders = [make_order(action="subscribe", link=f"t.me/hungry{n}", quantity=3) for n in (1, 2)]
    tasks_generate(limit=20, now=timezone.now())
    starved = [s["order_id"] for s in dashboard.starved_orders(now=timezone.now())]
    assert starved and set(starved) <= {o.pk for o in orders}
    html = admin_client.get(URL).content.decode()
    for pk in starved:
        assert f'href="/admin/orders/order/{pk}/change/"' in html
    monkeypatch.delitem(admin.site._registry, get_order_model())
    page = admin_client.get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    assert f"#{starved[0]}" in html and "/admin/orders/order/" not in html
