"""The one completion path, called directly with ``now``: done commits and counts once, failed
rolls back, a wait requeues, pending parks; refusals are domain errors."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import TestCase

from orders.models import Order
from telegram_tasks import claims
from telegram_tasks.claims import keys
from telegram_tasks.exceptions import TaskConflict, TaskNotFound
from telegram_tasks.models import TelegramTask
from telegram_tasks.services import ReportIn, tasks_generate, tasks_pull, tasks_report
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def report(*reports, now=T0):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return tasks_report(reports=list(reports), now=now)


@pytest.fixture
def leased():
    make_accounts(3)
    order = make_order(action="view", link="t.me/durov/7", quantity=3)
    tasks_generate(limit=10, now=T0)
    return order, tasks_pull(limit=10, now=T0).tasks


def test_done_commits_once_and_takes_units_off_the_order(leased, redis_client):
    order, tasks = leased
    [out] = report(ReportIn(tasks[0]["task_id"], "done"))
    assert (out.ok, out.status, out.duplicate) == (True, "done", False)
    [again] = report(ReportIn(tasks[0]["task_id"], "done"), now=T0 + timedelta(seconds=5))
    assert (again.status, again.duplicate) == ("done", True)
    order.refresh_from_db()
    assert order.remains == 2 and order.status == Order.Status.IN_PROGRESS
    task = TelegramTask.objects.get(pk=tasks[0]["task_id"])
    assert task.finished_at == T0  # when COMMIT counted it, not the duplicate's time
    account = task.telegram_account_id
    assert int(redis_client.get(keys.cap(account, "view", claims.operations.local_day(T0)))) == 1


def test_last_done_completes_the_order(leased):
    order, tasks = leased
    report(*[ReportIn(t["task_id"], "done") for t in tasks])
    order.refresh_from_db()
    assert (order.remains, order.status) == (0, Order.Status.COMPLETED)


def test_failed_ends_the_task_and_frees_the_account(leased, redis_client, redis_prefix):
    _, tasks = leased
    [out] = report(ReportIn(tasks[0]["task_id"], "failed", error_code="SOMETHING"))
    assert out.status == "failed"
    task = TelegramTask.objects.get(pk=tasks[0]["task_id"])
    assert (task.status, task.failure_reason, task.last_error) == (
        "failed",
        "provider_failed",
        "SOMETHING",
    )
    assert not redis_client.exists(keys.lock(task.telegram_account_id, "view"))


def test_failed_with_retry_after_requeues_on_the_same_account(leased):
    _, tasks = leased
    [out] = report(ReportIn(tasks[0]["task_id"], "failed", retry_after=30))
    assert out.status == "queued"
    task = TelegramTask.objects.get(pk=tasks[0]["task_id"])
    assert task.status == "queued" and task.available_at == T0 + timedelta(seconds=30)
    assert tasks_pull(limit=10, now=T0 + timedelta(seconds=29)).tasks == []
    [again] = tasks_pull(limit=10, now=T0 + timedelta(seconds=30)).tasks
    assert again["task_id"] == task.pk and again["attempt"] == 1


def test_pending_parks_until_the_final_report(leased):
    _, tasks = leased
    [out] = report(ReportIn(tasks[0]["task_id"], "pending", provider_task_id="p-1"))
    assert out.status == "pending"
    assert TelegramTask.objects.get(pk=tasks[0]["task_id"]).provider_task_id == "p-1"
    [done] = report(ReportIn(tasks[0]["task_id"], "done"), now=T0 + timedelta(seconds=100))
    assert done.status == "done"


def test_refusals_are_domain_errors_and_change_nothing(leased):
    _, tasks = leased
    missing = "0" * 26
    stale = ReportIn(tasks[0]["task_id"], "failed", lease_id="01ARZ3NDEKTSV4RRFFQ69G5FAV")
    outs = report(ReportIn(missing, "done"), stale)
    assert isinstance(outs[0].error, TaskNotFound)
    assert isinstance(outs[1].error, TaskConflict) and outs[1].error.code == "stale_lease"
    assert TelegramTask.objects.get(pk=tasks[0]["task_id"]).status == "leased"


def test_a_task_never_handed_out_cannot_be_reported():
    make_accounts(1)
    make_order(action="view", link="t.me/durov/7", quantity=1)
    tasks_generate(limit=10, now=T0)
    [out] = report(ReportIn(TelegramTask.objects.get().pk, "done"))
    assert isinstance(out.error, TaskConflict) and out.error.code == "task_not_leased"
    assert TelegramTask.objects.get().status == "queued"


def test_a_batch_reporting_one_task_twice_counts_it_once(leased):
    order, tasks = leased
    outs = report(ReportIn(tasks[0]["task_id"], "done"), ReportIn(tasks[0]["task_id"], "done"))
    assert [o.duplicate for o in outs] == [False, True]
    order.refresh_from_db()
    assert order.remains == 2
