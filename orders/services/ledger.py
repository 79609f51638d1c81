"""The balance ledger: every change of a customer's balance is a row, written in the same
transaction as the conditional update of the cached balance (which can never go below zero).
Statements only; the services that call them own the transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection

from orders.customers import BalanceEntry, Customer
from orders.exceptions import BalanceTooLarge, NotEnoughFunds
from orders.money import LIMIT

CUSTOMERS = Customer._meta.db_table
LEDGER = BalanceEntry._meta.db_table
Kind = BalanceEntry.Kind


@dataclass(frozen=True)
class Movement:
    """One balance change to write: ``amount`` is signed (negative takes money)."""

    customer_id: int
    kind: str
    amount: Decimal
    actor: str
    note: str = ""
    order_id: int | None = None
    user_id: int | None = None


def _fetch(sql: str, params: Any) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def ledger_move(movement: Movement, *, now: datetime) -> Decimal:
    """Apply one movement: the balance changes only if it stays at or above zero (else
    NotEnoughFunds, nothing written) and below ``money.LIMIT`` (else BalanceTooLarge: the
    column would overflow), and the row records the balance it left. Returns it.
    The update takes the customer's row lock until the caller's transaction ends, so
    concurrent movements of one customer queue, each seeing the balance the last one left."""
    rows = _fetch(
        f"""
        WITH moved AS (
            UPDATE {CUSTOMERS} SET balance = balance + %(amount)s, updated_at = %(now)s
            WHERE id = %(customer)s AND balance + %(amount)s >= 0
              AND balance + %(amount)s < %(limit)s
            RETURNING id, balance
        )
        INSERT INTO {LEDGER} (customer_id, kind, amount, balance_after, order_id, actor,
                              user_id, note, created_at)
        SELECT moved.id, %(kind)s, %(amount)s, moved.balance, %(order)s, %(actor)s, %(user)s,
               %(note)s, %(now)s
        FROM moved
        RETURNING balance_after
        """,  # noqa: S608
        {
            "amount": movement.amount,
            "customer": movement.customer_id,
            "kind": movement.kind,
            "order": movement.order_id,
            "actor": movement.actor,
            "user": movement.user_id,
            "note": movement.note,
            "now": now,
            "limit": LIMIT,
        },
    )
    if not rows:
        raise NotEnoughFunds if movement.amount < 0 else BalanceTooLarge
    return rows[0][0]


def ledger_refund_many(refunds: Sequence[tuple[int, int, Decimal]], *, actor: str, note: str,
                       now: datetime) -> int:  # fmt: skip
    """Refunds of many orders — (customer id, order id, amount > 0) — in one statement: the
    balances raised (customers locked in id order), one ledger row per order, each with the
    balance it left. An order refunded before is refused by the ledger's unique constraint
    (the caller's guard makes that impossible; the constraint makes it certain)."""
    refunds = [r for r in refunds if r[2] > 0]
    if not refunds:
        return 0
    rows = json.dumps([{"c": c, "o": o, "a": str(a)} for c, o, a in refunds])
    _fetch(
        f"""
        WITH r AS (
            SELECT c, o, a::numeric AS a FROM jsonb_to_recordset(%(rows)s::jsonb)
                AS r(c bigint, o bigint, a text)
        ), locked AS (
            SELECT id FROM {CUSTOMERS} WHERE id IN (SELECT c FROM r) ORDER BY id FOR UPDATE
        ), totals AS (
            SELECT c, SUM(a) AS a FROM r GROUP BY c
        ), raised AS (
            UPDATE {CUSTOMERS} AS cu SET balance = cu.balance + totals.a, updated_at = %(now)s
            FROM totals WHERE cu.id = totals.c AND cu.id IN (SELECT id FROM locked)
            RETURNING cu.id, cu.balance
        )
        INSERT INTO {LEDGER} (customer_id, kind, amount, balance_after, order_id, actor,
                              note, created_at)
        SELECT r.c, %(kind)s, r.a,
               -- each row leaves the balance as it stood after it, in order id order
               raised.balance - SUM(r.a) OVER (PARTITION BY r.c ORDER BY r.o DESC)
                   + r.a,
               r.o, %(actor)s, %(note)s, %(now)s
        FROM r JOIN raised ON raised.id = r.c
        ORDER BY r.c, r.o
        RETURNING 1
        """,  # noqa: S608
        {"rows": rows, "kind": Kind.REFUND, "actor": actor, "note": note, "now": now},
    )
    return len(refunds)


def ledger_mismatches() -> list[tuple[int, str, Decimal, Decimal]]:
    """Customers whose balance is not the sum of their ledger rows: (id, name, balance, sum)."""
    return [
        (i, name, balance, total)
        for i, name, balance, total in _fetch(
            f"""
            SELECT c.id, c.name, c.balance, COALESCE(l.total, 0)
            FROM {CUSTOMERS} AS c
            LEFT JOIN (SELECT customer_id, SUM(amount) AS total FROM {LEDGER}
                       GROUP BY customer_id) AS l ON l.customer_id = c.id
            WHERE c.balance <> COALESCE(l.total, 0)
            ORDER BY c.id
            """,  # noqa: S608
            [],
        )
    ]
