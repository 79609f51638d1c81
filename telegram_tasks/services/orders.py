"""Every write of the services to the order model, in one place: delivering units, starting and
advancing orders (generation), stopping, cancelling, pausing and resuming them, dropping an
emoji a channel refuses. Statements only; the services that call them decide when (and lock
tasks before orders)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from telegram_tasks.conf import get_order_model
from telegram_tasks.services import sql


def _statuses() -> Any:
    return get_order_model().Status


def active_statuses() -> list[str]:
    return [s.value for s in get_order_model().ACTIVE]


def final_statuses() -> list[str]:
    active = set(active_statuses())
    return [s.value for s in _statuses() if s.value not in active]


def lock_orders_of_tasks(task_ids: Sequence[str]) -> None:
    """Lock the orders of these tasks in id order: concurrent batches over the same orders queue
    instead of deadlocking (tasks are locked before orders, everywhere)."""
    o = sql.order_table()
    sql.fetch(
        f"SELECT 1 FROM {o.table} WHERE {o.pk} IN "  # noqa: S608
        f"(SELECT order_id FROM {sql.TASKS} WHERE id = ANY(%s)) ORDER BY {o.pk} FOR UPDATE",
        [list(task_ids)],
    )


def lock_tasks_then_orders(task_ids: Sequence[str], *, provider_id: int | None = None) -> None:
    """Lock these tasks (of ``provider_id``, when given), then their orders, each in id order,
    in one statement: the order every path takes its locks in, so concurrent batches queue
    instead of deadlocking. (The first subquery locks every task before the second starts.)"""
    o = sql.order_table()
    mine = "" if provider_id is None else "AND provider_id = %(provider)s "
    sql.fetch(
        f"""
        WITH t AS MATERIALIZED (
            SELECT id, order_id FROM {sql.TASKS} WHERE id = ANY(%(ids)s) {mine}
            ORDER BY id FOR UPDATE
        ), o AS MATERIALIZED (
            SELECT {o.pk} FROM {o.table} WHERE {o.pk} IN (SELECT order_id FROM t)
            ORDER BY {o.pk} FOR UPDATE
        )
        SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM o)
        """,  # noqa: S608
        {"ids": list(task_ids), "provider": provider_id},
    )


def deliver_sql(done: str) -> str:
    """A CTE step (``orders_delivered``) that takes the units of the CTE named ``done``
    (order_id, per_call; with an order model that has ``start_count``, also id and
    start_count) off their orders, never below zero, and completes an active order at zero
    (its parameters: ``deliver_params``); an order without a start count takes the batch's
    first."""
    o = sql.order_table()
    # The first start count of the batch (by task id) where the order has none yet.
    first, keep = "", ""
    if o.has("start_count"):
        first = (
            ", (array_agg(start_count ORDER BY id) FILTER (WHERE start_count IS NOT NULL))[1]"
            " AS start_count"
        )
        keep = f"{o['start_count']} = COALESCE(o.{o['start_count']}, units.start_count),"
    return f"""
        units AS (
            SELECT order_id, SUM(per_call) AS units{first} FROM {done} GROUP BY order_id
        ), orders_delivered AS (
            UPDATE {o.table} AS o
            SET {keep}
                {o["remains"]} = GREATEST(o.{o["remains"]} - units.units, 0),
                {o["status"]} = CASE
                    WHEN o.{o["remains"]} - units.units <= 0
                         AND o.{o["status"]} = ANY(%(order_active)s) THEN %(order_completed)s
                    ELSE o.{o["status"]} END,
                {o["updated_at"]} = %(now)s
            FROM units WHERE o.{o.pk} = units.order_id
            RETURNING o.{o.pk}
        )"""  # noqa: S608


def deliver_params(now: Any) -> dict[str, Any]:
    """The parameters of ``deliver_sql`` (``now``: given here, or by the caller as "now")."""
    params = {"order_active": active_statuses(), "order_completed": _statuses().COMPLETED.value}
    if now is not None:
        params["now"] = now
    return params


def orders_advance(updates: list[dict[str, Any]], *, now: datetime) -> None:
    """Generation: each order's ``next_run_at`` and ``status`` (AWAITING → IN_PROGRESS) in one
    statement; ``updates`` holds {"id", "next_run_at" (ISO), "status"}."""
    o = sql.order_table()
    sql.fetch(
        f"""
        UPDATE {o.table} AS o
        SET {o["next_run_at"]} = v.next_run_at, {o["status"]} = v.status,
            {o["updated_at"]} = %s
        FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, next_run_at timestamptz, status varchar)
        WHERE o.{o.pk} = v.id
        """,  # noqa: S608
        [now, json.dumps(updates)],
    )


def started_statuses() -> dict[str, str]:
    """{status before: status once the order got its first task} (the others stay)."""
    statuses = _statuses()
    return {statuses.AWAITING.value: statuses.IN_PROGRESS.value}


def orders_mark_stopped(order_ids: Sequence[int], *, now: datetime) -> list[int]:
    """Active orders end PARTIAL (something was delivered) or CANCELED; returns those changed."""
    o = sql.order_table()
    statuses = _statuses()
    stopped = sql.fetch(
        f"""
        WITH locked AS (
            SELECT {o.pk} AS id FROM {o.table}
            WHERE {o.pk} = ANY(%(ids)s) AND {o["status"]} = ANY(%(active)s)
            ORDER BY {o.pk} FOR UPDATE
        )
        UPDATE {o.table} AS o
        SET {o["status"]} = CASE WHEN o.{o["remains"]} < o.{o["quantity"]}
                                 THEN %(partial)s ELSE %(canceled)s END,
            {o["updated_at"]} = %(now)s
        FROM locked WHERE o.{o.pk} = locked.id
        RETURNING o.{o.pk} AS id
        """,  # noqa: S608
        {
            "ids": list(order_ids),
            "active": active_statuses(),
            "partial": statuses.PARTIAL.value,
            "canceled": statuses.CANCELED.value,
            "now": now,
        },
    )
    return [r["id"] for r in stopped]


def orders_mark_canceled(order_ids: Sequence[int], *, now: datetime) -> list[int]:
    """Orders not yet final become CANCELED (rows locked in id order); returns those changed."""
    o = sql.order_table()
    changed = sql.fetch(
        f"""
        WITH locked AS (
            SELECT {o.pk} AS id FROM {o.table}
            WHERE {o.pk} = ANY(%(ids)s) AND {o["status"]} = ANY(%(active)s)
            ORDER BY {o.pk} FOR UPDATE
        )
        UPDATE {o.table} AS o SET {o["status"]} = %(canceled)s, {o["updated_at"]} = %(now)s
        FROM locked WHERE o.{o.pk} = locked.id
        RETURNING o.{o.pk} AS id
        """,  # noqa: S608
        {
            "ids": list(order_ids),
            "active": active_statuses(),
            "canceled": _statuses().CANCELED.value,
            "now": now,
        },
    )
    return [r["id"] for r in changed]


def orders_mark_paused(order_ids: Sequence[int], *, now: datetime) -> list[int]:
    """Active orders not paused yet get ``paused_at``; returns those changed."""
    o = sql.order_table()
    changed = sql.fetch(
        f"""
        WITH locked AS (
            SELECT {o.pk} AS id FROM {o.table}
            WHERE {o.pk} = ANY(%(ids)s) AND {o["status"]} = ANY(%(active)s)
              AND {o["paused_at"]} IS NULL
            ORDER BY {o.pk} FOR UPDATE
        )
        UPDATE {o.table} AS o SET {o["paused_at"]} = %(now)s, {o["updated_at"]} = %(now)s
        FROM locked WHERE o.{o.pk} = locked.id
        RETURNING o.{o.pk} AS id
        """,  # noqa: S608
        {"ids": list(order_ids), "active": active_statuses(), "now": now},
    )
    return [r["id"] for r in changed]


def orders_mark_resumed(order_ids: Sequence[int], *, now: datetime) -> list[int]:
    """Paused orders are due again at once; returns those changed."""
    o = sql.order_table()
    changed = sql.fetch(
        f"""
        UPDATE {o.table} SET {o["paused_at"]} = NULL, {o["next_run_at"]} = %(now)s,
               {o["updated_at"]} = %(now)s
        WHERE {o.pk} = ANY(%(ids)s) AND {o["paused_at"]} IS NOT NULL
        RETURNING {o.pk} AS id
        """,  # noqa: S608
        {"ids": list(order_ids), "now": now},
    )
    return [r["id"] for r in changed]


def orders_drop_reactions(
    refused: Sequence[tuple[int, str]], *, now: datetime
) -> tuple[list[tuple[int, str]], list[int]]:
    """Active orders lose the emoji their channel refused from ``params["reactions"]`` (rows
    locked in id order). Returns the (order, emoji) pairs dropped and the orders left with no
    emoji, which keep their last one: stopping them is the caller's."""
    o = sql.order_table()
    by_order: dict[int, set[str]] = {}
    for order_id, emoji in refused:
        by_order.setdefault(order_id, set()).add(emoji)
    rows = sql.rows(
        f"SELECT {o.pk}, {o['params']} FROM {o.table} "  # noqa: S608
        f"WHERE {o.pk} = ANY(%s) AND {o['status']} = ANY(%s) ORDER BY {o.pk} FOR UPDATE",
        [sorted(by_order), active_statuses()],
    )
    dropped: list[tuple[int, str]] = []
    emptied: list[int] = []
    updates = []
    for pk, raw in rows:
        params = json.loads(raw) if isinstance(raw, str) else raw
        reactions = params.get("reactions") if isinstance(params, dict) else None
        if not isinstance(reactions, list):
            continue
        gone = [e for e in reactions if e in by_order[pk]]
        if not gone:
            continue  # already dropped (a second report of the same refusal)
        kept = [e for e in reactions if e not in by_order[pk]]
        if not kept:
            emptied.append(pk)
            continue
        dropped += [(pk, e) for e in gone]
        updates.append({"id": pk, "params": {**params, "reactions": kept}})
    if updates:
        sql.fetch(
            f"""
            UPDATE {o.table} AS o SET {o["params"]} = v.params, {o["updated_at"]} = %s
            FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, params jsonb)
            WHERE o.{o.pk} = v.id
            """,  # noqa: S608
            [now, json.dumps(updates)],
        )
    return dropped, emptied


def orders_note_start_count(counts: Sequence[tuple[int, str]]) -> None:
    """(order id, a report's ``data`` as JSON) of reports that are not ``done``: an order
    without a start count takes the first of them that carries one. Only for an order model
    with ``start_count`` (a done report's is taken by its own statement, ``deliver_sql``)."""
    o = sql.order_table()
    if not counts or not o.has("start_count"):
        return
    sql.fetch(
        f"""
        WITH v AS (
            SELECT DISTINCT ON (v.order_id) v.order_id, {sql.start_count_sql("v.data")} AS n
            FROM jsonb_to_recordset(%s::jsonb) WITH ORDINALITY AS v(order_id bigint, data jsonb, i)
            WHERE {sql.start_count_sql("v.data")} IS NOT NULL
            ORDER BY v.order_id, v.i
        )
        UPDATE {o.table} AS o SET {o["start_count"]} = v.n
        FROM v WHERE o.{o.pk} = v.order_id AND o.{o["start_count"]} IS NULL
        """,  # noqa: S608
        [json.dumps([{"order_id": i, "data": json.loads(d)} for i, d in counts])],
    )
