"""Money under races, with real threads (each its own connection): a customer's cancel, the
broker stopping the same orders, the settle sweep and the provider's done reports all at once.
Each order is refunded once, exactly its final undelivered part; no late report moves remains
after that; every balance is its ledger's sum."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from orders import money
from orders.customers import ApiKey, BalanceEntry
from orders.models import Order
from orders.services import orders_cancel_for, orders_settle_due
from telegram_tasks.failures import Reason
from telegram_tasks.models import TelegramTask
from telegram_tasks.services import ReportIn, orders_stop, tasks_fail, tasks_report
from tests.concurrency import run_concurrently
from tests.factories import make_accounts
from tests.panel_world import balance, deliver, ledger_sum, make_customer, make_service

pytestmark = pytest.mark.django_db(transaction=True)

ORDERS, UNITS = 12, 4


def test_cancel_stop_sweep_and_reports_at_once_refund_each_order_once_exactly():
    customer, key = make_customer("racer", "100")
    api_key = ApiKey.objects.select_related("customer").get(customer=customer)
    make_accounts(ORDERS * UNITS + 5)
    service = make_service(rate=Decimal("1.23457"))
    client = Client()
    ids = [
        client.post("/api/v2", {"key": key, "action": "add", "service": service.pk,
                                "link": f"t.me/race_chan/{i + 1}", "quantity": UNITS}).json()["order"]
        for i in range(ORDERS)
    ]  # fmt: skip
    deliver(ids[0], 1)  # every order's tasks made and handed out; one unit of one delivered
    leased = list(
        TelegramTask.objects.filter(order_id__in=ids, status="leased").values_list("pk", "lease_id")
    )
    assert len(leased) >= ORDERS * UNITS - 1
    reporters = 3

    def work(i: int) -> None:
        now = timezone.now()
        if i == 0:
            orders_cancel_for(key=api_key, order_ids=[str(pk) for pk in ids], now=now)
        elif i == 1:
            orders_stop(order_ids=ids, reason=Reason.TARGET_UNAVAILABLE, now=now)
        elif i == 2:
            for _ in range(20):
                orders_settle_due(now=timezone.now())
        else:
            for task_id, lease in leased[i - 3 :: reporters]:
                tasks_report(reports=[ReportIn(task_id=task_id, state="done", lease_id=lease)],
                             now=timezone.now())  # fmt: skip

    run_concurrently(work, threads=3 + reporters)
    # Whatever is left in flight ends; the sweep settles what the signal did not.
    tasks_fail(reason=Reason.ORDER_CANCELED, now=timezone.now(), order_ids=ids)
    orders_settle_due(now=timezone.now())
    settled = {o.pk: o for o in Order.objects.filter(pk__in=ids)}
    # A late done for every task: nothing moves any more.
    for task_id, lease in leased:
        tasks_report(reports=[ReportIn(task_id=task_id, state="done", lease_id=lease)],
                     now=timezone.now())  # fmt: skip
    for pk, order in settled.items():
        again = Order.objects.get(pk=pk)
        assert (again.remains, again.refund) == (order.remains, order.refund), pk
        assert order.status in (Order.Status.CANCELED, Order.Status.PARTIAL, Order.Status.COMPLETED)
        assert order.settled_at is not None, pk
        exact = money.charge_for(service.rate, order.remains)
        assert order.refund == exact, (pk, order.remains, order.refund)
        rows = BalanceEntry.objects.filter(order_id=pk, kind="refund")
        assert [r.amount for r in rows] == ([exact] if exact else []), pk
    spent = sum((o.charge - o.refund for o in settled.values()), Decimal(0))
    assert balance(customer) == Decimal("100") - spent == ledger_sum(customer)
