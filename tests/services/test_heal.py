"""The ledger heals Redis: partial losses (the last writes of a crash or a failover, the
marker surviving) are repaired by the next housekeeping pass; a Redis that went back further
than the window is rebuilt whole."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import TestCase

from telegram_tasks import claims
from telegram_tasks.claims import keys
from telegram_tasks.claims.operations import local_day
from telegram_tasks.models import ClaimsCheckpoint, TelegramAccount, TelegramTask
from telegram_tasks.services import (
    ReportIn,
    tasks_generate,
    tasks_housekeep,
    tasks_pull,
    tasks_report,
)
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def housekeep(now):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return tasks_housekeep(now=now)


def test_the_last_writes_redis_lost_come_back_within_one_pass(redis_client):
    [account] = make_accounts(1)
    view = make_order(action="view", link="t.me/durov/7", quantity=1)
    make_order(action="subscribe", link="t.me/durov", quantity=1)
    tasks_generate(limit=10, now=T0)
    tasks = tasks_pull(limit=10, now=T0).tasks
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_report(reports=[ReportIn(t["task_id"], "done") for t in tasks], now=T0)
    lost = [
        keys.cooldown(account.id, "view"),
        keys.cap(account.id, "view", local_day(T0)),
        keys.dedupe(account.id, "view", view.link_hash, 7),
        keys.state(account.id, TelegramTask.objects.get(action="subscribe").link_hash),
        keys.cooldown(account.id, "subscribe"),
    ]
    before = {k: redis_client.get(k) for k in lost}
    assert all(before.values())
    redis_client.delete(*lost)  # the marker survives: nothing would notice
    summary = housekeep(T0 + timedelta(seconds=2))
    assert summary.healed >= len(lost) and not summary.rebuilt
    assert {k: redis_client.get(k) for k in lost} == before


def test_a_lost_lock_of_a_queued_task_is_restored_or_its_task_ends(redis_client):
    make_accounts(2)
    make_order(action="view", link="t.me/durov/7", quantity=1)
    make_order(action="view", link="t.me/durov/8", quantity=1)
    tasks_generate(limit=10, now=T0)
    first, second = TelegramTask.objects.order_by("telegram_account_id")
    redis_client.delete(keys.lock(first.telegram_account_id, "view"))
    redis_client.delete(keys.lock(second.telegram_account_id, "view"))
    # Meanwhile another task took the second account's lock.
    claims.reserve(
        claims.Claim(second.telegram_account_id, "view", claims.Target("z" * 64), "intruder"),
        now=T0,
    )
    housekeep(T0 + timedelta(seconds=1))
    assert redis_client.hget(keys.lock(first.telegram_account_id, "view"), "token") == (
        first.pk.encode()
    )
    # An intruder that is no live task is no conflict: the second keeps its status.
    assert TelegramTask.objects.get(pk=second.pk).status == "queued"


def test_a_queued_task_whose_lock_another_live_task_took_ends(redis_client):
    [account] = make_accounts(1)
    make_order(action="view", link="t.me/durov/7", quantity=1)
    tasks_generate(limit=10, now=T0)
    lost = TelegramTask.objects.get()
    redis_client.delete(keys.lock(account.id, "view"))  # lost in a failover
    make_order(action="view", link="t.me/durov/8", quantity=1)
    # Generation ran before housekeeping: the account looked free and got a second view task.
    tasks_generate(limit=10, now=T0 + timedelta(seconds=1))
    assert TelegramTask.objects.filter(status="queued").count() == 2
    assert housekeep(T0 + timedelta(seconds=2)).ended["lock_lost"] == 1
    assert TelegramTask.objects.get(pk=lost.pk).failure_reason == "lock_lost"
    assert TelegramTask.objects.filter(status="queued").count() == 1


def test_holds_come_back_from_the_ledger(redis_client):
    [account] = make_accounts(1)
    TelegramAccount.objects.update(held_until=T0 + timedelta(hours=1))
    housekeep(T0)
    assert int(redis_client.get(keys.hold(account.id))) == int(
        (T0 + timedelta(hours=1)).timestamp() * 1000
    )


def test_a_redis_gone_back_further_than_the_window_is_rebuilt(redis_client, redis_prefix):
    [account] = make_accounts(1)
    make_order(action="view", link="t.me/durov/7", quantity=1)
    tasks_generate(limit=10, now=T0)
    housekeep(T0)  # heartbeat written to Redis and the ledger
    later = T0 + timedelta(minutes=30)
    # Redis restored from a snapshot taken before the task was reserved (marker kept).
    redis_client.delete(keys.lock(account.id, "view"))
    redis_client.set(keys.heartbeat(), int((T0 - timedelta(minutes=10)).timestamp() * 1000))
    TelegramTask.objects.update(reserved_until=later + timedelta(minutes=1))
    assert housekeep(later).rebuilt
    assert redis_client.exists(keys.lock(account.id, "view"))
    assert ClaimsCheckpoint.objects.get().heartbeat_at == later


def pretend_redis_restarted():
    """The ledger last saw another run of Redis: it restarted, or failed over, since."""
    ClaimsCheckpoint.objects.filter(pk=1).update(nodes={"redis": "an earlier run"})


def view_done(account_count=1):
    accounts = make_accounts(account_count)
    order = make_order(action="view", link="t.me/durov/7", quantity=1)
    tasks_generate(limit=10, now=T0)
    tasks = tasks_pull(limit=10, now=T0).tasks
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_report(reports=[ReportIn(t["task_id"], "done") for t in tasks], now=T0)
    return accounts, order


def test_a_pass_with_nothing_lost_reads_nothing_of_the_recent_ledger(redis_client):
    """Writes are lost only at a restart or a failover, which change the server's run id:
    with the same run, heal costs an INFO and re-reads none of the recent successes."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    [account], order = view_done()
    housekeep(T0 + timedelta(seconds=1))  # the servers' runs recorded
    dedupe = keys.dedupe(account.id, "view", order.link_hash, 7)
    redis_client.delete(dedupe)  # (not a loss Redis can have without a restart)
    with CaptureQueriesContext(connection) as queries:
        summary = housekeep(T0 + timedelta(seconds=2))
    assert summary.healed == 0 and not redis_client.exists(dedupe)
    assert not [q["sql"] for q in queries if "done_at FROM telegram_one_shots" in q["sql"]]
    pretend_redis_restarted()
    assert housekeep(T0 + timedelta(seconds=3)).healed >= 1
    assert redis_client.exists(dedupe)


