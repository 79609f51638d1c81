"""rebuild_claims: the Redis claim state restored from the ledger."""

import importlib
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import TestCase
from django.utils import timezone

from telegram_tasks import claims
from telegram_tasks.claims import Claim, Target, keys
from telegram_tasks.models import OneShot, TelegramTask
from telegram_tasks.services import (
    ReportIn,
    claims_rebuild,
    claims_restore_if_lost,
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


def _done(account, action, target, token, at):
    claims.reserve(Claim(account.id, action, target, token), now=at)
    claims.commit(Claim(account.id, action, target, token), now=at)


def test_rebuild_restores_what_redis_lost(settings, redis_client, redis_prefix):
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "ACTIONS": {"view": {"daily_cap": 2}}}
    accounts = make_accounts(3)
    sub = make_order(action="subscribe", link="t.me/durov", quantity=5)
    view = make_order(action="view", link="t.me/durov/9", quantity=5)
    now = T0
    tasks_generate(limit=10, now=now)
    leased = tasks_pull(limit=100, now=now).tasks
    by_action = {}
    for t in leased:
        by_action.setdefault(t["action"], []).append(t)
    # One subscribe and two views succeed, on known accounts.
    done = [by_action["subscribe"][0], *by_action["view"][:2]]
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_report(reports=[ReportIn(t["task_id"], "done") for t in done], now=now)
    later = now + timedelta(seconds=10)
    probe = {}
    for t in done:
        account = next(
            a for a in accounts if a.provider_account_id == t["account"]["provider_account_id"]
        )
        order = sub if t["action"] == "subscribe" else view
        probe[(account.id, t["action"])] = Target(order.link_hash, order.post_id)
    before = {k: claims.reserve(Claim(k[0], k[1], v, "probe"), now=later) for k, v in probe.items()}
    assert all(r is not None for r in before.values())
    unfinished = {t["task_id"] for t in leased} - {t["task_id"] for t in done}

    for key in redis_client.scan_iter(match=f"{redis_prefix}*"):
        redis_client.delete(key)  # Redis lost everything (this test's prefix only)
    assert not claims.state_present()
    summary = claims_rebuild(now=later)
    assert claims.state_present()
    assert summary.locks == len(unfinished)
    after = {k: claims.reserve(Claim(k[0], k[1], v, "probe"), now=later) for k, v in probe.items()}
    assert after == before  # the same reservations refused, for the same reasons
    lock_tokens = set(locks(redis_client, redis_prefix).values())
    assert lock_tokens == unfinished


def one_view_done():
    """One account views post 9 of t.me/durov at T0: (the account, the order)."""
    account = make_account()
    order = make_order(action="view", link="t.me/durov/9", quantity=5)
    tasks_generate(limit=10, now=T0)
    [task] = tasks_pull(limit=10, now=T0).tasks
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_report(reports=[ReportIn(task["task_id"], "done")], now=T0)
    return account, order


def test_rebuild_restores_cooldown_cap_state_and_dedupe_values(
    settings, redis_client, redis_prefix
):
    account, order = one_view_done()
    expected = {
        key: redis_client.get(key)
        for key in (
            keys.cooldown(account.id, "view"),
            keys.cap(account.id, "view", claims.operations.local_day(T0)),
            keys.dedupe(account.id, "view", order.link_hash, 9),
        )
    }
    for key in redis_client.scan_iter(match=f"{redis_prefix}*"):
        redis_client.delete(key)
    claims_rebuild(now=T0 + timedelta(seconds=1))
    assert {k: redis_client.get(k) for k in expected} == expected


