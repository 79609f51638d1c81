"""The panel side's money and commands, called directly: the ledger is append-only and sums
to every balance, ended orders are settled exactly once whichever way they ended, the status
of 100 orders costs a constant number of queries, and the operators' commands."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders import money
from orders.customers import BalanceEntry, Customer
from orders.exceptions import BalanceTooLarge, NotEnoughFunds
from orders.models import Order, Service
from orders.services import balance_adjust, balances_verify, orders_settle, orders_settle_due
from telegram_tasks.services import orders
from telegram_tasks.services.operator import tasks_fail
from tests.factories import make_accounts
from tests.panel_world import balance, deliver, ledger_sum, make_customer, make_service

pytestmark = pytest.mark.django_db


def post(client: Client, key: str, **fields):
    return client.post("/api/v2", {"key": key, **fields}).json()


def test_status_of_a_hundred_orders_costs_a_constant_number_of_queries():
    _, key = make_customer("q", "100")
    service = make_service()
    client = Client()
    ids = [post(client, key, action="add", service=service.pk, link=f"t.me/q_chan/{i + 1}",
                quantity=1)["order"] for i in range(100)]  # fmt: skip
    with CaptureQueriesContext(connection) as few:
        assert len(post(client, key, action="status", orders=",".join(map(str, ids[:2])))) == 2
    with CaptureQueriesContext(connection) as many:
        answer = post(client, key, action="status", orders=",".join(map(str, ids)))
    assert len(answer) == 100 and all(a["status"] == "Pending" for a in answer.values())
    assert len(many) == len(few) <= 3, [q["sql"] for q in many.captured_queries]


def test_the_ledger_is_append_only_and_sums_to_the_balance():
    customer, _ = make_customer("led", "5")
    entry = BalanceEntry.objects.get(customer=customer)
    for change in (
        lambda: BalanceEntry.objects.filter(pk=entry.pk).update(amount=Decimal("50")),
        lambda: BalanceEntry.objects.filter(pk=entry.pk).delete(),
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            change()
    assert balances_verify() == []
    Customer.objects.filter(pk=customer.pk).update(balance=Decimal("6"))  # tampered with
    assert balances_verify() == [f"customer {customer.pk} 'led': balance 6.00 != ledger 5.00"]
    with pytest.raises(CommandError, match="1 balance"):
        call_command("check_balances", stdout=io.StringIO(), stderr=io.StringIO())


def test_an_adjustment_is_a_row_saying_who_and_why_and_never_overdraws(django_user_model):
    customer, _ = make_customer("adj", "1")
    user = django_user_model.objects.create(username="op")
    now = timezone.now()
    assert balance_adjust(customer_id=customer.pk, amount=Decimal("-0.25"), note="goodwill back",
                          actor="admin:op", user_id=user.pk, now=now) == Decimal("0.75")  # fmt: skip
    with pytest.raises(NotEnoughFunds):
        balance_adjust(customer_id=customer.pk, amount=Decimal("-0.75000001"), note="x",
                       actor="admin:op", now=now)  # fmt: skip
    with pytest.raises(ValueError, match="decimal places"):
        balance_adjust(customer_id=customer.pk, amount="0.000000001", note="x", actor="t", now=now)
    with pytest.raises(ValueError, match="not float"):
        balance_adjust(customer_id=customer.pk, amount=0.1, note="x", actor="t", now=now)
    last = BalanceEntry.objects.filter(customer=customer).first()
    assert (last.kind, last.amount, last.actor, last.user_id, last.note, last.balance_after) == (
        "adjustment", Decimal("-0.25"), "admin:op", user.pk, "goodwill back", Decimal("0.75"),
    )  # fmt: skip
    assert balance(customer) == ledger_sum(customer) == Decimal("0.75")


def test_an_end_the_signal_missed_is_settled_once_by_the_sweep():
    """The process died between the two steps of an end: the order is canceled, its tasks were
    ended without the signal. The sweep refunds it, once, however often it runs."""
    customer, key = make_customer("sweep", "10")
    make_accounts(4)
    service = make_service(rate=Decimal("1"))
    pk = post(Client(), key, action="add", service=service.pk, link="t.me/sw_chan/1",
              quantity=4)["order"]  # fmt: skip
    deliver(pk, 1)
    now = timezone.now()
    orders.orders_mark_canceled([pk], now=now)
    assert orders_settle_due(now=now) == 0  # its tasks are still in flight: not final yet
    tasks_fail(reason="order_canceled", now=now, order_ids=[pk])
    assert orders_settle_due(now=now) == 1
    assert orders_settle_due(now=now) == 0
    with transaction.atomic():  # the signal's path, late: nothing more either
        assert orders_settle(order_ids=[pk], reason="order_canceled", now=now) == 0
    settled = Order.objects.get(pk=pk)
    assert (settled.refund, settled.settled_at is not None) == (Decimal("0.003"), True)
    assert balance(customer) == Decimal("10") - Decimal("0.001") == ledger_sum(customer)
    assert BalanceEntry.objects.filter(order_id=pk, kind="refund").count() == 1


def test_money_is_exact_decimal():
    assert money.charge_for(Decimal("0.90123"), 309) == Decimal("0.27848007")
    assert money.refund_for(Decimal("0.27848007"), quantity=309, remains=103) == Decimal(
        "0.09282669"
    )
    assert money.text(Decimal("100")) == "100.00" and money.text(Decimal("0.9")) == "0.90"
    assert money.text(Decimal("0.27819000")) == "0.27819"
    with pytest.raises(money.InvalidAmount):
        money.parse("NaN")
    with pytest.raises(money.InvalidAmount):
        money.parse("1e20")


def test_commands_print_their_value_last(capsys):
    out = io.StringIO()
    call_command("create_customer", "panel-x", "--balance", "12.5", stdout=out,
                 stderr=io.StringIO())  # fmt: skip
    key = out.getvalue().strip().splitlines()[-1]
    assert len(key) == 32 and Client().post(
        "/api/v2", {"key": key, "action": "balance"}
    ).json() == {"balance": "12.50", "currency": "USD"}
    out = io.StringIO()
    call_command("customer_balance", "panel-x", "--add", "-2.25", "--note", "fee", stdout=out)
    assert out.getvalue().strip().splitlines()[-1] == "10.25"
    with pytest.raises(CommandError, match="not enough funds"):
        call_command("customer_balance", "panel-x", "--add", "-11", "--note", "x")
    with pytest.raises(CommandError, match="PANEL_CURRENCY"):
        call_command("create_customer", "panel-y", "--currency", "EUR", stdout=io.StringIO())
    out = io.StringIO()
    call_command(
        "create_service", "--name", "Members", "--action", "subscribe", "--rate", "1.5",
        "--min", "10", "--max", "5000", "--category", "TG", "--dripfeed", "--cancel",
        "--refill-days", "30", "--duration-days", "7", "--priority", "2",
        "--execution-mode", "push", stdout=out,
    )  # fmt: skip
    service = Service.objects.get(pk=int(out.getvalue().strip().splitlines()[-1]))
    assert (service.action, service.rate, service.refill_days, service.execution_mode) == (
        "subscribe", Decimal("1.5"), 30, "push",
    )  # fmt: skip
    with pytest.raises(CommandError, match="unknown action"):
        call_command("create_service", "--name", "X", "--action", "nope", "--rate", "1",
                     "--min", "1", "--max", "2")  # fmt: skip
    with pytest.raises(CommandError, match="decimal places"):
        call_command("create_service", "--name", "X", "--action", "view", "--rate", "0.000001",
                     "--min", "1", "--max", "2")  # fmt: skip
    call_command("check_balances", stdout=out)


def test_the_sweep_is_not_held_up_by_ended_orders_still_in_flight():
    """Ended orders whose units are still in flight wait; they must not take the places of
    those that can be settled (with ``most`` of them in flight, none was settled, ever)."""
    customer, key = make_customer("sweep2", "10")
    make_accounts(4)
    service = make_service(rate=Decimal("1"))
    client = Client()
    busy = post(client, key, action="add", service=service.pk, link="t.me/sw2_chan/1",
                quantity=2)["order"]  # fmt: skip
    deliver(busy, 0)  # handed out, not reported: in flight
    # Placed after the pass: no task yet.
    idle = post(client, key, action="add", service=service.pk, link="t.me/sw2_chan/2",
                quantity=2)["order"]  # fmt: skip
    now = timezone.now()
    orders.orders_mark_canceled([busy, idle], now=now)
    assert orders_settle_due(now=now, most=1) == 1
    assert Order.objects.get(pk=idle).settled_at is not None
    assert Order.objects.get(pk=busy).settled_at is None
    assert balance(customer) == Decimal("10") - Decimal("0.002") == ledger_sum(customer)


def test_a_cancel_that_meets_a_stop_says_how_the_order_ended(monkeypatch):
    """The broker stopped the order (part delivered) between the cancel's check and its own
    end: the answer says Partial, as status does, not "completed"."""
    from orders.services import ending
    from telegram_tasks.services import orders_stop

    customer, key = make_customer("race", "10")
    make_accounts(4)
    service = make_service(rate=Decimal("1"))
    client = Client()
    pk = post(client, key, action="add", service=service.pk, link="t.me/race_chan/1",
              quantity=3)["order"]  # fmt: skip
    deliver(pk, 1)
    cancel = ending.broker.orders_cancel

    def stopped_first(*, order_ids, now):
        orders_stop(order_ids=order_ids, reason="target_unavailable", now=now)
        return cancel(order_ids=order_ids, now=now)

    monkeypatch.setattr(ending.broker, "orders_cancel", stopped_first)
    assert post(client, key, action="cancel", order=pk) == [
        {"order": pk, "cancel": {"error": "Order is already partial"}}
    ]
    assert post(client, key, action="status", order=pk)["status"] == "Partial"
    assert balance(customer) == Decimal("10") - Decimal("0.001") == ledger_sum(customer)


def test_amounts_a_balance_cannot_hold_are_refused_with_a_reason(django_user_model):
    customer, _ = make_customer("big", "1")
    now = timezone.now()
    with pytest.raises(BalanceTooLarge, match="the most a balance holds"):
        balance_adjust(customer_id=customer.pk, amount=Decimal("9999999999.5"), note="x",
                       actor="t", now=now)  # fmt: skip
    with pytest.raises(CommandError, match="the most a balance holds"):
        call_command("customer_balance", "big", "--add", "9999999999.5", "--note", "x")
    with pytest.raises(CommandError, match="too large"):
        call_command("customer_balance", "big", "--add", "99999999999", "--note", "x")
    with pytest.raises(CommandError, match="too large"):
        call_command("create_customer", "bigger", "--balance", "99999999999")
    with pytest.raises(CommandError, match="1 to 150 characters"):
        call_command("create_customer", "n" * 151)
    with pytest.raises(CommandError, match="1 to 150 characters"):
        call_command("create_customer", " ")
    assert balance(customer) == Decimal("1") == ledger_sum(customer)
    assert Customer.objects.count() == 1


def test_an_order_model_without_start_count_costs_a_report_nothing_more(monkeypatch):
    """The optional column: an order model that lacks it gets the report statements it had
    before (no start count read from the data, no extra statement for a failed report)."""
    from dataclasses import replace

    from telegram_tasks.services import done_sql, sql

    full = sql.order_table()
    bare = replace(full, columns={k: v for k, v in full.columns.items() if k != "start_count"})
    monkeypatch.setattr(sql, "order_table", lambda: bare)
    done_sql.done_statement.cache_clear()
    try:
        for durable in (True, False):
            for handed_out in (True, False):
                text = done_sql.done_statement(durable=durable, handed_out=handed_out)
                assert "start_count" not in text
        with CaptureQueriesContext(connection) as queries:
            orders.orders_note_start_count([(1, '{"start_count": 5}')])
        assert len(queries) == 0
    finally:
        monkeypatch.undo()
        done_sql.done_statement.cache_clear()
    # (With the column, the same statement reads it.)
    assert "start_count" in done_sql.done_statement(durable=False, handed_out=True)


def test_a_cancel_while_redis_is_down_is_answered_and_refunded_once_its_tasks_end(
    cut_redis, settings
):
    """The order is canceled (the ledger says so: nothing more is handed out), its tasks could
    not be ended (that asks Redis): the panel hears cancel 1, not a 500, and the sweep refunds
    the order once its tasks have ended."""
    customer, key = make_customer("rdown", "10")
    make_accounts(3)
    service = make_service(rate=Decimal("1"))
    client = Client()
    pk = post(client, key, action="add", service=service.pk, link="t.me/rdown_chan/1",
              quantity=3)["order"]  # fmt: skip
    deliver(pk, 1)
    caches, url = settings.CACHES, settings.REDIS_URL
    cut_redis()
    assert post(client, key, action="cancel", order=pk) == [{"order": pk, "cancel": 1}]
    assert post(client, key, action="status", order=pk)["status"] == "Partial"
    settings.CACHES, settings.REDIS_URL = caches, url  # Redis is back
    tasks_fail(reason="order_canceled", now=timezone.now(), order_ids=[pk])  # housekeeping
    assert orders_settle_due(now=timezone.now()) == 1
    assert balance(customer) == Decimal("10") - Decimal("0.001") == ledger_sum(customer)
