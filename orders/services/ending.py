"""How a panel order ends: a customer's cancel, and the settlement of every ended order (the
refund of its undelivered part), whichever way it ended.

An order ends by the broker's services (``telegram_tasks.services.orders_cancel`` /
``orders_stop``), which send ``telegram_tasks.signals.orders_ended`` in the transaction that
fails the order's last unfinished tasks; ``settle_ended`` (connected in ``OrdersConfig.ready``)
settles those orders in that same transaction. Should that ever not happen (the process died
between the two steps of an end), ``orders_settle_due`` (beat, every minute; ``manage.py
settle_orders``) settles every ended order that has no task in flight. Either way the order's
row is locked, and only an order not settled yet is settled: one refund per order, exact."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from redis.exceptions import RedisError

from orders import money
from orders.customers import ApiKey
from orders.exceptions import IncorrectOrder, PanelError
from orders.models import Order
from orders.selectors import panel_id, status_word
from orders.services.ledger import ledger_refund_many
from telegram_tasks import services as broker
from telegram_tasks.models import TelegramTask

logger = logging.getLogger(__name__)

ORDERS = Order._meta.db_table
TASKS = TelegramTask._meta.db_table
FINAL = [s.value for s in Order.Status if s not in Order.ACTIVE]
LIVE = [s.value for s in TelegramTask.IN_FLIGHT]
# An order none of whose units is in flight any more (its remains are final).
NOTHING_IN_FLIGHT = f"""NOT EXISTS (SELECT 1 FROM {TASKS} AS t WHERE t.order_id = o.id
                   AND t.status = ANY(%(live)s) AND t.membership_id IS NULL)"""  # noqa: S608


def _rows(sql: str, params: Any) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description is not None else []


def _settle(where: str, params: dict[str, Any], *, note: str, now: datetime, skip: bool) -> int:
    """Settle the ended panel orders ``where`` selects that have no unit in flight: lock them
    (id order), refund each one's undelivered part, mark it settled. Returns how many."""
    lock = "FOR UPDATE OF o SKIP LOCKED" if skip else "FOR UPDATE OF o"
    found = _rows(
        f"""
        SELECT o.id, o.customer_id, o.charge, o.quantity, o.remains FROM {ORDERS} AS o
        WHERE ({where}) AND o.customer_id IS NOT NULL AND o.settled_at IS NULL
          AND o.status = ANY(%(final)s) AND {NOTHING_IN_FLIGHT}
        ORDER BY o.id {lock}
        """,  # noqa: S608
        {**params, "final": FINAL, "live": LIVE},
    )
    if not found:
        return 0
    refunds = [
        (customer, pk, money.refund_for(charge, quantity=quantity, remains=remains))
        for pk, customer, charge, quantity, remains in found
    ]
    _rows(
        f"""
        UPDATE {ORDERS} AS o SET settled_at = %(now)s, refund = v.refund::numeric
        FROM jsonb_to_recordset(%(rows)s::jsonb) AS v(id bigint, refund text)
        WHERE o.id = v.id
        """,  # noqa: S608
        {"now": now, "rows": json.dumps([{"id": pk, "refund": str(r)} for _, pk, r in refunds])},
    )
    ledger_refund_many(refunds, actor="broker", note=note, now=now)
    return len(found)


def orders_settle(*, order_ids: Sequence[int], reason: str, now: datetime) -> int:
    """Settle these orders if they ended (in the caller's transaction)."""
    if not order_ids:
        return 0
    return _settle(
        "o.id = ANY(%(ids)s)", {"ids": list(order_ids)},
        note=f"undelivered part refunded ({reason})", now=now, skip=False,
    )  # fmt: skip


def orders_settle_due(*, now: datetime, most: int = 1000) -> int:
    """Settle every ended panel order not settled yet (completed ones too, with nothing to
    refund), at most ``most``; orders another transaction holds, or with units still in flight,
    are left for a later run (and do not take the places of those that can be settled)."""
    with transaction.atomic():
        return _settle(
            f"o.id IN (SELECT o.id FROM {ORDERS} AS o WHERE o.customer_id IS NOT NULL "  # noqa: S608
            "AND o.settled_at IS NULL AND o.status = ANY(%(final)s) "
            f"AND {NOTHING_IN_FLIGHT} ORDER BY o.id LIMIT %(most)s)",
            {"most": most}, note="undelivered part refunded (order ended)", now=now, skip=True,
        )  # fmt: skip


def settle_ended(sender: Any, *, order_ids: list[int], now: datetime, reason: str = "",
                 **kwargs: Any) -> None:  # fmt: skip
    """Receiver of ``telegram_tasks.signals.orders_ended``: why each order ended (for the
    operator; the first reason stays), then the settlement."""
    if reason:
        Order.objects.filter(pk__in=order_ids, end_reason="").update(end_reason=reason[:64])
    orders_settle(order_ids=order_ids, reason=reason or "order ended", now=now)


@dataclass(frozen=True)
class CancelOut:
    order: str  # the id as the panel sent it
    error: PanelError | None = None


def orders_cancel_for(*, key: ApiKey, order_ids: Sequence[str], now: datetime) -> list[CancelOut]:
    """A customer's cancel of its orders: each one allowed (its own, its service allows cancel,
    still running) stops exactly as an operator's cancel does (the broker's ``orders_cancel``)
    and its undelivered part is refunded in the same step (``settle_ended``)."""
    wanted = {raw: n for raw in order_ids if (n := panel_id(raw)) is not None}
    found = {
        o.pk: o
        for o in Order.objects.filter(
            pk__in=list(wanted.values()), customer_id=key.customer_id, refill_of=None
        ).select_related("service")
    }
    errors: dict[str, PanelError] = {}
    allowed: list[int] = []
    for raw in order_ids:
        order = found.get(wanted.get(raw, -1))
        if order is None:
            errors[raw] = IncorrectOrder()
        elif order.service is None or not order.service.cancel:
            errors[raw] = PanelError("Cancel is not available for this order")
        elif order.status not in Order.ACTIVE:
            errors[raw] = PanelError(f"Order is already {status_word(order).lower()}")
        else:
            allowed.append(order.pk)
    if allowed:
        try:
            broker.orders_cancel(order_ids=sorted(set(allowed)), now=now)
        except RedisError:
            # The first step (the orders canceled) committed; the second (ending their tasks,
            # which asks Redis whether each was COMMITted) could not run. Their tasks end when
            # housekeeping meets them, and the settle sweep refunds each order then.
            logger.warning("cancel: tasks not ended yet, Redis unavailable", exc_info=True)
        after = {
            o.pk: o
            for o in Order.objects.filter(pk__in=allowed).only("status", "quantity", "remains")
        }
        for raw in order_ids:
            order = after.get(wanted.get(raw, -1))
            if order is not None and order.status != Order.Status.CANCELED:
                # It ended otherwise meanwhile: completed, or stopped by the broker.
                errors[raw] = PanelError(f"Order is already {status_word(order).lower()}")
    return [CancelOut(raw, errors.get(raw)) for raw in order_ids]