def test_a_task_reserved_against_the_lost_state_ends_when_heal_repairs_it(redis_client):
    """Redis crashed and came back without its last second: the view just done lost its dedupe
    key, and the next pass gave the same account the same post again. The first housekeeping
    pass after the restart restores the key and ends that task (its success would be a second
    view), giving its lock back."""
    [account], _ = view_done()
    housekeep(T0 + timedelta(seconds=1))
    redis_client.delete(keys.dedupe(account.id, "view", TelegramTask.objects.get().link_hash, 7))
    pretend_redis_restarted()
    make_order(action="view", link="t.me/durov/7", quantity=1)
    assert tasks_generate(limit=10, now=T0 + timedelta(seconds=10)).created == 1
    second = TelegramTask.objects.get(status="queued")
    summary = housekeep(T0 + timedelta(seconds=11))
    assert summary.ended["claims_conflict"] == 1
    second.refresh_from_db()
    assert (second.status, second.failure_reason) == ("failed", "claims_conflict")
    assert not redis_client.exists(keys.lock(account.id, "view"))
    # Tasks the repaired state still grants keep running.
    make_order(action="view", link="t.me/durov/8", quantity=1)
    tasks_generate(limit=10, now=T0 + timedelta(seconds=20))
    pretend_redis_restarted()
    assert housekeep(T0 + timedelta(seconds=21)).ended["claims_conflict"] == 0
    assert TelegramTask.objects.filter(status="queued").count() == 1
