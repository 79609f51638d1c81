"""Housekeeping and rebuild over real PostgreSQL and Redis, time passed as ``now``."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.test import TestCase

from telegram_tasks import claims, services
from telegram_tasks.claims import Claim, Refusal, Target, keys
from telegram_tasks.models import ClaimsCheckpoint, TelegramTask
from telegram_tasks.services import (
    ReportIn,
    tasks_generate,
    tasks_housekeep,
    tasks_pull,
    tasks_report,
)
from tests.factories import make_account, make_accounts, make_order

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def housekeep(now):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return tasks_housekeep(now=now)


def locks(redis_client, prefix):
    return {
        k.decode(): redis_client.hget(k, "token").decode()
        for k in redis_client.scan_iter(match=f"{prefix}:*:lock:*")
    }


def test_queued_task_whose_reservation_lapsed_expires(redis_client, redis_prefix):
    make_account()
    make_order(action="view", quantity=1)
    tasks_generate(limit=10, now=T0)
    task = TelegramTask.objects.get()
    assert housekeep(T0 + timedelta(seconds=119)).ended["expired"] == 0
    summary = housekeep(T0 + timedelta(seconds=120))
    assert summary.ended["expired"] == 1
    task.refresh_from_db()
    assert (task.status, task.failure_reason) == ("failed", "expired")
    assert locks(redis_client, redis_prefix) == {}
    # The order gets a fresh task with a fresh reservation.
    assert tasks_generate(limit=10, now=T0 + timedelta(seconds=121)).created == 1


def test_pull_never_hands_out_a_task_whose_reservation_lapsed(redis_client, redis_prefix):
    """It meets it in its place in the queue and expires it there (as housekeeping would), its
    lock given back once that is committed; the tasks behind it are handed out."""
    make_accounts(2)
    make_order(action="view", link="t.me/durov/1", quantity=1)
    tasks_generate(limit=10, now=T0)
    make_order(action="view", link="t.me/durov/2", quantity=1)
    tasks_generate(limit=10, now=T0 + timedelta(seconds=100))
    with TestCase.captureOnCommitCallbacks(execute=True):
        pulled = tasks_pull(limit=10, now=T0 + timedelta(seconds=121)).tasks
    assert [t["post_id"] for t in pulled] == [2]
    lapsed = TelegramTask.objects.get(order__post_id=1)
    assert (lapsed.status, lapsed.failure_reason) == ("failed", "expired")
    assert set(locks(redis_client, redis_prefix).values()) == {pulled[0]["task_id"]}


def test_attempts_exhausted_keeps_the_last_error(settings, redis_client, redis_prefix):
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "MAX_ATTEMPTS": 2}
    make_account()
    make_order(action="view", quantity=1)
    tasks_generate(limit=10, now=T0)
    now = T0
    for _ in range(2):
        assert len(tasks_pull(limit=10, now=now).tasks) == 1
        now += timedelta(seconds=61)
    TelegramTask.objects.update(last_error="TIMEOUT")
    # The last lease ended at now - 1 s: it gets the same grace as any lease first.
    assert housekeep(now).ended["attempts_exhausted"] == 0
    summary = housekeep(now + timedelta(seconds=120))
    assert summary.ended["attempts_exhausted"] == 1
    failed = TelegramTask.objects.get()
    assert (failed.status, failed.failure_reason, failed.last_error) == (
        "failed",
        "attempts_exhausted",
        "TIMEOUT",
    )
    assert locks(redis_client, redis_prefix) == {}


def test_pending_past_its_ttl_times_out(redis_client, redis_prefix):
    make_account()
    make_order(action="view", quantity=1)
    tasks_generate(limit=10, now=T0)
    [task] = tasks_pull(limit=10, now=T0).tasks
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_report(reports=[ReportIn(task["task_id"], "pending")], now=T0)
    assert housekeep(T0 + timedelta(seconds=3599)).ended["pending_timeout"] == 0
    assert housekeep(T0 + timedelta(seconds=3600)).ended["pending_timeout"] == 1
    assert TelegramTask.objects.get().failure_reason == "pending_timeout"
    assert locks(redis_client, redis_prefix) == {}


def test_a_lapsed_lease_keeps_its_account_until_pulled_again(redis_client, redis_prefix):
    account = make_account()
    make_order(action="view", quantity=1)
    tasks_generate(limit=10, now=T0)
    [task] = tasks_pull(limit=10, now=T0).tasks
    late = T0 + timedelta(seconds=60 + 100)  # the lease is over, its grace (120 s) is not
    summary = housekeep(late)
    assert summary.rearmed == 1
    assert (
        claims.reserve(Claim(account.id, "view", Target("x" * 64), "other"), now=late)
        == Refusal.LOCKED
    )
    [again] = tasks_pull(limit=10, now=late).tasks
    assert again["task_id"] == task["task_id"] and again["attempt"] == 1


def test_an_abandoned_lease_ends_and_frees_its_account(redis_client, redis_prefix):
    account = make_account()
    make_order(action="view", quantity=1)
    tasks_generate(limit=10, now=T0)
    tasks_pull(limit=10, now=T0)
    gone = T0 + timedelta(seconds=60 + 120)
    assert tasks_pull(limit=10, now=gone).tasks == []  # not handed out any more
    assert housekeep(gone).ended["lease_abandoned"] == 1
    assert TelegramTask.objects.get().failure_reason == "lease_abandoned"
    assert locks(redis_client, redis_prefix) == {}
    assert claims.reserve(Claim(account.id, "view", Target("x" * 64), "next"), now=gone) is None


@pytest.mark.parametrize("finder", ["pull", "housekeeping"])
def test_a_commit_whose_ledger_step_was_lost_is_settled(finder, redis_client):
    """COMMIT counted the success, then the process died before the ledger step and the
    provider never retried: the next pull or housekeeping finds the COMMIT and settles it."""
    account = make_account()
    order = make_order(action="view", quantity=2)
    tasks_generate(limit=10, now=T0)
    [task] = tasks_pull(limit=10, now=T0).tasks
    row = TelegramTask.objects.get(pk=task["task_id"])
    claims.commit(
        Claim(account.id, "view", Target(row.link_hash, row.payload["post_id"]), row.pk), now=T0
    )
    later = T0 + timedelta(seconds=61)
    if finder == "pull":
        assert tasks_pull(limit=10, now=later).tasks == []  # never handed out again
    else:
        housekeep(T0 + timedelta(seconds=10))
    row.refresh_from_db()
    assert row.status == "done" and row.finished_at == T0
    order.refresh_from_db()
    assert order.remains == 1
    cap = keys.cap(account.id, "view", claims.operations.local_day(T0))
    assert int(redis_client.get(cap)) == 1  # counted once


def test_sweep_releases_locks_of_tasks_that_ended_while_redis_missed_the_rollback(
    redis_client, redis_prefix, monkeypatch
):
    account = make_account()
    make_order(action="view", quantity=1)
    tasks_generate(limit=10, now=T0)
    housekeep(T0)  # (the ledger's checkpoint exists from the first pass on)
    # Ended in the ledger, but the ROLLBACK after commit met Redis down.
    with monkeypatch.context() as m:
        m.setattr(claims, "rollback_many", _redis_down)
        with TestCase.captureOnCommitCallbacks(execute=True):
            services.tasks_fail(
                reason="admin_failed", now=T0, task_ids=[TelegramTask.objects.get().pk]
            )
    assert ClaimsCheckpoint.objects.get().sweep_from == T0  # noted in the ledger
    assert keys.lock(account.id, "view") in locks(redis_client, redis_prefix)
    assert housekeep(T0 + timedelta(seconds=5)).swept == 1
    assert locks(redis_client, redis_prefix) == {}
    assert ClaimsCheckpoint.objects.get().sweep_from is None


def _redis_down(*args, **kwargs):
    from redis.exceptions import ConnectionError as RedisConnectionError

    raise RedisConnectionError("Redis is down")


def test_a_pass_with_no_skipped_rollback_reads_no_finished_task(django_assert_max_num_queries):
    """The sweep's cost follows the ROLLBACKs Redis missed, not the tasks that finished: a busy
    farm's pass reads none of them."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_accounts(3)
    make_order(action="view", link="t.me/durov/4", quantity=3)
    tasks_generate(limit=10, now=T0)
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_report(
            reports=[ReportIn(t["task_id"], "done") for t in tasks_pull(limit=10, now=T0).tasks],
            now=T0,
        )
    housekeep(T0)
    with CaptureQueriesContext(connection) as queries:
        assert housekeep(T0 + timedelta(seconds=30)).swept == 0
    finished_reads = [
        q["sql"]
        for q in queries
        if "finished_at >" in q["sql"] and "status IN ('done', 'failed')" in q["sql"]
    ]
    assert finished_reads == []


def test_housekeeping_command_prints_every_reason():
    from io import StringIO

    out = StringIO()
    call_command("telegram_housekeeping", stdout=out)
    line = out.getvalue().strip()
    for part in ("attempts_exhausted=", "expired=", "pending_timeout=", "rearmed=", "rebuilt="):
        assert part in line


def test_services_used_by_beat_are_the_same_functions():
    from telegram_tasks import tasks
    from telegram_tasks.management.commands import telegram_housekeeping

    assert (
        tasks.tasks_housekeep is services.tasks_housekeep is telegram_housekeeping.tasks_housekeep
    )
    from django_celery_beat.models import PeriodicTask

    assert PeriodicTask.objects.get(task="telegram_tasks.housekeep").interval.every == 60
    assert services.tasks_fail  # the admin actions' service
