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


@pytest.mark.django_db(transaction=True)
def test_syncs_and_reports_deactivating_the_same_accounts_never_deadlock():
    """Sync switches accounts off (accounts, then their tasks) while failure reports deactivate
    the same accounts (their tasks, then the accounts): one lock order, no deadlock."""
    import logging

    from telegram_tasks.services import ReportIn, tasks_pull, tasks_report
    from tests.concurrency import run_concurrently

    accounts = make_accounts(12)
    for i in range(4):
        make_order(action="view", link=f"t.me/deadlockchan{i}/1", quantity=12)
    tasks_generate(limit=100, now=T0)
    leased = tasks_pull(limit=24, now=T0).tasks
    records: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Catch(level=logging.WARNING)
    logging.getLogger("telegram_tasks").addHandler(handler)
    ids = [a.provider_account_id for a in accounts]

    def work(i):
        if i % 2 == 0:
            for _ in range(3):
                accounts_sync(
                    items=[{"provider_account_id": p, "is_active": False} for p in ids], now=T0
                )
                accounts_sync(
                    items=[{"provider_account_id": p, "is_active": True} for p in ids], now=T0
                )
            return "sync"
        mine = leased[i // 2 :: 3]
        tasks_report(
            reports=[
                ReportIn(t["task_id"], "failed", error_code="AUTH_KEY_UNREGISTERED") for t in mine
            ],
            now=T0,
        )
        return "report"

    try:
        run_concurrently(work, threads=6)
    finally:
        logging.getLogger("telegram_tasks").removeHandler(handler)
    assert not [r for r in records if "not applied" in r.getMessage()]
