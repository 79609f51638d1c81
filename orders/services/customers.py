"""Customers, their API keys and operator adjustments of their balances."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction

from orders import money
from orders.customers import ApiKey, Customer
from orders.exceptions import CustomerDisabled, InvalidKey
from orders.services.ledger import Kind, Movement, ledger_mismatches, ledger_move

# A key is 32 hex characters (128 random bits), as panel scripts expect; the first 8 find it.
KEY_BYTES = 16
PREFIX_LENGTH = 8
# How stale ``last_used_at`` may get: a key used all the time costs one write a minute.
LAST_USED_EVERY = timedelta(seconds=60)


def digest(key: str) -> str:
    """SHA-256 of a key. (A slow password hash guards guessable passwords; a key is 128 random
    bits, which no one guesses, so a fast digest is enough and keeps each request cheap.)"""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class NewKey:
    """A key just made: ``key`` is shown once and never stored."""

    api_key: ApiKey
    key: str


def api_key_create(*, customer: Customer, name: str = "", now: datetime) -> NewKey:
    """A new key for the customer (a customer may hold several)."""
    for _ in range(5):  # another key with the same 8-character prefix: draw again
        key = secrets.token_hex(KEY_BYTES)
        try:
            with transaction.atomic():
                made = ApiKey.objects.create(
                    customer=customer, prefix=key[:PREFIX_LENGTH], digest=digest(key),
                    name=name, created_at=now,
                )  # fmt: skip
            return NewKey(made, key)
        except IntegrityError:
            continue
    raise RuntimeError("could not draw an unused key prefix")  # pragma: no cover


def api_key_revoke(*, key_ids: list[int], now: datetime) -> int:
    """Revoke keys (they refuse from now on); returns how many were live."""
    return ApiKey.objects.filter(pk__in=key_ids, revoked_at=None).update(revoked_at=now)


def api_key_authenticate(*, key: str, now: datetime) -> ApiKey:
    """The live key ``key`` is, with its customer (InvalidKey otherwise; CustomerDisabled for a
    disabled customer's key). One query by prefix; the digest compared in constant time."""
    key = (key or "").strip()
    if len(key) < PREFIX_LENGTH or len(key) > 128:
        raise InvalidKey
    found = (
        ApiKey.objects.select_related("customer")
        .filter(prefix=key[:PREFIX_LENGTH], revoked_at=None)
        .first()
    )
    if found is None or not hmac.compare_digest(found.digest, digest(key)):
        raise InvalidKey
    if not found.customer.enabled:
        raise CustomerDisabled
    if found.last_used_at is None or found.last_used_at < now - LAST_USED_EVERY:
        ApiKey.objects.filter(pk=found.pk).update(last_used_at=now)
    return found


def customer_create(
    *, name: str, balance: Decimal = Decimal(0), currency: str | None = None, actor: str,
    now: datetime,
) -> tuple[Customer, NewKey]:  # fmt: skip
    """A customer with its first API key, and its opening balance as a ledger row."""
    longest = Customer._meta.get_field("name").max_length
    if not name.strip() or len(name) > longest:
        raise ValueError(f"a customer's name is 1 to {longest} characters")
    wanted = currency or money.currency()
    if wanted != money.currency():
        raise ValueError(
            f"this install keeps its money in {money.currency()} (PANEL_CURRENCY), not {wanted}"
        )
    if balance < 0:
        raise ValueError("an opening balance cannot be negative")
    with transaction.atomic():
        customer = Customer.objects.create(name=name, currency=wanted)
        if balance:
            ledger_move(
                Movement(customer.pk, Kind.ADJUSTMENT, money.parse(balance), actor=actor,
                         note="opening balance"),
                now=now,
            )  # fmt: skip
        key = api_key_create(customer=customer, name="first key", now=now)
    return customer, key


def balance_adjust(
    *, customer_id: int, amount: Decimal, note: str, actor: str, now: datetime,
    user_id: int | None = None,
) -> Decimal:  # fmt: skip
    """An operator's adjustment (negative to take money): a ledger row saying who and why.
    NotEnoughFunds when it would take the balance below zero. Returns the new balance."""
    amount = money.parse(amount)
    if amount == 0:
        raise ValueError("an adjustment of 0 changes nothing")
    if not note.strip():
        raise ValueError("say why (a note)")
    with transaction.atomic():
        return ledger_move(
            Movement(customer_id, Kind.ADJUSTMENT, amount, actor=actor, note=note.strip(),
                     user_id=user_id),
            now=now,
        )  # fmt: skip


def balances_verify() -> list[str]:
    """Every customer whose balance is not the sum of its ledger rows, said in a line each
    (none: the books balance)."""
    return [
        f"customer {pk} {name!r}: balance {money.text(balance)} != ledger {money.text(total)}"
        for pk, name, balance, total in ledger_mismatches()
    ]
