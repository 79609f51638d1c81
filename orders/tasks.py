"""Celery tasks of the orders app: thin interfaces over its services (beat schedules them)."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from orders.services import orders_settle_due


# Both limits named: beat refuses to send a task whose soft limit (the project's
# CELERY_TASK_SOFT_TIME_LIMIT when the task names none) exceeds its hard one.
@shared_task(name="orders.settle", ignore_result=True, time_limit=120, soft_time_limit=100)
def settle_orders() -> int:
    """Settle ended panel orders not settled yet (see ``orders.services.ending``)."""
    return orders_settle_due(now=timezone.now())