def test_a_one_shot_success_outlives_its_task(redis_client, redis_prefix):
    """The report records the view in the one-shot ledger; retention deletes the task; a
    rebuild still restores the dedupe key, and the same account is not given the post again."""
    account, order = one_view_done()
    fact = OneShot.objects.get()
    assert (fact.account_id, fact.action, fact.link_hash, fact.post_id, fact.done_at) == (
        account.id, "view", order.link_hash, 9, T0,
    )  # fmt: skip
    # The migration that created the table fills it from done tasks the same way.
    OneShot.objects.all().delete()
    migration = importlib.import_module("telegram_tasks.migrations.0013_one_shots")
    with connection.schema_editor() as editor:
        # (Its window is counted from the database's clock: the task is dated now for it.)
        TelegramTask.objects.update(finished_at=timezone.now())  # the one task
        migration.record_one_shots_of_done_tasks(None, editor)
    assert OneShot.objects.get().post_id == 9
    OneShot.objects.update(done_at=T0)

    TelegramTask.objects.all().delete()  # retention took the task
    for key in redis_client.scan_iter(match=f"{redis_prefix}*"):
        redis_client.delete(key)
    later = T0 + timedelta(days=2)
    assert claims_rebuild(now=later).dedupes == 1
    refusal = claims.reserve(Claim(account.id, "view", Target(order.link_hash, 9), "x"), now=later)
    assert refusal is claims.Refusal.DEDUPE


def test_housekeeping_rebuilds_by_itself(redis_client, redis_prefix):
    make_account()
    make_order(action="view", quantity=1)
    tasks_generate(limit=10, now=T0)
    redis_client.delete(f"{redis_prefix}:marker")
    assert housekeep(T0).rebuilt is True
    assert claims.state_present()


def test_a_fresh_install_generates_without_asking_for_a_rebuild(redis_client, redis_prefix):
    """Nothing in the ledger: the rebuild finds nothing to restore, the pass runs."""
    redis_client.delete(f"{redis_prefix}:marker")
    make_account()
    make_order(action="view", quantity=1)
    assert tasks_generate(limit=10, now=T0).created == 1
    assert claims.state_present()


def test_generation_rebuilds_a_lost_state_before_it_reserves(redis_client, redis_prefix):
    """A ledger with live tasks and a Redis that lost them: the pass rebuilds first, so the
    account whose lock was lost is not reserved a second time for the same action."""
    [account] = make_accounts(1)
    make_order(action="view", link="t.me/durov/1", quantity=1)
    tasks_generate(limit=10, now=T0)
    for key in redis_client.scan_iter(match=f"{redis_prefix}*"):
        redis_client.delete(key)
    make_order(action="view", link="t.me/durov/2", quantity=1)
    summary = tasks_generate(limit=10, now=T0 + timedelta(seconds=1))
    assert summary.created == 0 and summary.refusals == {"locked": 1}
    assert claims.state_present()
    assert redis_client.exists(keys.lock(account.id, "view"))


@pytest.mark.django_db(transaction=True)
def test_concurrent_passes_rebuild_once(redis_client, redis_prefix, monkeypatch):
    from telegram_tasks.services import rebuild
    from tests.concurrency import run_concurrently

    make_accounts(2)
    make_order(action="view", link="t.me/durov/1", quantity=1)
    tasks_generate(limit=10, now=T0)
    redis_client.delete(f"{redis_prefix}:marker")
    calls = []
    real = rebuild.rebuild_from_ledger

    def counted(**kwargs):
        calls.append(1)
        return real(**kwargs)

    monkeypatch.setattr(rebuild, "rebuild_from_ledger", counted)
    run_concurrently(lambda i: rebuild.claims_restore_if_lost(now=T0), threads=4)
    assert len(calls) == 1 and claims.state_present()


def test_rebuild_command(redis_client, redis_prefix):
    from io import StringIO

    redis_client.delete(f"{redis_prefix}:marker")
    out = StringIO()
    call_command("rebuild_claims", stdout=out)
    assert "locks=" in out.getvalue() and claims.state_present()


def test_a_redis_that_restarts_empty_during_a_pass_reserves_nothing(
    redis_client, redis_prefix, monkeypatch
):
    """The pass checked the marker at its start; then Redis restarted empty (redis-py
    reconnects silently). RESERVE checks the marker itself: no one-shot is granted twice."""
    from telegram_tasks.services import generation

    account, order = one_view_done()
    make_order(action="view", link="t.me/durov/9", quantity=1)
    real = generation.claims_restore_if_lost

    def then_restart(*, now):
        real(now=now)
        for key in redis_client.scan_iter(match=f"{redis_prefix}*"):
            redis_client.delete(key)

    monkeypatch.setattr(generation, "claims_restore_if_lost", then_restart)
    later = T0 + timedelta(minutes=5)
    with pytest.raises(claims.ClaimsStateLost):
        tasks_generate(limit=10, now=later)
    assert TelegramTask.objects.filter(status="queued").count() == 0
    assert not redis_client.exists(keys.lock(account.id, "view"))
    monkeypatch.undo()
    # The next pass rebuilds first: the view already done is refused.
    summary = tasks_generate(limit=10, now=later + timedelta(minutes=1))
    assert (summary.created, dict(summary.refusals)) == (0, {"dedupe": 1})
    assert order.pk


