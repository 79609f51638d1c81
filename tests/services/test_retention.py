"""Retention: old finished tasks go in bounded batches; what a rebuild needs stays."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core import checks
from django.core.management import call_command

from telegram_tasks.models import Membership, OneShot, TelegramTask
from telegram_tasks.services import retention_preview, retention_purge
from tests.factories import make_account, make_order, make_task

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def history():
    account = make_account()
    order = make_order(action="view", link="t.me/durov/1", quantity=100)
    old = NOW - timedelta(days=130)
    for i in range(7):
        make_task(order, account, status="done", finished_at=old + timedelta(minutes=i))
    make_task(order, account, status="failed", finished_at=old)
    recent = make_task(order, account, status="done", finished_at=NOW - timedelta(days=89))
    live = make_task(order, account, status="queued")
    Membership.objects.create(account=account, link_hash="a" * 64, link="x", subscribed_at=old,
                              state="closed", unsubscribed_at=old)  # fmt: skip
    kept = Membership.objects.create(account=account, link_hash="b" * 64, link="y",
                                     subscribed_at=old)  # fmt: skip
    return recent, live, kept


def test_preview_deletes_nothing(history):
    summary = retention_preview(now=NOW)
    assert (summary.tasks, summary.memberships) == (8, 1)
    assert TelegramTask.objects.count() == 10
    out = StringIO()
    call_command("telegram_retention", stdout=out)
    # (The command's clock is today's: every task of the fixture is older than its cutoff.)
    assert out.getvalue().startswith("would delete: cutoff=") and "tasks=9" in out.getvalue()


def test_purge_deletes_old_finished_tasks_in_bounded_batches(history, monkeypatch):
    from telegram_tasks.services import retention

    monkeypatch.setattr(retention, "BATCH", 3)
    recent, live, kept = history
    first = retention_purge(now=NOW, most=5)
    assert (first.tasks, first.memberships) == (5, 1)  # bounded per pass
    rest = retention_purge(now=NOW, most=100)
    assert (rest.tasks, rest.memberships) == (3, 0)
    assert set(TelegramTask.objects.values_list("pk", flat=True)) == {recent.pk, live.pk}
    assert list(Membership.objects.values_list("pk", flat=True)) == [kept.pk]  # open stays


def test_housekeeping_purges(history):
    from django.test import TestCase

    from telegram_tasks.services import tasks_housekeep

    with TestCase.captureOnCommitCallbacks(execute=True):
        assert tasks_housekeep(now=NOW).purged == 8


def test_a_retention_below_the_longest_claim_ttl_is_refused(settings):
    base = settings.TELEGRAM_TASKS
    settings.TELEGRAM_TASKS = {**base, "TASK_RETENTION_DAYS": 30}
    assert "telegram_tasks.E040" in {e.id for e in checks.run_checks()}
    short = {**base, "STATE_TTL_SECONDS": 86400, "DEDUPE_TTL_SECONDS": 86400}
    settings.TELEGRAM_TASKS = {**short, "TASK_RETENTION_DAYS": 2}
    assert "telegram_tasks.E040" not in {e.id for e in checks.run_checks()}
    # Today's cap counts need the last two days, whatever the TTLs.
    settings.TELEGRAM_TASKS = {**short, "TASK_RETENTION_DAYS": 1}
    assert "telegram_tasks.E040" in {e.id for e in checks.run_checks()}
    # A tier's account-wide cooldown of five days needs five.
    tiers = {"default": {"account_cooldown": 5 * 86400}}
    settings.TELEGRAM_TASKS = {**short, "TASK_RETENTION_DAYS": 4, "TIERS": tiers}
    assert "telegram_tasks.E040" in {e.id for e in checks.run_checks()}


def test_one_shots_outlive_their_tasks_and_go_with_their_ttl():
    """A view's dedupe fact stays after retention deleted its task, until DEDUPE_TTL."""
    account = make_account()
    fresh = OneShot.objects.create(account=account, action="view", link_hash="a" * 64,
                                   post_id=1, done_at=NOW - timedelta(days=89))  # fmt: skip
    OneShot.objects.create(account=account, action="view", link_hash="b" * 64, post_id=1,
                           done_at=NOW - timedelta(days=91))  # fmt: skip
    assert retention_preview(now=NOW).one_shots == 1
    assert retention_purge(now=NOW, most=100).one_shots == 1
    assert list(OneShot.objects.values_list("pk", flat=True)) == [fresh.pk]


def test_closed_memberships_are_kept_for_the_state_ttl(settings):
    """With a retention shorter than STATE_TTL (allowed by hand, below the system check), a
    closed membership (the unsubscribed state a rebuild restores) stays until the state's
    TTL."""
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "TASK_RETENTION_DAYS": 30}
    account = make_account()
    at = NOW - timedelta(days=60)
    Membership.objects.create(account=account, link_hash="a" * 64, link="x", subscribed_at=at,
                              state="closed", unsubscribed_at=at)  # fmt: skip
    done = make_task(make_order(action="view", link="t.me/durov/1"), account, status="done",
                     finished_at=at)  # fmt: skip
    summary = retention_purge(now=NOW, most=100)
    assert (summary.tasks, summary.memberships) == (1, 0)
    assert not TelegramTask.objects.filter(pk=done.pk).exists()
    assert Membership.objects.count() == 1


def test_a_membership_a_task_still_names_stays_until_the_task_goes():
    """A closed membership whose task is still kept (finished later, or not purged yet: each
    pass deletes a bounded batch) waits for it: the task's reference must not break."""
    account = make_account()
    old = NOW - timedelta(days=130)
    membership = Membership.objects.create(account=account, link_hash="a" * 64, link="x",
                                           subscribed_at=old, state="closed",
                                           unsubscribed_at=old)  # fmt: skip
    order = make_order(action="unsubscribe", link="t.me/durov")
    task = make_task(order, account, status="done", finished_at=NOW - timedelta(days=1))
    TelegramTask.objects.filter(pk=task.pk).update(membership=membership)
    assert retention_preview(now=NOW).memberships == 0
    assert retention_purge(now=NOW, most=100).memberships == 0
    assert Membership.objects.filter(pk=membership.pk).exists()
    TelegramTask.objects.filter(pk=task.pk).update(finished_at=old)  # now old enough too
    assert retention_purge(now=NOW, most=100).tasks == 1
    retention_purge(now=NOW, most=100)
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_a_batch_stays_bounded_whatever_the_plan(history, monkeypatch):
    """A plan that reads the batch once per row of the table (a nested loop over an IN
    subquery, no materialization) would skip the rows the statement already deleted (SKIP
    LOCKED) and delete the next ones, past the batch and past ``most``: the batch is picked
    once. (The planner's choice follows the statistics: seen on a fresh test database.)"""
    from django.db import connection, transaction

    from telegram_tasks.services import retention

    monkeypatch.setattr(retention, "BATCH", 3)
    with transaction.atomic(), connection.cursor() as cursor:
        for option in ("hashagg", "sort", "hashjoin", "mergejoin", "memoize", "material"):
            cursor.execute(f"SET LOCAL enable_{option} = off")
        assert retention_purge(now=NOW, most=5).tasks == 5
    assert TelegramTask.objects.count() == 10 - 5
