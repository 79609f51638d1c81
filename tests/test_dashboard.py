"""The operator's dashboard: its page, the rollup it reads, the accounts' states, the passes."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from telegram_tasks.models import (
    GenerationPass,
    OrderPassStats,
    RollupMark,
    TaskHour,
    TaskMinute,
    TaskTotal,
    TelegramAccount,
    TelegramTask,
    default_provider_id,
)
from telegram_tasks.monitoring import activity, overview
from telegram_tasks.services import (
    ReportIn,
    accounts_deactivate,
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
    board = overview.dashboard(now=T0 + timedelta(minutes=5), range_key="1h")
    act = board.activity
    assert act.done == {"view": [0] * 54 + [1] + [0] * 5}  # T0 + 5 s, in the minute of T0
    # (What housekeeping itself ended then is counted by the next rollup: within the lag.)
    reasons = TelegramTask.objects.filter(
        status="failed", finished_at__lt=T0 + timedelta(minutes=3)
    ).values_list("failure_reason")
    assert sorted(act.failed_by_reason()) == sorted((r, 1) for (r,) in reasons)
    assert act.counted_until == T0 + timedelta(minutes=3)  # the rollup's lag
    assert act.counted_buckets == 57
    # The third lease ran out and housekeeping ended it (lease_abandoned).
    assert (board.leases_live, board.leases_expired, board.pending) == (0, 0, 0)
    assert [p["created"] for p in board.passes] == [3]
    page = admin_client.get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    for marker in ("chart-done", "chart-failed", "chart-passes", "chart-4.6.1.umd.min.js",
                   "starved-orders", "card-accounts", "card-push", "refusal-key", "id=\"passes\"",
                   "data-refresh-seconds"):  # fmt: skip
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
    # (The providers' table: one aggregate over the live tasks and the providers' rows.)
    assert len(large) == len(small) <= 14


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
    assert {s["order_id"] for s in overview.starved_orders(now=later)} == {
        short.pk, paused.pk, done.pk, stale.pk
    }  # fmt: skip
    orders_pause(order_ids=[paused.pk], now=T0)
    type(done).objects.filter(pk=done.pk).update(status="completed")
    type(stale).objects.filter(pk=stale.pk).update(next_run_at=T0 + timedelta(days=1))
    OrderPassStats.objects.filter(order_id=stale.pk).update(
        last_pass_at=T0 - overview.STARVED_WINDOW
    )
    assert [s["order_id"] for s in overview.starved_orders(now=later)] == [short.pk]
    assert overview.short_of_accounts(now=later).count() == 1


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
    accounts_deactivate(account_ids=list(TelegramAccount.objects.values_list("pk", flat=True)),
                        now=T0)  # fmt: skip
    counts = farm.refresh_account_counts(now=T0 + timedelta(seconds=10))
    assert (counts.inactive, counts.cooling, counts.capped) == (1, 0, 0)


def test_a_pass_reads_the_successes_since_the_last_one_not_the_days(settings, redis_client):
    """Cooling and capped come from what Redis counts, read for the accounts that succeeded
    since the last pass: a pass never re-reads the day's successes (an account capped by a
    success before the last pass is not looked at again, whatever Redis says of it now)."""
    from telegram_tasks.claims import keys
    from telegram_tasks.claims.operations import local_day

    settings.TELEGRAM_TASKS = {
        **settings.TELEGRAM_TASKS,
        "ACTIONS": {"view": {"cooldown": 30, "daily_cap": 2}},
    }
    first, second = make_accounts(2)
    for post, at in ((5, T0), (6, T0 + timedelta(minutes=2))):
        make_order(action="view", link=f"t.me/durov/{post}", quantity=1)
        tasks_generate(limit=10, now=at)
        [task] = tasks_pull(limit=10, now=at).tasks
        report(ReportIn(task["task_id"], "done"), now=at)
    worked = {t.telegram_account_id for t in TelegramTask.objects.filter(status="done")}
    counts = farm.refresh_account_counts(now=T0 + timedelta(minutes=2, seconds=5))
    assert counts.cooling == 1 and counts.capped == 0  # one cap count of 2 each at most
    by_time = sorted(
        worked, key=lambda a: TelegramTask.objects.get(telegram_account_id=a).finished_at
    )
    older, newer = by_time
    # The account whose success is older than the last pass gets a full cap in Redis behind the
    # services' back: the next pass does not read it again, so it is not counted.
    redis_client.set(keys.cap(older, "view", local_day(T0)), 2)
    later = T0 + timedelta(minutes=3)
    assert farm.refresh_account_counts(now=later).capped == 0
    # A new success (the other account's second) is read: it reaches the cap and counts.
    make_order(action="view", link="t.me/durov/7", quantity=1)
    TelegramAccount.objects.filter(pk=older).update(is_active=False)
    tasks_generate(limit=10, now=later)
    [task] = tasks_pull(limit=10, now=later).tasks
    report(ReportIn(task["task_id"], "done"), now=later)
    TelegramAccount.objects.filter(pk=older).update(is_active=True)
    assert farm.refresh_account_counts(now=later + timedelta(seconds=1)).capped == 1
    assert farm.limited_accounts(now=later + timedelta(seconds=1))[1] == {newer}
    del first, second


def test_a_starved_order_links_to_the_order_models_own_admin_page(admin_client, monkeypatch):
    """The order model is the project's (ORDER_MODEL): its admin page, if it has one."""
    from django.contrib import admin

    from telegram_tasks.conf import get_order_model

    make_accounts(1)
    orders = [make_order(action="subscribe", link=f"t.me/hungry{n}", quantity=3) for n in (1, 2)]
    tasks_generate(limit=20, now=timezone.now())
    starved = [s["order_id"] for s in overview.starved_orders(now=timezone.now())]
    assert starved and set(starved) <= {o.pk for o in orders}
    html = admin_client.get(URL).content.decode()
    for pk in starved:
        assert f'href="/admin/orders/order/{pk}/change/"' in html
    monkeypatch.delitem(admin.site._registry, get_order_model())
    page = admin_client.get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    assert f"#{starved[0]}" in html and "/admin/orders/order/" not in html