def test_a_lost_redis_is_rebuilt_even_when_retention_left_no_task(redis_client, redis_prefix):
    """Retention purged every task after a quiet period; open memberships and running holds
    still matter: a Redis that lost its state is rebuilt from them, so an account already in a
    channel is not sent there again, and its channel count is back."""
    from telegram_tasks.models import Membership, TelegramAccount

    [account] = make_accounts(1)
    make_order(action="subscribe", link="t.me/durov", quantity=1)
    tasks_generate(limit=10, now=T0)
    [task] = tasks_pull(limit=10, now=T0).tasks
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_report(reports=[ReportIn(task["task_id"], "done")], now=T0)
    assert Membership.objects.get().state == "open"
    TelegramTask.objects.all().delete()  # retention
    TelegramAccount.objects.update(held_until=T0 + timedelta(days=1))
    for key in redis_client.scan_iter(match=f"{redis_prefix}*"):
        redis_client.delete(key)
    later = T0 + timedelta(hours=2)
    assert claims_restore_if_lost(now=later) is not None
    assert int(redis_client.get(keys.channels(account.id))) == 1
    assert redis_client.get(keys.state(account.id, Membership.objects.get().link_hash))
    assert redis_client.exists(keys.hold(account.id))
    TelegramAccount.objects.update(held_until=None)
    redis_client.delete(keys.hold(account.id))
    make_order(action="subscribe", link="t.me/durov", quantity=1)
    summary = tasks_generate(limit=10, now=later)
    assert (summary.created, dict(summary.refusals)) == (0, {"gate": 1})


def test_a_rebuild_never_lowers_a_channel_count_a_commit_is_still_writing(
    redis_client, redis_prefix
):
    """A subscribe COMMITted in Redis whose ledger step has not committed yet counts a channel
    the memberships do not show yet: a rebuild (safe at any time) keeps it."""
    [account] = make_accounts(1)
    redis_client.set(keys.channels(account.id), 3)  # two ledger memberships + one on its way
    from telegram_tasks.models import Membership

    for n in range(2):
        Membership.objects.create(
            account=account, link_hash=f"{n:064d}", link=f"https://t.me/c{n}", subscribed_at=T0
        )
    claims_rebuild(now=T0)
    assert int(redis_client.get(keys.channels(account.id))) == 3
    # (A count below the ledger's is raised to it.)
    redis_client.set(keys.channels(account.id), 0)
    claims_rebuild(now=T0)
    assert int(redis_client.get(keys.channels(account.id))) == 2


def test_a_lock_written_for_a_task_that_finished_meanwhile_is_released(
    redis_client, redis_prefix, monkeypatch
):
    """A rebuild reads the live tasks, a report ends one (its ROLLBACK finds no lock: Redis
    lost it), then the rebuild writes that task's lock back: released right after."""
    from telegram_tasks.services import rebuild

    [account] = make_accounts(1)
    make_order(action="view", link="t.me/durov/3", quantity=1)
    tasks_generate(limit=10, now=T0)
    task = TelegramTask.objects.get()
    redis_client.delete(keys.lock(account.id, "view"))
    real = rebuild.restore_locks

    def read_then_the_task_fails(per_account, **kwargs):
        found = real(per_account, **kwargs)
        TelegramTask.objects.filter(pk=task.pk).update(status="failed", finished_at=T0)
        return found

    monkeypatch.setattr(rebuild, "restore_locks", read_then_the_task_fails)
    claims_rebuild(now=T0 + timedelta(seconds=1))
    assert not redis_client.exists(keys.lock(account.id, "view"))
