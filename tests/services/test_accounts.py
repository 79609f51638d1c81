"""Account sync and deactivation, called directly with ``now``."""

from datetime import UTC, datetime

import pytest
from django.test import TestCase

from telegram_tasks.exceptions import BatchTooLarge
from telegram_tasks.models import TelegramAccount, TelegramTask
from telegram_tasks.services import (
    accounts_deactivate,
    accounts_sync,
    tasks_generate,
)
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_sync_upserts_and_keeps_fields_left_out():
    accounts_sync(items=[{"provider_account_id": "a", "phone": "+1", "meta": {"x": 1}}], now=T0)
    result = accounts_sync(items=[{"provider_account_id": "a", "is_active": False}], now=T0)
    assert result.synced == 1
    account = TelegramAccount.objects.get(provider_account_id="a")
    assert (account.phone, account.meta, account.is_active) == ("+1", {"x": 1}, False)


def test_sync_refuses_a_batch_too_large(settings):
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "SYNC_MAX_BATCH": 1}
    with pytest.raises(BatchTooLarge):
        accounts_sync(items=[{"provider_account_id": "a"}, {"provider_account_id": "b"}], now=T0)
    assert not TelegramAccount.objects.exists()


def test_deactivation_releases_the_queued_tasks():
    [account] = make_accounts(1)
    make_order(action="view", link="t.me/durov/7", quantity=1)
    tasks_generate(limit=10, now=T0)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert accounts_deactivate(account_ids=[account.id], now=T0) == 1
    task = TelegramTask.objects.get()
    assert (task.status, task.failure_reason) == ("failed", "account_inactive")


# --- deactivation races and lock order (hardening) -----------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_account_deactivated_during_a_pass_is_never_handed_a_task(monkeypatch):
    import threading

    from telegram_tasks import claims
    from telegram_tasks.services import tasks_pull
    from tests.concurrency import run_concurrently

    [account] = make_accounts(1)
    make_order(action="view", link="t.me/durov/9", quantity=1)
    entered, release = threading.Event(), threading.Event()
    real = claims.select_accounts

    def slow_select(**kwargs):
        result = real(**kwargs)  # the account is picked while still active
        entered.set()
        release.wait(10)
        return result

    monkeypatch.setattr(claims, "select_accounts", slow_select)

    def work(i):
        if i == 0:
            return tasks_generate(limit=10, now=T0).created
        entered.wait(10)
        try:
            return accounts_sync(
                items=[{"provider_account_id": account.provider_account_id, "is_active": False}],
                now=T0,
            ).synced
        finally:
            release.set()

    assert run_concurrently(work, threads=2) == [1, 1]
    assert tasks_pull(limit=10, now=T0).tasks == []


def _connect():
    import psycopg
    from django.db import connection

    c = connection.settings_dict
    return psycopg.connect(
        host=c["HOST"], port=c["PORT"] or 5432, user=c["USER"], dbname=c["NAME"],
        password=c["PASSWORD"] or None,
    )  # fmt: skip


def _wait_until_blocked(conn, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        ).fetchone()[0]
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("the service never waited for the lock")


def _free(conn, table, pk) -> bool:
    import psycopg

    try:
        with conn.transaction():
            conn.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE NOWAIT", [pk])  # noqa: S608
        return True
    except psycopg.errors.LockNotAvailable:
        return False


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["sync", "deactivate"])
def test_no_transaction_holds_accounts_while_waiting_for_tasks_or_the_reverse(path):
    """Sync (accounts, then their tasks) and deactivation after a report (which comes from a
    report that locked tasks) never deadlock: neither holds one kind of row while it waits
    for the other."""
    import threading

    [account] = make_accounts(1)
    make_order(action="view", link="t.me/durov/9", quantity=1)
    tasks_generate(limit=10, now=T0)
    task = TelegramTask.objects.get()
    blocker, probe, watch = _connect(), _connect(), _connect()
    watch.autocommit = True
    blocker.execute(
        *(
            ("SELECT 1 FROM telegram_tasks WHERE id = %s FOR UPDATE", [task.pk])
            if path == "sync"
            else ("SELECT 1 FROM telegram_accounts WHERE id = %s FOR UPDATE", [account.id])
        )
    )
    if path == "sync":
        item = {"provider_account_id": account.provider_account_id, "is_active": False}

        def call():
            accounts_sync(items=[item], now=T0)
    else:

        def call():
            accounts_deactivate(account_ids=[account.id], now=T0)

    worker = threading.Thread(target=call)
    worker.start()
    try:
        _wait_until_blocked(watch)
        if path == "sync":  # waiting for the task: the account must not be held meanwhile
            assert _free(probe, "telegram_accounts", account.id)
        else:  # waiting for the account: the task must not be held meanwhile
            assert _free(probe, "telegram_tasks", task.pk)
    finally:
        blocker.rollback()
        worker.join(20)
        for c in (blocker, probe, watch):
            c.close()
    assert TelegramTask.objects.get().failure_reason == "account_inactive"


def test_a_hold_says_why_and_since_when_and_clearing_it_forgets_both():
    from datetime import timedelta

    from telegram_tasks.services import ReportIn, accounts_clear_hold, tasks_pull, tasks_report

    [account] = make_accounts(1)
    make_order(action="view", link="t.me/durov/7", quantity=2)
    make_order(action="subscribe", link="t.me/durov", quantity=1)
    tasks_generate(limit=10, now=T0)
    view, subscribe = sorted(
        tasks_pull(limit=10, now=T0).tasks, key=lambda t: t["action"] != "view"
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_report(reports=[ReportIn(view["task_id"], "failed", error_code="FLOOD_WAIT_60")],
                     now=T0)  # fmt: skip
    account.refresh_from_db()
    assert (account.hold_reason, account.held_since) == ("flood_wait", T0)
    # A longer hold later on: its reason wins, and the hold still runs since the first.
    later = T0 + timedelta(seconds=10)
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_report(reports=[ReportIn(subscribe["task_id"], "failed", error_code="PEER_FLOOD")],
                     now=later)  # fmt: skip
    account.refresh_from_db()
    assert (account.hold_reason, account.held_since) == ("peer_flood", T0)
    assert account.held_until > later + timedelta(hours=23)
    with TestCase.captureOnCommitCallbacks(execute=True):
        accounts_clear_hold(account_ids=[account.pk], now=later)
    account.refresh_from_db()
    assert (account.held_until, account.hold_reason, account.held_since) == (None, "", None)
