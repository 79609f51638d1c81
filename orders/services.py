"""Operator actions on orders. Each releases what the order holds through telegram_tasks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import transaction

from orders.models import Order
from telegram_tasks.services import tasks_fail

FINAL = (Order.Status.COMPLETED, Order.Status.PARTIAL, Order.Status.CANCELED)


def _lock(order_ids: Sequence[int], **filters: object) -> list[int]:
    """Lock the orders (in pk order, after their tasks: the order every path locks in)."""
    return list(
        Order.objects.select_for_update()
        .filter(pk__in=order_ids, **filters)
        .exclude(status__in=FINAL)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def order_cancel(*, order_ids: Sequence[int], now: datetime) -> int:
    """Cancel: no more tasks, and every unfinished task is failed and its lock rolled back."""
    ids = list(
        Order.objects.filter(pk__in=order_ids)
        .exclude(status__in=FINAL)
        .values_list("pk", flat=True)
    )
    with transaction.atomic():
        tasks_fail(reason="order_canceled", now=now, order_ids=ids)
        ids = _lock(ids)
        Order.objects.filter(pk__in=ids).update(status=Order.Status.CANCELED, updated_at=now)
    return len(ids)


def order_pause(*, order_ids: Sequence[int], now: datetime) -> int:
    """Pause: no new tasks; queued ones are released, handed-out ones may still finish."""
    ids = list(
        Order.objects.filter(pk__in=order_ids, paused_at__isnull=True)
        .exclude(status__in=FINAL)
        .values_list("pk", flat=True)
    )
    with transaction.atomic():
        tasks_fail(reason="order_paused", now=now, order_ids=ids, statuses=["queued"])
        ids = _lock(ids, paused_at__isnull=True)
        Order.objects.filter(pk__in=ids).update(paused_at=now, updated_at=now)
    return len(ids)


def order_resume(*, order_ids: Sequence[int], now: datetime) -> int:
    """Resume a paused order: due again at once."""
    return Order.objects.filter(pk__in=order_ids, paused_at__isnull=False).update(
        paused_at=None, next_run_at=now, updated_at=now
    )
