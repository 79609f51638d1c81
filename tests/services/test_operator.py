"""What an operator does, called directly with ``now``: fail, requeue, cancel, pause, resume,
stop."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import TestCase

from orders.models import Order
from telegram_tasks.models import TelegramTask
from telegram_tasks.services import (
    orders_cancel,
    orders_pause,
    orders_resume,
    orders_stop,
    tasks_fail,
    tasks_generate,
    tasks_pull,
    tasks_requeue,
)
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def order():
    make_accounts(3)
    order = make_order(action="view", link="t.me/durov/7", quantity=3)
    tasks_generate(limit=10, now=T0)
    return order


def statuses():
    return sorted(TelegramTask.objects.values_list("status", "failure_reason"))


def test_fail_by_id_and_requeue(order, redis_client):
    [a, b, _c] = tasks_pull(limit=10, now=T0).tasks
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert tasks_fail(reason="admin_failed", now=T0, task_ids=[a["task_id"]]) == 1
    assert TelegramTask.objects.get(pk=a["task_id"]).failure_reason == "admin_failed"
    assert tasks_requeue(task_ids=[a["task_id"], b["task_id"]], now=T0) == (1, 0)
    assert TelegramTask.objects.get(pk=b["task_id"]).status == "queued"


def test_cancel_fails_every_unfinished_task(order):
    tasks_pull(limit=1, now=T0)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert orders_cancel(order_ids=[order.pk], now=T0) == 1
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELED
    assert statuses() == [("failed", "order_canceled")] * 3


def test_pause_releases_queued_and_resume_makes_it_due(order):
    tasks_pull(limit=1, now=T0)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert orders_pause(order_ids=[order.pk], now=T0) == 1
    assert statuses() == [("failed", "order_paused")] * 2 + [("leased", "")]
    assert orders_resume(order_ids=[order.pk], now=T0 + timedelta(seconds=5)) == 1
    order.refresh_from_db()
    assert order.paused_at is None and order.next_run_at == T0 + timedelta(seconds=5)


@pytest.mark.parametrize(("delivered", "expected"), [(False, "canceled"), (True, "partial")])
def test_stop_ends_partial_or_canceled(order, delivered, expected):
    if delivered:
        Order.objects.filter(pk=order.pk).update(remains=2)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert orders_stop(order_ids=[order.pk], reason="target_unavailable", now=T0) == 1
    order.refresh_from_db()
    assert order.status == expected


# --- stopping an order while a generation pass holds it (hardening) -------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stop", ["cancel", "pause", "target_dead"])
def test_an_order_stopped_during_a_pass_never_hands_out_a_task(stop, monkeypatch):
    """The pass has locked the order and is choosing accounts when the operator stops it. Once
    the stop returns, no task of that order is queued and no pull hands one out."""
    import threading

    from telegram_tasks import claims
    from tests.concurrency import run_concurrently

    make_accounts(3)
    order = make_order(action="view", link="t.me/durov/9", quantity=3)
    entered, release = threading.Event(), threading.Event()
    real = claims.select_accounts

    def slow_select(**kwargs):
        entered.set()
        release.wait(10)
        return real(**kwargs)

    monkeypatch.setattr(claims, "select_accounts", slow_select)
    stopper = {
        "cancel": lambda: orders_cancel(order_ids=[order.pk], now=T0),
        "pause": lambda: orders_pause(order_ids=[order.pk], now=T0),
        "target_dead": lambda: orders_stop(
            order_ids=[order.pk], reason="target_unavailable", now=T0
        ),
    }[stop]

    def work(i):
        if i == 0:
            return tasks_generate(limit=10, now=T0).created
        entered.wait(10)
        timer = threading.Timer(0.5, release.set)  # the stop waits on the pass's row lock
        timer.start()
        try:
            return stopper()
        finally:
            timer.join()

    created, stopped = run_concurrently(work, threads=2)
    assert created == 3 and stopped == 1
    assert not TelegramTask.objects.filter(order=order, status="queued").exists()
    assert tasks_pull(limit=10, now=T0).tasks == []


def test_a_paused_order_hands_out_nothing_again(order, redis_client):
    """Leased work of a paused order may finish, but nothing of it is queued or handed out
    again: a failed-with-retry report, a release and an operator's requeue all end the task."""
    from telegram_tasks.services import LeaseRef, ReportIn, tasks_housekeep, tasks_release
    from telegram_tasks.services import tasks_report as report

    a, b, c = tasks_pull(limit=10, now=T0).tasks
    orders_pause(order_ids=[order.pk], now=T0)
    with TestCase.captureOnCommitCallbacks(execute=True):
        [out] = report(reports=[ReportIn(a["task_id"], "failed", retry_after=5)], now=T0)
        [rel] = tasks_release(leases=[LeaseRef(b["task_id"], b["lease_id"])], now=T0)
    assert out.status == "failed" and rel.ok
    assert tasks_requeue(task_ids=[c["task_id"]], now=T0) == (0, 1)
    reasons = dict(TelegramTask.objects.values_list("id", "failure_reason"))
    assert {reasons[t["task_id"]] for t in (a, b, c)} == {"order_paused"}
    assert tasks_pull(limit=10, now=T0 + timedelta(minutes=5)).tasks == []
    assert tasks_housekeep(now=T0 + timedelta(minutes=5)).ended.get("order_paused", 0) == 0


def test_a_lapsed_lease_of_a_paused_order_is_ended_not_handed_out(order):
    from telegram_tasks.services import tasks_housekeep

    [task, *_] = tasks_pull(limit=10, now=T0).tasks
    with TestCase.captureOnCommitCallbacks(execute=True):
        orders_pause(order_ids=[order.pk], now=T0)
    later = T0 + timedelta(seconds=61)
    assert tasks_pull(limit=10, now=later).tasks == []
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert tasks_housekeep(now=later).ended["order_paused"] == 3
    assert TelegramTask.objects.get(pk=task["task_id"]).failure_reason == "order_paused"
