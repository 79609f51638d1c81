"""Refills through the panel API: drops (dead accounts, memberships closed before their time)
delivered again by a free child order, through the normal generation and claims."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from orders.models import Order
from telegram_tasks.models import Membership, TelegramAccount, TelegramTask
from telegram_tasks.services import (
    ReportIn,
    accounts_deactivate,
    tasks_generate,
    tasks_report,
)
from tests.factories import make_accounts
from tests.panel_client import Panel
from tests.panel_world import balance, deliver, ledger_sum, make_customer, make_service, order

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def panel(live_server):
    customer, key = make_customer("erin", "10")
    return customer, Panel(f"{live_server.url}/api/v2", key)


def test_a_refill_redelivers_the_drops_to_accounts_not_in_the_channel(panel):
    customer, api = panel
    accounts = make_accounts(6)
    service = make_service(name="Members", action="subscribe", rate=Decimal("2"),
                           refill_days=30)  # fmt: skip
    pk = api.call("add", service=service.pk, link="t.me/refill_chan", quantity=3)["order"]
    assert api.call("refill", order=pk) == {
        "error": "Refill is available once the order is completed"
    }
    deliver(pk, 3)
    assert api.call("status", order=pk)["status"] == "Completed"
    assert api.call("refill", order=pk) == {"error": "Nothing to refill: no drops"}
    members = list(Membership.objects.filter(order_id=pk).order_by("id"))
    # Two drops: one account died, one left the channel before its time.
    accounts_deactivate(account_ids=[members[0].account_id], now=timezone.now())
    Membership.objects.filter(pk=members[1].pk).update(
        state="closed", unsubscribed_at=timezone.now()
    )
    before = balance(customer)
    answer = api.call("refill", order=pk)
    refill = order(int(answer["refill"]))
    assert (refill.refill_of_id, refill.quantity, refill.charge, refill.action) == (
        pk, 2, Decimal(0), "subscribe",
    )  # fmt: skip
    assert api.call("refill_status", refill=refill.pk) == {"status": "Pending"}
    assert api.call("refill", orders=f"{pk},x") == [
        {"order": pk, "refill": {"error": "A refill of this order is already in progress"}},
        {"order": "x", "refill": {"error": "Incorrect order ID"}},
    ]
    # The refill goes through generation and the claims: never the account still in the
    # channel, nor the dead one.
    tasks_generate(limit=100, now=timezone.now())
    tasks = TelegramTask.objects.filter(order_id=refill.pk)
    given = {t.telegram_account_id for t in tasks}
    assert len(given) == 2
    assert members[2].account_id not in given and members[0].account_id not in given
    deliver(refill.pk, 0)
    for task in TelegramTask.objects.filter(order_id=refill.pk, status="leased"):
        tasks_report(reports=[ReportIn(task_id=task.pk, state="done")], now=timezone.now())
    assert api.call("refill_status", refills=f"{refill.pk},{refill.pk + 99}") == [
        {"refill": refill.pk, "status": "Completed"},
        {"refill": refill.pk + 99, "status": {"error": "Refill not found"}},
    ]
    # Made good: no drops left, and no money moved.
    assert api.call("refill", order=pk) == {"error": "Nothing to refill: no drops"}
    assert balance(customer) == before == ledger_sum(customer)
    # A refill's id is not an order of the customer's.
    assert api.call("status", order=refill.pk) == {"error": "Incorrect order ID"}
    assert len(accounts) == 6
    # Another customer sees neither the refill nor the order it refills.
    _, bob_key = make_customer("bob", "1")
    bob = Panel(api.url, bob_key)
    assert bob.call("refill_status", refill=refill.pk) == {"error": "Refill not found"}
    assert bob.call("refill_status", refills=str(refill.pk)) == [
        {"refill": refill.pk, "status": {"error": "Refill not found"}}
    ]
    assert bob.call("refill", order=pk) == {"error": "Incorrect order ID"}
    assert Order.objects.filter(refill_of=pk).count() == 1


def test_no_refill_without_refill_days_or_after_the_period(panel):
    _, api = panel
    make_accounts(3)
    plain = make_service(name="No refill", action="subscribe", rate=Decimal("1"))
    timed = make_service(name="Refill 1 day", action="subscribe", rate=Decimal("1"),
                         refill_days=1)  # fmt: skip
    a = api.call("add", service=plain.pk, link="t.me/plain_chan", quantity=1)["order"]
    b = api.call("add", service=timed.pk, link="t.me/timed_chan", quantity=1)["order"]
    deliver(a, 1)
    deliver(b, 1)
    Membership.objects.filter(order_id=b).update(subscribed_at=timezone.now() - timedelta(days=2))
    TelegramAccount.objects.update(is_active=False)
    assert api.call("refill", orders=f"{a},{b}") == [
        {"order": a, "refill": {"error": "Refill is not available for this order"}},
        {"order": b, "refill": {"error": "The refill period of this order is over"}},
    ]
    assert Order.objects.filter(refill_of__isnull=False).count() == 0


def test_a_refill_delivered_twice_is_asked_again_only_for_new_drops(panel):
    _, api = panel
    make_accounts(8)
    service = make_service(name="Members", action="subscribe", rate=Decimal("1"), refill_days=9)
    pk = api.call("add", service=service.pk, link="t.me/twice_chan", quantity=2)["order"]
    deliver(pk, 2)
    first = Membership.objects.filter(order_id=pk).first()
    accounts_deactivate(account_ids=[first.account_id], now=timezone.now())
    refill = int(api.call("refill", order=pk)["refill"])
    deliver(refill, 1)
    # The refill's own member dies too: one new drop.
    accounts_deactivate(
        account_ids=[Membership.objects.get(order_id=refill).account_id], now=timezone.now()
    )
    again = int(api.call("refill", order=pk)["refill"])
    assert order(again).quantity == 1
