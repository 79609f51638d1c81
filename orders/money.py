"""Money on the panel side: ``Decimal`` with an explicit quantum, never a float.

One currency per install (``PANEL_CURRENCY``, default USD). Amounts (balances, charges,
refunds, ledger rows) are kept to ``MONEY`` (8 decimal places); a service's rate per 1000 units
to ``RATE`` (5 places). So a charge, ``rate x units / 1000``, always fits the money quantum
exactly (5 + 3 places): no charge, refund or balance is ever rounded. A refund,
``charge x remains / quantity``, is the same exact figure (``rate x remains / 1000``); it is
still rounded down, so no rounding could ever give back more than was taken."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal, InvalidOperation

from django.conf import settings

MONEY_PLACES = 8
MONEY = Decimal(1).scaleb(-MONEY_PLACES)  # 0.00000001
RATE_PLACES = 5
RATE = Decimal(1).scaleb(-RATE_PLACES)  # 0.00001
# Digits of a money column: up to 9,999,999,999.99999999 (every amount is below LIMIT).
MONEY_DIGITS = 18
LIMIT = Decimal(10) ** (MONEY_DIGITS - MONEY_PLACES)
RATE_DIGITS = 14
PER = 1000  # rates are per this many units


class InvalidAmount(ValueError):
    """Not an amount: a float, not a number, too many decimal places, or too large."""


def currency() -> str:
    """The install's currency (PANEL_CURRENCY)."""
    return settings.PANEL_CURRENCY


def parse(value: object, *, quantum: Decimal = MONEY, what: str = "amount") -> Decimal:
    """An amount from text, an int or a Decimal; never a float (its binary value is not the
    decimal it prints as). Refuses more decimal places than ``quantum`` allows."""
    if isinstance(value, float | bool):
        raise InvalidAmount(
            f"{what} must be given as text or a Decimal, not {type(value).__name__}"
        )
    try:
        amount = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise InvalidAmount(f"{what} {value!r} is not a number") from None
    if not amount.is_finite():
        raise InvalidAmount(f"{what} {value!r} is not a number")
    exact = amount.quantize(quantum) if abs(amount) < LIMIT else None
    if exact is None or exact != amount:
        places = -quantum.as_tuple().exponent
        raise InvalidAmount(f"{what} {value} has more than {places} decimal places or is too large")
    return exact


def charge_for(rate: Decimal, units: int) -> Decimal:
    """What ``units`` cost at ``rate`` per 1000: exact (a rate has 5 places, money 8)."""
    amount = rate * units / PER
    exact = amount.quantize(MONEY)
    if exact != amount:  # only a rate with more places than RATE allows could do this
        raise InvalidAmount(f"rate {rate} has more than {RATE_PLACES} decimal places")
    return exact


def refund_for(charge: Decimal, *, quantity: int, remains: int) -> Decimal:
    """The undelivered part of a charge: ``charge x remains / quantity`` (rounded down)."""
    if quantity <= 0 or remains <= 0 or charge <= 0:
        return Decimal(0).quantize(MONEY)
    return (charge * min(remains, quantity) / quantity).quantize(MONEY, rounding=ROUND_DOWN)


def text(amount: Decimal) -> str:
    """An amount as the panel API writes it: exact, with at least two decimals and no
    trailing zeros beyond them ("0.27819", "100.00", "0.9" → "0.90")."""
    value = amount.quantize(MONEY).normalize()
    if value.as_tuple().exponent > -2:
        value = value.quantize(Decimal("0.01"))
    return f"{value:f}"
