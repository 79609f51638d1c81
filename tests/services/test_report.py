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


# --- holds, long waits, the last hand-out (hardening) ----------------------------------------


def test_a_held_accounts_reserved_work_waits_or_goes_elsewhere(redis_client):
    """FLOOD_WAIT on one task holds the account off every action: its queued tasks that would
    expire before the hold ends are released to other accounts, and nothing of it (queued or
    a lapsed lease) is handed out until the hold ends."""
    from telegram_tasks.models import TelegramAccount

    [account] = make_accounts(1)
    make_order(action="view", link="t.me/durov/7", quantity=1)
    make_order(action="reaction", link="t.me/durov/8", quantity=1)
    make_order(action="subscribe", link="t.me/durov", quantity=1)
    tasks_generate(limit=10, now=T0)
    sub = TelegramTask.objects.get(action="subscribe")
    TelegramTask.objects.exclude(pk=sub.pk).filter(action="reaction").update(
        available_at=T0 + timedelta(seconds=30)
    )
    leased = tasks_pull(limit=10, now=T0).tasks
    view = next(t for t in leased if t["action"] == "view")
    subscribe = next(t for t in leased if t["action"] == "subscribe")
    [out] = report(ReportIn(subscribe["task_id"], "failed", error_code="FLOOD_WAIT_600"))
    assert out.status == "queued"
    account.refresh_from_db()
    assert account.held_until >= T0 + timedelta(seconds=600)
    reaction = TelegramTask.objects.get(action="reaction")
    assert (reaction.status, reaction.failure_reason) == ("failed", "account_held")
    # The view's lease runs out while the account is held: it is not handed out again.
    assert tasks_pull(limit=10, now=T0 + timedelta(seconds=61)).tasks == []
    assert TelegramTask.objects.get(pk=view["task_id"]).status == "leased"
    TelegramAccount.objects.update(held_until=T0 + timedelta(seconds=60))
    assert {t["task_id"] for t in tasks_pull(limit=10, now=T0 + timedelta(seconds=61)).tasks} == {
        view["task_id"]
    }


def test_an_absurd_flood_wait_fails_the_task_and_frees_the_order(leased, redis_client):
    order, tasks = leased
    [out] = report(ReportIn(tasks[0]["task_id"], "failed", error_code="FLOOD_WAIT_999999999"))
    assert out.status == "failed"
    task = TelegramTask.objects.get(pk=tasks[0]["task_id"])
    assert task.failure_reason == "wait_too_long"
    account = task.telegram_account
    assert account.held_until == T0 + timedelta(seconds=7 * 86400)
    # Nothing of the order waits on it: the unit is free for another account.
    assert TelegramTask.objects.filter(order=order, status__in=["queued", "leased"]).count() == 2


def test_a_done_just_after_the_last_lease_ended_still_counts(settings):
    from telegram_tasks.services import tasks_housekeep

    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "MAX_ATTEMPTS": 1}
    make_accounts(1)
    order = make_order(action="view", link="t.me/durov/7", quantity=1)
    tasks_generate(limit=10, now=T0)
    [task] = tasks_pull(limit=10, now=T0).tasks
    after = T0 + timedelta(seconds=61)  # the last hand-out's lease ended a second ago
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_housekeep(now=after)
    [out] = report(ReportIn(task["task_id"], "done"), now=after)
    assert (out.status, out.duplicate) == ("done", False)
    order.refresh_from_db()
    assert order.remains == 0


@pytest.mark.parametrize(
    ("states", "durable"), [(["done"], False), (["done", "failed"], True), (["failed"], True)]
)
def test_only_a_transaction_of_committed_successes_skips_the_wal_flush(leased, states, durable):
    """Successes are COMMITted in Redis first: if PostgreSQL lost their transaction, the
    markers settle them again (see the next test), so it need not wait for the WAL flush. A
    failure has no such second copy: its transaction waits."""
    from django.db import connection

    _, tasks = leased
    with connection.cursor() as cursor:
        # (The test's one transaction: generation's own setting would still be in force.)
        cursor.execute("SET LOCAL synchronous_commit = on")
    report(*(ReportIn(t["task_id"], s) for t, s in zip(tasks, states, strict=False)))
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert (cursor.fetchone()[0] == "on") is durable


def test_a_success_whose_ledger_step_was_lost_is_settled_once(leased, redis_client):
    """What an asynchronous commit lost to a crash looks like: COMMIT counted the success in
    Redis, the ledger still says leased. The next pull that meets the lapsed lease settles it."""
    from telegram_tasks.claims import Claim, Target

    order, tasks = leased
    task = TelegramTask.objects.get(pk=tasks[0]["task_id"])
    claim = Claim(task.telegram_account_id, task.action, Target(task.link_hash, order.post_id),
                  task.id)  # fmt: skip
    claims.commit(claim, now=T0)
    later = task.leased_until + timedelta(seconds=1)
    with TestCase.captureOnCommitCallbacks(execute=True):
        again = tasks_pull(limit=10, now=later).tasks
    assert task.id not in {t["task_id"] for t in again}
    task.refresh_from_db()
    order.refresh_from_db()
    assert task.status == "done" and task.finished_at == T0
    assert order.remains == order.quantity - 1
