"""The shared kernel: no path that ends, re-arms or releases a task loses a counted success."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import TestCase

from telegram_tasks import claims, services
from telegram_tasks.claims import Claim, Target
from telegram_tasks.models import TelegramTask
from telegram_tasks.services import (
    ReportIn,
    tasks_generate,
    tasks_housekeep,
    tasks_pull,
    tasks_report,
)
from tests.factories import make_account, make_order

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


def _committed_without_ledger(account, now=T0):
    order = make_order(action="view", quantity=2)
    tasks_generate(limit=10, now=now)
    [task] = tasks_pull(limit=10, now=now).tasks
    row = TelegramTask.objects.get(pk=task["task_id"])
    claims.commit(
        Claim(account.id, "view", Target(row.link_hash, row.payload["post_id"]), row.pk), now=now
    )
    return order, task, row


@pytest.mark.parametrize("ender", ["admin_fail", "failed_report", "attempts_exhausted", "cancel"])
def test_ending_a_task_whose_commit_happened_settles_it_as_done(ender, settings, redis_client):
    """No path that ends tasks may turn a counted success into a failure."""
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "MAX_ATTEMPTS": 1}
    account = make_account()
    order, _task, row = _committed_without_ledger(account)
    with TestCase.captureOnCommitCallbacks(execute=True):
        if ender == "admin_fail":
            services.tasks_fail(reason="admin_failed", now=T0, task_ids=[row.pk])
        elif ender == "failed_report":
            [out] = tasks_report(reports=[ReportIn(row.pk, "failed", error_code="X")], now=T0)
            assert (out.status, out.duplicate) == ("done", True)
        elif ender == "attempts_exhausted":
            tasks_housekeep(now=T0 + timedelta(seconds=61))
        else:
            from telegram_tasks.services import orders_cancel as order_cancel

            order_cancel(order_ids=[order.pk], now=T0)
    row.refresh_from_db()
    assert row.status == "done" and row.finished_at == T0
    order.refresh_from_db()
    assert order.remains == 1
