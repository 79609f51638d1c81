"""Turns: an order whose tasks take its params in turn (a mix of emoji) counts the tasks made
for it, so that each new task takes the next value and the mix spreads evenly over all of the
order's tasks, whichever pass makes them."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable

from telegram_tasks.services import sql


def take_turns(tasks: Iterable[tuple[int, str]]) -> dict[str, int]:
    """The turn of each new task, given as (order id, task id): how many tasks its order had
    before it, over every pass (the order's ``OrderTurn``), the order's new tasks in id order.
    One upsert for all; the caller holds the orders' row locks (generation), so two passes
    never take one turn."""
    by_order: dict[int, list[str]] = defaultdict(list)
    for order_id, task_id in tasks:
        by_order[order_id].append(task_id)
    if not by_order:
        return {}
    counts = json.dumps([{"order_id": pk, "n": len(ids)} for pk, ids in sorted(by_order.items())])
    made = dict(
        sql.rows(
            f"""
            INSERT INTO {sql.ORDER_TURNS} AS t (order_id, made)
            SELECT v.order_id, v.n FROM jsonb_to_recordset(%s::jsonb) AS v(order_id bigint, n int)
            ON CONFLICT (order_id) DO UPDATE SET made = t.made + excluded.made
            RETURNING t.order_id, t.made
            """,  # noqa: S608
            [counts],
        )
    )
    return {
        task_id: made[pk] - len(ids) + k
        for pk, ids in by_order.items()
        for k, task_id in enumerate(sorted(ids))
    }