def _listed(admin_client, url: str) -> int:
    response = admin_client.get(url)
    assert response.status_code == 200, url
    return response.context["cl"].result_count


def test_every_count_opens_the_list_of_those_very_rows(admin_client):
    """The dashboard's numbers and the lists they link to agree: the queue per action (due,
    queued), leases running and run out, pending, done and failed in the range (per action, and
    per failure reason), each with the window the rollup counted."""
    now = timezone.now()
    before = now - timedelta(minutes=6)
    make_accounts(8)
    make_order(action="view", link="t.me/durov/5", quantity=8)
    tasks_generate(limit=50, now=before)
    tasks = tasks_pull(limit=50, now=before).tasks
    earlier = now - timedelta(minutes=5)
    report(*[ReportIn(t["task_id"], "done") for t in tasks[:3]], now=earlier)
    report(ReportIn(tasks[3]["task_id"], "failed", error_code="SOMETHING"), now=earlier)
    report(ReportIn(tasks[4]["task_id"], "failed", error_code="USER_DEACTIVATED"), now=earlier)
    report(ReportIn(tasks[5]["task_id"], "pending"), now=earlier)
    # tasks[6:]: their leases ran out at before + 60 s. Queued work, due now and later:
    make_order(action="subscribe", link="t.me/durov", quantity=3)
    make_order(
        action="subscribe", link="t.me/later", quantity=2, next_run_at=now + timedelta(hours=1)
    )
    tasks_generate(limit=50, now=now - timedelta(seconds=1))
    rollup.rollup(now=now)

    page = admin_client.get(URL, {"range": "1h"}).context
    pairs = [(page["totals"]["done"], page["totals"]["done_url"]),
             (page["totals"]["failed"], page["totals"]["failed_url"]),
             (page["board"].leases_expired, page["leases_urls"]["expired"]),
             (page["board"].pending, page["leases_urls"]["pending"])]  # fmt: skip
    pairs += [(q["queue"].due, q["due_url"]) for q in page["queues"]]
    pairs += [(q["queue"].queued, q["queued_url"]) for q in page["queues"]]
    pairs += [(a["done"], a["done_url"]) for a in page["actions"]]
    pairs += [(a["failed"], a["failed_url"]) for a in page["actions"]]
    pairs += [(f["count"], f["url"]) for f in page["failures"]]
    counts = [count for count, _ in pairs]
    assert counts[:4] == [3, 2, 2, 1] and len(page["failures"]) == 2, counts
    for count, url in pairs:
        assert _listed(admin_client, url) == count, url
    # The live leases: running ones, none (all ran out or ended).
    assert _listed(admin_client, page["leases_urls"]["live"]) == page["board"].leases_live == 0


