"""Refills: a subscribe order's drops delivered again, free of charge.

A refill is an order of its own (``refill_of`` the original, no charge), so generation, the
claims (the subscribe gate never sends an account that is in the channel) and every invariant
hold for it unchanged; its status is the refill's status. **Drops** are members the order (or
one of its refills) delivered whose account has since died (deactivated) or whose membership
closed before its due time (the account left, or an unsubscribe order took it out). A refill
asks for the drops not yet made good: ``drops - units its earlier refills delivered``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Max, Q, Sum

from orders.customers import ApiKey
from orders.exceptions import IncorrectOrder, PanelError
from orders.models import Order
from orders.selectors import panel_id
from telegram_tasks.models import Membership

MS = Membership.State


@dataclass(frozen=True)
class RefillOut:
    order: str  # the id as the panel sent it
    refill: int | None = None
    error: PanelError | None = None


def order_drops(order: Order) -> int:
    """Drops of the order and its refills not yet made good by a refill."""
    family = Q(order_id=order.pk) | Q(order__refill_of=order.pk)
    dropped = Membership.objects.filter(family).filter(
        Q(state=MS.OPEN, account__is_active=False)
        | Q(state=MS.CLOSED) & (Q(due_at=None) | Q(unsubscribed_at__lt=F("due_at")))
    )
    redelivered = Order.objects.filter(refill_of=order).aggregate(
        n=Sum(F("quantity") - F("remains"))
    )["n"]
    return max(0, dropped.count() - (redelivered or 0))


def completed_at(order: Order) -> datetime | None:
    """When the order's last member joined (its last unit was delivered)."""
    return Membership.objects.filter(order_id=order.pk).aggregate(at=Max("subscribed_at"))["at"]


def _refill_one(customer_id: int, pk: int, now: datetime) -> int:
    """One refill (the original's row locked: one refill at a time per order)."""
    with transaction.atomic():
        order = (
            Order.objects.select_for_update(of=("self",))
            .select_related("service")
            .filter(pk=pk, customer_id=customer_id, refill_of=None)
            .first()
        )
        if order is None:
            raise IncorrectOrder
        service = order.service
        if service is None or not service.refill_days:
            raise PanelError("Refill is not available for this order")
        if order.status != Order.Status.COMPLETED:
            raise PanelError("Refill is available once the order is completed")
        done_at = completed_at(order)
        if done_at is None or now > done_at + timedelta(days=service.refill_days):
            raise PanelError("The refill period of this order is over")
        if Order.objects.filter(refill_of=order, status__in=Order.ACTIVE).exists():
            raise PanelError("A refill of this order is already in progress")
        drops = order_drops(order)
        if drops <= 0:
            raise PanelError("Nothing to refill: no drops")
        refill = Order(
            action=order.action, link=order.link, post_id=order.post_id, quantity=drops,
            priority=order.priority, duration_days=order.duration_days,
            execution_mode=order.execution_mode, customer_id=customer_id, service=service,
            refill_of=order, params=order.params,
        )  # fmt: skip
        refill.save()
        routing = list(order.providers.values_list("pk", flat=True))
        if routing:  # the same provider fleets as the order it refills
            refill.providers.set(routing)
        return refill.pk


def refill_create(*, key: ApiKey, order_ids: Sequence[str], now: datetime) -> list[RefillOut]:
    """Ask for a refill of each order (each in a transaction of its own)."""
    outs = []
    for raw in order_ids:
        pk = panel_id(raw)
        if pk is None:
            outs.append(RefillOut(raw, error=IncorrectOrder()))
            continue
        try:
            outs.append(RefillOut(raw, refill=_refill_one(key.customer_id, pk, now)))
        except PanelError as exc:
            outs.append(RefillOut(raw, error=exc))
    return outs
