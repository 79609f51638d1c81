"""Celery tasks of the orders app: thin interfaces over its services (beat schedules them)."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from orders.services import orders_settle_due


# Both limits named (a soft one lets the transaction roll back cleanly before the hard kill).
@shared_task(name="orders.settle", ignore_result=True, soft_time_limit=100, time_limit=120)
def settle_orders() -> int:
    """Settle ended panel orders not settled yet (see ``orders.services.ending``)."""
    return orders_settle_due(now=timezone.now())