def test_the_range_shows_the_recent_work_by_default_and_the_choice_is_kept(admin_client):
    now = timezone.now()
    assert activity.default_range(now=now) == "1h"  # nothing done yet

    def counted(at):
        TaskHour.objects.create(hour=at.replace(minute=0, second=0, microsecond=0),
                                action="view", outcome="done", count=1,
                                provider_id=default_provider_id())  # fmt: skip
        TaskMinute.objects.create(minute=at.replace(second=0, microsecond=0),
                                  action="view", outcome="done", count=1)  # fmt: skip

    counted(now - timedelta(minutes=20))
    assert activity.default_range(now=now) == "1h"
    counted(now - timedelta(hours=3))
    assert activity.default_range(now=now) == "6h"
    TaskHour.objects.create(
        hour=now - timedelta(hours=30), action="view", outcome="done", count=1,
        provider_id=default_provider_id(),
    )  # fmt: skip
    assert activity.default_range(now=now) == "48h"
    assert admin_client.get(URL).context["board"].activity.range.key == "48h"
    chosen = admin_client.get(URL, {"range": "6h"})
    assert chosen.context["board"].activity.range.key == "6h"
    assert admin_client.get(URL).context["board"].activity.range.key == "6h"  # kept (cookie)
    assert admin_client.get(URL, {"range": "nonsense"}).status_code == 200


def test_buckets_of_each_range_and_their_windows():
    now = datetime(2026, 3, 10, 12, 34, 56, tzinfo=UTC)
    RollupMark.objects.create(pk=1, finished_until=now - timedelta(minutes=2))
    TaskMinute.objects.create(minute=now.replace(second=0) - timedelta(minutes=4), action="view",
                              outcome="failed", reason="flood_wait", count=3)  # fmt: skip
    six = activity.activity(range_key="6h", now=now)
    assert len(six.buckets) == 72 and six.buckets[-1] == datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
    assert six.failed == {("view", "flood_wait"): [0] * 71 + [3]}
    assert six.window(71) == (six.buckets[-1], now - timedelta(minutes=2))  # as counted
    assert six.counted_buckets == 72
    week = activity.activity(range_key="7d", now=now)
    assert len(week.buckets) == 56 and week.buckets[1] - week.buckets[0] == timedelta(hours=3)


def test_the_rollup_keeps_minutes_a_few_hours(now_worked):
    rollup.rollup(now=now_worked + timedelta(minutes=5))
    assert TaskMinute.objects.filter(outcome="done").count() == 1
    rollup.rollup(now=now_worked + rollup.MINUTES_KEPT + timedelta(minutes=5))
    assert not TaskMinute.objects.exists()
    assert TaskHour.objects.filter(outcome="done").count() == 1  # hours stay


def test_a_starved_order_shows_its_last_hour_against_the_hour_before():
    """Slots starved per ten minutes, kept two hours in the order's pass record: the last hour
    against the hour before (no account at all: every slot of every pass starves)."""
    from telegram_tasks.services.pass_stats import starved_bucket

    order = make_order(action="subscribe", link="t.me/starving", quantity=4)
    at = datetime(2026, 3, 10, 12, 5, tzinfo=UTC)
    for minutes in (0, 70, 80):  # more than an hour ago, then twice within the hour
        tasks_generate(limit=20, now=at + timedelta(minutes=minutes))
    [s] = overview.starved_orders(now=at + timedelta(minutes=85))
    assert (s["order_id"], s["starved_slots"]) == (order.pk, 4)
    assert s["per_ten_minutes"] == [0, 0, 4, 0, 0, 0, 0, 0, 0, 4, 4, 0]
    assert (s["last_hour"], s["hour_before"]) == (8, 4)
    # Three hours on, the buckets older than two hours are gone from the record.
    later = at + timedelta(hours=3)
    tasks_generate(limit=20, now=later)
    recent = OrderPassStats.objects.get(order_id=order.pk).starved_recent
    kept = [at + timedelta(minutes=70), at + timedelta(minutes=80), later]
    assert recent == {str(starved_bucket(t)): 4 for t in kept}
