"""A customer's order through the panel API (``action=add``): checked against its service,
charged from the balance in the transaction that creates it, once per idempotency key."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from orders import money
from orders.customers import ApiKey
from orders.exceptions import (
    IncorrectService,
    NotEnoughFunds,
    PanelError,
    QuantityTooLarge,
    QuantityTooSmall,
    RequestKeyReused,
)
from orders.models import Order, Service
from orders.params import InvalidParams, order_params
from orders.selectors import panel_id
from orders.services.ledger import Kind, Movement, ledger_move
from telegram_tasks.links import InvalidTelegramLink, normalize_link

MAX_REQUEST_KEY = 128
MAX_UNITS = 2_000_000_000  # an order's quantity column is a 32-bit integer
# A drip-feed's interval: its spacing (up to interval x 60 seconds) fits the order's 32-bit
# interval_seconds column.
MAX_INTERVAL_MINUTES = (2**31 - 1) // 60
_WHOLE = re.compile(r"[0-9]{1,10}")  # ASCII digits only: int() refuses "²", isdigit() does not


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


def whole(value: str | None, what: str, *, least: int = 1, most: int | None = None) -> int:
    """A whole number from the request, ``least``..``most``; PanelError saying what is wrong."""
    text = (value or "").strip()
    if not _WHOLE.fullmatch(text):
        raise PanelError(f"Incorrect {what}: give a whole number")
    number = int(text)
    if number < least:
        raise PanelError(f"Incorrect {what}: at least {least}")
    if most is not None and number > most:
        raise PanelError(f"Incorrect {what}: at most {most}")
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
    pk = panel_id(raw or "")
    if pk is None:
        raise IncorrectService
    found = Service.objects.filter(pk=pk, enabled=True).first()
    if found is None:
        raise IncorrectService
    return found


def order_add(*, key: ApiKey, request: AddRequest, now: datetime) -> int:
    """Place an order for the key's customer; returns its id. The charge (``rate x units /
    1000``) is taken from the balance in the transaction that creates the order (never below
    zero: NotEnoughFunds, and no order). With a request key, a retry (the same key again)
    answers the first order and charges nothing; concurrent retries meet the key's unique
    constraint, and all but one roll back. A retry answers the first order whatever changed
    since (the service disabled, its limits, the balance): that order exists and was paid."""
    request_key = _request_key(request.request_key)
    if request_key is not None:
        first = _first_order(key.customer_id, request_key, _asked(request))
        if first is not None:
            return first
    service = _service(request.service)
    quantity = whole(request.quantity, "quantity")
    total, spacing = quantity, 0
    if _dripfeed(request):
        if not service.dripfeed:
            raise PanelError("Drip-feed is not available for this service")
        n_runs = whole(request.runs, "runs")
        minutes = whole(request.interval, "interval", most=MAX_INTERVAL_MINUTES)
        total = n_runs * quantity
        spacing = dripfeed_spacing(quantity=quantity, interval_minutes=minutes) if n_runs > 1 else 0
    if quantity < service.min_quantity:
        raise QuantityTooSmall(service.min_quantity)
    if max(total, quantity) > min(service.max_quantity, MAX_UNITS):
        raise QuantityTooLarge(service.max_quantity)
    charge = money.charge_for(service.rate, total)
    if charge >= money.LIMIT:  # more than any balance holds (or the charge column takes)
        raise NotEnoughFunds
    order = Order(
        action=service.action, link=(request.link or "").strip(), quantity=total,
        interval_seconds=spacing, priority=service.priority,
        duration_days=service.duration_days, execution_mode=service.execution_mode,
        customer_id=key.customer_id, service=service, request_key=request_key,
        charge=charge,
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
        asked = (order.service_id, order.link, order.post_id, order.quantity)
        first = _first_order(key.customer_id, request_key, asked) if request_key else None
        if first is None:
            raise
        return first


def _request_key(raw: str | None) -> str | None:
    key = (raw or "").strip() or None
    if key is not None and len(key) > MAX_REQUEST_KEY:
        raise PanelError(f"request_id (Idempotency-Key) is longer than {MAX_REQUEST_KEY}")
    if key is not None and "\x00" in key:  # the header skips parse_fields
        raise PanelError("request_id (Idempotency-Key) holds a NUL character")
    return key


def _dripfeed(request: AddRequest) -> bool:
    # Some panel scripts send runs=0 and interval=0 (or empty) with every ordinary order.
    return any((v or "").strip() not in ("", "0") for v in (request.runs, request.interval))


Asked = tuple[int | None, str, int | None, int]


def _asked(request: AddRequest) -> Asked | None:
    """What an add asks for, as its order would record it (service, normalized link and post,
    units in all); None when the request cannot be read so (then it is no retry of an order)."""
    try:
        target = normalize_link((request.link or "").strip())
        quantity = whole(request.quantity, "quantity")
        runs = whole(request.runs, "runs") if _dripfeed(request) else 1
    except (InvalidTelegramLink, PanelError):
        return None
    return panel_id(request.service or ""), target.link, target.post_id, runs * quantity


def _first_order(customer_id: int, request_key: str, asked: Asked | None) -> int | None:
    """The order a request key already made, if the request asks for the same thing (else
    RequestKeyReused); None when the key made none."""
    first = (
        Order.objects.filter(customer_id=customer_id, request_key=request_key)
        .only("service_id", "link", "post_id", "quantity")
        .first()
    )
    if first is None:
        return None
    if (first.service_id, first.link, first.post_id, first.quantity) != asked:
        raise RequestKeyReused
    return first.pk


def _first(exc: ValidationError) -> str:
    for field, messages in exc.message_dict.items():
        return f"{messages[0]}" if field in ("link", "post_id", "__all__") else messages[0]
    return "invalid"  # pragma: no cover
