"""Set-up shared by the panel API tests: customers with keys, services, and delivering an
order's units through the broker's own services (generation, pull, report)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.test import TestCase
from django.utils import timezone

from orders.customers import BalanceEntry, Customer
from orders.models import Order, Service
from orders.services import customer_create
from telegram_tasks.models import TelegramTask
from telegram_tasks.services import ReportIn, tasks_generate, tasks_pull, tasks_report


def make_customer(name: str = "panel-a", balance: str = "10") -> tuple[Customer, str]:
    customer, key = customer_create(
        name=name, balance=Decimal(balance), actor="test", now=timezone.now()
    )
    return customer, key.key


def make_service(**kwargs: Any) -> Service:
    fields: dict[str, Any] = {
        "name": "Views", "category": "Telegram", "action": "view", "rate": Decimal("0.9"),
        "min_quantity": 1, "max_quantity": 1000, "cancel": True, "dripfeed": True,
    }  # fmt: skip
    fields.update(kwargs)
    return Service.objects.create(**fields)


def balance(customer: Customer) -> Decimal:
    return Customer.objects.get(pk=customer.pk).balance


def ledger_sum(customer: Customer) -> Decimal:
    return sum((e.amount for e in BalanceEntry.objects.filter(customer=customer)), Decimal(0))


def deliver(order_id: int, units: int, now: datetime | None = None) -> list[dict[str, Any]]:
    """Generate, pull and report done ``units`` of the order's tasks; returns the tasks still
    handed out (not reported)."""
    now = now or timezone.now()
    tasks_generate(limit=1000, now=now)
    mine = [t for t in tasks_pull(limit=1000, now=now).tasks if t["order_id"] == order_id]
    pulled = {t["task_id"] for t in mine}
    mine += [
        {"task_id": t.pk, "lease_id": t.lease_id, "order_id": order_id}
        for t in TelegramTask.objects.filter(order_id=order_id, status="leased").order_by("pk")
        if t.pk not in pulled
    ]
    done, rest = mine[:units], mine[units:]
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_report(
            reports=[
                ReportIn(task_id=t["task_id"], state="done", lease_id=t["lease_id"]) for t in done
            ],
            now=now,
        )
    assert len(done) == units, f"only {len(done)} tasks to report"
    return rest


def order(pk: int) -> Order:
    return Order.objects.get(pk=pk)
