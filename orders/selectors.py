"""Read-only queries of the panel API and the admin, and the market's status words."""

from __future__ import annotations

import re
from collections.abc import Sequence

from orders.models import Order, Service

S = Order.Status
ORDER_WORDS = {
    S.AWAITING: "Pending",
    S.PENDING: "Pending",
    S.IN_PROGRESS: "In progress",
    S.COMPLETED: "Completed",
}
REFILL_WORDS = {
    S.AWAITING: "Pending",
    S.PENDING: "Pending",
    S.IN_PROGRESS: "In progress",
    S.COMPLETED: "Completed",
    # A refill that could not deliver all its drops (stopped or canceled).
    S.PARTIAL: "Rejected",
    S.CANCELED: "Rejected",
}
MAX_IDS = 100
# An id as a panel sends it: ASCII digits (``str.isdigit`` also takes "²" or "①", which ``int``
# refuses), at most 18 of them (a bigint; ``int`` of thousands of digits raises too).
_ID = re.compile(r"[0-9]{1,18}")


def panel_id(raw: str) -> int | None:
    """The id ``raw`` names, or None when it is not one (any id a panel sends goes through
    here: an id that is not one is an "Incorrect … ID", never an exception)."""
    text = raw.strip()
    return int(text) if _ID.fullmatch(text) else None


def status_word(order: Order) -> str:
    """The market's word for an order's state. An ended order is ``Partial`` when part of it
    was delivered, else ``Canceled`` (an operator's cancel and a stop alike)."""
    word = ORDER_WORDS.get(order.status)
    if word is not None:
        return word
    return "Canceled" if order.remains >= order.quantity else "Partial"


def refill_word(refill: Order) -> str:
    return REFILL_WORDS[refill.status]


def services_for_sale() -> list[Service]:
    return list(Service.objects.filter(enabled=True).order_by("id"))


def customer_orders(customer_id: int, ids: Sequence[int]) -> dict[int, Order]:
    """The customer's own orders (not refills) among ``ids``, in one query."""
    return {
        o.pk: o
        for o in Order.objects.filter(
            pk__in=list(ids), customer_id=customer_id, refill_of=None
        ).only("id", "status", "quantity", "remains", "charge", "refund", "start_count")
    }


def customer_refills(customer_id: int, ids: Sequence[int]) -> dict[int, Order]:
    """The customer's refills among ``ids`` (a refill's id is its order's), in one query."""
    return {
        o.pk: o
        for o in Order.objects.filter(
            pk__in=list(ids), customer_id=customer_id, refill_of__isnull=False
        ).only("id", "status")
    }
