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
