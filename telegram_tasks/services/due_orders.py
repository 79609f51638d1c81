"""The orders a generation pass serves: the next page of due orders, locked (keyset over the
due orders' index, others' locks skipped), and when each one's tasks are scheduled within the
coming tick."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import NamedTuple

from telegram_tasks.conf import app_settings
from telegram_tasks.services import orders, sql


class DueOrder(NamedTuple):
    """The columns of an order that a pass reads (a tuple, not a model instance: it is hot)."""

    pk: int
    action: str
    link: str
    post_id: int | None
    link_hash: str
    remains: int
    per_call: int
    interval_seconds: int
    next_run_at: datetime | None
    status: str
    priority: int
    execution_mode: str
    params: str  # JSON text
    troubled: bool  # the last pass that recorded this order found it short of accounts
    providers: list[int] | None  # the providers it is limited to (empty or None: any)


def order_slots(
    *, next_run_at: datetime | None, interval: int, open_units: int, per_call: int, now: datetime
) -> list[datetime]:
    """When this pass schedules an order's tasks: one per interval slot within the coming tick.

    No burst after downtime: a slot already in the past is moved to ``now`` and the cadence goes
    on from there, so however long the scheduler was away an order catches up by one slot only.
    """
    wanted = math.ceil(open_units / per_call)
    most = min(wanted, app_settings.MAX_TASKS_PER_ORDER_PER_PASS)
    if interval <= 0:
        return [now] * most
    start = max(next_run_at or now, now)
    horizon = now + timedelta(seconds=app_settings.GENERATION_TICK_SECONDS)
    step = timedelta(seconds=interval)
    slots = []
    at = start
    while len(slots) < most and (at < horizon or not slots):
        slots.append(at)
        at += step
    return slots


# (priority, next_run_at, pk): the order pages are read in — higher priority first, then the
# orders waiting longest (never scheduled first).
OrderKey = tuple[int, datetime | None, int]


def due_orders(now: datetime, after: OrderKey | None, size: int) -> list[DueOrder]:
    """Lock the next page of due orders after ``after`` (keyset: a pass never reads an order
    twice, however many pages it reads); orders another pass holds are skipped, not waited
    for. One statement on the due orders' index (priority, next_run_at, id)."""
    o = sql.order_table()
    if after is None:
        keyset, params = "", {}
    else:
        priority, at, pk = after
        # After (priority, next_run_at, id) in the index's order: priority descending, then
        # next_run_at ascending with NULL (never scheduled) first, then id.
        run_at = f"o.{o['next_run_at']}"
        if at is None:
            same = f"({run_at} IS NULL AND o.{o.pk} > %(pk)s) OR {run_at} IS NOT NULL"
        else:
            same = (
                f"o.{o['next_run_at']} > %(at)s OR "
                f"(o.{o['next_run_at']} = %(at)s AND o.{o.pk} > %(pk)s)"
            )
        keyset = (
            f"AND (o.{o['priority']} < %(priority)s "
            f"OR (o.{o['priority']} = %(priority)s AND ({same})))"
        )
        params = {"priority": priority, "at": at, "pk": pk}
    columns = ", ".join(
        f"o.{o[f]}"
        for f in ("action", "link", "post_id", "link_hash", "remains", "per_call",
                  "interval_seconds", "next_run_at", "status", "priority", "execution_mode",
                  "params")
    )  # fmt: skip
    routing = sql.order_providers()
    providers = (
        "NULL::bigint[]"
        if routing is None
        else f"ARRAY(SELECT r.{routing.provider} FROM {routing.table} AS r "  # noqa: S608
        f"WHERE r.{routing.order} = o.{o.pk})"
    )
    rows = sql.rows(
        f"""
        SELECT o.{o.pk}, {columns},
               EXISTS (SELECT 1 FROM {sql.ORDER_STATS} AS s
                       WHERE s.order_id = o.{o.pk} AND s.troubled),
               {providers}
        FROM {o.table} AS o
        WHERE o.{o["status"]} IN {sql.literals(orders.active_statuses())}
          AND o.{o["paused_at"]} IS NULL
          AND (o.{o["next_run_at"]} IS NULL OR o.{o["next_run_at"]} <= %(now)s)
          AND o.{o["remains"]} > COALESCE((
              SELECT SUM(t.per_call) FROM {sql.TASKS} AS t
              WHERE t.order_id = o.{o.pk} AND t.status IN {sql.LIVE}
                AND t.membership_id IS NULL), 0)
          {keyset}
        ORDER BY o.{o["priority"]} DESC, o.{o["next_run_at"]} ASC NULLS FIRST, o.{o.pk}
        LIMIT %(size)s
        FOR UPDATE OF o SKIP LOCKED
        """,  # noqa: S608
        {"now": now, "size": size, **params},
    )
    return list(map(DueOrder._make, rows))
