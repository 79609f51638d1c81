"""A customer's order through the panel API (``action=add``): checked against its service,
charged from the balance in the transaction that creates it, once per idempotency key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from orders import money
from orders.customers import ApiKey
from orders.exceptions import (
    IncorrectService,
    PanelError,
    QuantityTooLarge,
    QuantityTooSmall,
    RequestKeyReused,
)
from orders.models import Order, Service
from orders.params import InvalidParams, order_params
from orders.services.ledger import Kind, Movement, ledger_move

MAX_REQUEST_KEY = 128
MAX_UNITS = 2_000_000_000  # an order's quantity column is a 32-bit integer


@dataclass(frozen=True)
class AddRequest:
    """An add as the panel sent it (text, not yet checked)."""

    service: str | None
    link: str | None
    quantity: str | None
    runs: str | None = None
    interval: str | None = None
    request_key: str | None = None
    answer_number: str | None = None


def whole(value: str | None, what: str, *, least: int = 1) -> int:
    """A whole number from the request, at least ``least``; PanelError saying what is wrong."""
    text = (value or "").strip()
    if not text.isdigit() or len(text) > 10:
        raise PanelError(f"Incorrect {what}: give a whole number")
    number = int(text)
    if number < least:
        raise PanelError(f"Incorrect {what}: at least {least}")
    return number


def dripfeed_spacing(*, quantity: int, interval_minutes: int) -> int:
    """Drip-feed ``runs`` x ``quantity`` every ``interval`` minutes, as the order's slots: one
    unit per task (one account each), spaced ``interval x 60 / quantity`` seconds apart (whole
    seconds, rounded down): each interval delivers ``quantity`` units, spread evenly over it
    instead of in one burst, and the order ends about ``runs x interval`` minutes after it
    starts. (0: as fast as the accounts allow, when the interval is shorter than a second a
    unit.)"""
    return interval_minutes * 60 // quantity


def _service(raw: str | None) -> Service:
    text = (raw or "").strip()
    if not text.isdigit() or len(text) > 18:
        raise IncorrectService
    found = Service.objects.filter(pk=int(text), enabled=True).first()
    if found is None:
        raise IncorrectService
    return found


def order_add(*, key: ApiKey, request: AddRequest, now: datetime) -> int:
    """Place an order for the key's customer; returns its id. The charge (``rate x units /
    1000``) is taken from the balance in the transaction that creates the order (never below
    zero: NotEnoughFunds, and no order). With a request key, a retry (the same key again)
    answers the first order and charges nothing; concurrent retries meet the key's unique
    constraint, and all but one roll back."""
    service = _service(request.service)
    quantity = whole(request.quantity, "quantity")
    runs, interval = request.runs, request.interval
    dripfeed = any((v or "").strip() for v in (runs, interval))
    total, spacing = quantity, 0
    if dripfeed:
        if not service.dripfeed:
            raise PanelError("Drip-feed is not available for this service")
        n_runs = whole(runs, "runs")
        minutes = whole(interval, "interval")
        total = n_runs * quantity
        spacing = dripfeed_spacing(quantity=quantity, interval_minutes=minutes) if n_runs > 1 else 0
    if quantity < service.min_quantity:
        raise QuantityTooSmall(service.min_quantity)
    if max(total, quantity) > min(service.max_quantity, MAX_UNITS):
        raise QuantityTooLarge(service.max_quantity)
    request_key = (request.request_key or "").strip() or None
    if request_key is not None and len(request_key) > MAX_REQUEST_KEY:
        raise PanelError(f"request_id (Idempotency-Key) is longer than {MAX_REQUEST_KEY}")
    order = Order(
        action=service.action, link=(request.link or "").strip(), quantity=total,
        interval_seconds=spacing, priority=service.priority,
        duration_days=service.duration_days, execution_mode=service.execution_mode,
        customer_id=key.customer_id, service=service, request_key=request_key,
        charge=money.charge_for(service.rate, total),
    )  # fmt: skip
    if not order.link:
        raise PanelError("Incorrect link: give the Telegram link")
    try:
        order.params = order_params(service.action, service.params, request.answer_number)
    except InvalidParams as exc:
        raise PanelError(f"Incorrect parameters: {exc}") from None
    try:
        order.clean()  # the link suits the action, and the params (telegram_tasks.params)
    except ValidationError as exc:
        errors = exc.message_dict
        if set(errors) == {"params"}:
            raise PanelError(f"Incorrect parameters: {errors['params'][0]}") from None
        raise PanelError(f"Incorrect link: {_first(exc)}") from None
    try:
        with transaction.atomic():
            if request_key is not None:
                first = _first_order(key.customer_id, request_key, order)
                if first is not None:
                    return first
            order.save()
            routing = list(service.providers.values_list("pk", flat=True))
            if routing:  # the providers its service is limited to (none: any)
                order.providers.set(routing)
            if order.charge:
                ledger_move(
                    Movement(key.customer_id, Kind.CHARGE, -order.charge,
                             actor=f"api:{key.prefix}", order_id=order.pk,
                             note=f"service {service.pk} x {total}"),
                    now=now,
                )  # fmt: skip
        return order.pk
    except IntegrityError:
        # A concurrent add with the same request key won: answer its order.
        first = _first_order(key.customer_id, request_key, order) if request_key else None
        if first is None:
            raise
        return first


def _first_order(customer_id: int, request_key: str, wanted: Order) -> int | None:
    """The order a request key already made, if the request asks for the same thing."""
    first = Order.objects.filter(customer_id=customer_id, request_key=request_key).first()
    if first is None:
        return None
    same = (first.service_id, first.link, first.post_id, first.quantity) == (
        wanted.service_id, wanted.link, wanted.post_id, wanted.quantity,
    )  # fmt: skip
    if not same:
        raise RequestKeyReused
    return first.pk


def _first(exc: ValidationError) -> str:
    for field, messages in exc.message_dict.items():
        return f"{messages[0]}" if field in ("link", "post_id", "__all__") else messages[0]
    return "invalid"  # pragma: no cover
