"""A task's hand-out history (``TelegramTask.handouts``), written by the statements that lease,
end, requeue, release and park hand-outs: each lease with when, how it ended and the error, a
FLOOD_WAIT before a later success included; still one statement per pull and per report."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from telegram_tasks import selectors
from telegram_tasks.failures import Reason
from telegram_tasks.models import ExecutionMode, TelegramTask
from telegram_tasks.services import (
    LeaseRef,
    ReportIn,
    handouts,
    tasks_fail,
    tasks_generate,
    tasks_housekeep,
    tasks_pull,
    tasks_release,
    tasks_report,
    tasks_requeue,
)
from telegram_tasks.services.dispatch import Unreachable, push_retry_later
from telegram_tasks.services.pull import lease_tasks
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def report(*reports, now):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return tasks_report(reports=list(reports), now=now)


def history(task_id: str) -> list[selectors.Handout]:
    return selectors.task_handouts(TelegramTask.objects.get(pk=task_id))


@pytest.fixture
def one():
    make_accounts(1)
    make_order(action="view", link="t.me/durov/7", quantity=1)
    tasks_generate(limit=10, now=T0)
    [task] = tasks_pull(limit=10, now=T0).tasks
    return task


def test_a_flood_wait_before_a_success_is_kept(one):
    [out] = report(ReportIn(one["task_id"], "failed", error_code="FLOOD_WAIT_30"), now=T0)
    assert out.status == "queued"
    later = T0 + timedelta(seconds=60)
    [again] = tasks_pull(limit=10, now=later).tasks
    report(ReportIn(again["task_id"], "done"), now=later + timedelta(seconds=2))

    first, second = history(one["task_id"])
    assert (first.number, first.lease_id, first.leased_at) == (1, one["lease_id"], T0)
    assert (first.end, first.ended_at, first.error) == (handouts.RETRY, T0, "FLOOD_WAIT_30")
    assert (second.lease_id, second.leased_at) == (again["lease_id"], later)
    assert (second.end, second.ended_at) == (handouts.DONE, later + timedelta(seconds=2))


def test_a_lease_that_ran_out_ends_expired_when_it_ran_out(one):
    ran_out = T0 + timedelta(seconds=61)
    [again] = tasks_pull(limit=10, now=ran_out).tasks
    first, second = history(one["task_id"])
    assert (first.end, first.ended_at) == (handouts.EXPIRED, T0 + timedelta(seconds=60))
    assert (second.lease_id, second.leased_at, second.end) == (again["lease_id"], ran_out, "")


def test_a_failed_report_keeps_the_providers_error(one):
    report(ReportIn(one["task_id"], "failed", error_code="CHANNEL_PRIVATE"), now=T0)
    [h] = history(one["task_id"])
    assert (h.end, h.error) == (handouts.FAILED, "CHANNEL_PRIVATE")


def test_pending_then_done_is_one_hand_out(one):
    report(ReportIn(one["task_id"], "pending"), now=T0 + timedelta(seconds=5))
    report(ReportIn(one["task_id"], "done"), now=T0 + timedelta(seconds=9))
    [h] = history(one["task_id"])
    assert h.pending_at == T0 + timedelta(seconds=5)
    assert (h.end, h.ended_at) == (handouts.DONE, T0 + timedelta(seconds=9))


def test_an_operators_requeue_and_a_providers_release_are_told_apart(one):
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_requeue(task_ids=[one["task_id"]], now=T0 + timedelta(seconds=1))
    [again] = tasks_pull(limit=10, now=T0 + timedelta(seconds=2)).tasks
    tasks_release(
        leases=[LeaseRef(again["task_id"], again["lease_id"])], now=T0 + timedelta(seconds=3)
    )
    first, second = history(one["task_id"])
    assert (first.end, second.end) == (handouts.REQUEUED, handouts.RELEASED)


def test_an_end_by_the_broker_names_its_reason_and_an_ended_hand_out_is_not_rewritten(one):
    report(ReportIn(one["task_id"], "failed", error_code="FLOOD_WAIT_30"), now=T0)
    # Queued again (its hand-out ended as a retry), then failed by an operator while queued.
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_fail(
            reason=Reason.ADMIN_FAILED, task_ids=[one["task_id"]], now=T0 + timedelta(seconds=1)
        )
    [h] = history(one["task_id"])
    assert (h.end, h.error) == (handouts.RETRY, "FLOOD_WAIT_30")


def test_housekeeping_ends_an_abandoned_lease(one):
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_housekeep(now=T0 + timedelta(hours=1))
    [h] = history(one["task_id"])
    assert (h.end, h.error) == (handouts.FAILED, Reason.LEASE_ABANDONED)


def test_a_push_sent_again_is_the_same_hand_out():
    make_accounts(1)
    make_order(action="view", link="t.me/durov/7", quantity=1, execution_mode=ExecutionMode.PUSH)
    tasks_generate(limit=10, now=T0)
    [leased] = lease_tasks(limit=10, now=T0, mode=ExecutionMode.PUSH)
    task = {"task_id": leased.id, "lease_id": TelegramTask.objects.get().lease_id}
    push_retry_later([(task, Unreachable("timeout", sent=False))], now=T0)
    lease_tasks(limit=10, now=T0 + timedelta(seconds=1), mode=ExecutionMode.PUSH)
    [h] = history(leased.id)
    assert (h.lease_id, h.end) == (task["lease_id"], "")


def test_a_task_keeps_its_last_hand_outs_only(one):
    task_id, lease_id = one["task_id"], one["lease_id"]
    at = T0
    for _ in range(handouts.KEEP + 3):
        tasks_release(leases=[LeaseRef(task_id, lease_id)], now=at)
        at += timedelta(seconds=1)
        [t] = tasks_pull(limit=10, now=at).tasks
        lease_id = t["lease_id"]
    kept = history(task_id)
    assert len(kept) == handouts.KEEP
    assert (kept[-1].leased_at, kept[-1].end) == (at, "")
    assert kept[-2].end == handouts.RELEASED


def test_a_pull_and_a_single_report_are_still_one_statement_each():
    make_accounts(5)
    make_order(action="view", link="t.me/durov/7", quantity=5)
    tasks_generate(limit=10, now=T0)
    with CaptureQueriesContext(connection) as pulled:
        tasks = tasks_pull(limit=10, now=T0).tasks
    writes = [q for q in pulled.captured_queries if "UPDATE" in q["sql"]]
    assert len(tasks) == 5 and len(writes) == 1
    with CaptureQueriesContext(connection) as reported:
        report(ReportIn(tasks[0]["task_id"], "done"), now=T0)
    statements = [q for q in reported.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == 1, [q["sql"][:80] for q in statements]
    assert history(tasks[0]["task_id"])[0].end == handouts.DONE
