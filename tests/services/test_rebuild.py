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
    """Nothing in the ledger: the marker is set, no rebuild is needed, the pass runs."""
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
