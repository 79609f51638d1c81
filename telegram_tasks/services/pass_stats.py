"""What each generation pass found for the orders short of accounts (``OrderPassStats``): tasks
made, slots starved and refusals by reason, beside the last few passes and the slots starved per
ten minutes, which the operator's view charts."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from telegram_tasks.services import sql


@dataclass
class OrderStats:
    """What one pass found for one order."""

    created: int = 0
    starved: int = 0
    refusals: Counter[str] = field(default_factory=Counter)


# How many passes an order's stats keep (``OrderPassStats.recent``).
RECENT_PASSES = 5


def record_pass_stats(stats: dict[int, OrderStats], *, now: datetime) -> None:
    """One upsert for the orders a page found short of accounts (and those now fine again):
    what this pass found for each (tasks made, slots starved, refusals by reason), beside the
    last few such passes and the slots starved in all of them."""
    if not stats:
        return
    rows = json.dumps(
        [
            {"order_id": pk, "created": s.created, "starved": s.starved, "refusals": s.refusals}
            for pk, s in sorted(stats.items())
        ]
    )
    sql.fetch(
        f"""
        INSERT INTO {sql.ORDER_STATS} AS s (order_id, last_pass_at, created, starved_slots,
                                            refusals, troubled, starved_total, recent,
                                            starved_recent)
        SELECT v.order_id, %(now)s, v.created, v.starved, v.refusals,
               v.starved > 0, v.starved,
               jsonb_build_array(jsonb_build_object('at', %(now)s::timestamptz, 'created',
                   v.created, 'starved', v.starved, 'refusals', v.refusals)),
               jsonb_build_object(%(bucket)s::text, v.starved)
        FROM jsonb_to_recordset(%(rows)s::jsonb)
             AS v(order_id bigint, created int, starved int, refusals jsonb)
        ON CONFLICT (order_id) DO UPDATE SET
            last_pass_at = excluded.last_pass_at,
            created = excluded.created,
            starved_slots = excluded.starved_slots,
            refusals = excluded.refusals,
            troubled = excluded.troubled,
            starved_total = s.starved_total + excluded.starved_slots,
            recent = jsonb_path_query_array(excluded.recent || s.recent, %(keep)s::jsonpath),
            -- Added to the current ten minutes; buckets older than two hours dropped.
            starved_recent = (
                SELECT COALESCE(jsonb_object_agg(b.key, b.value), '{{}}')
                FROM jsonb_each(s.starved_recent || jsonb_build_object(%(bucket)s::text,
                     COALESCE((s.starved_recent->>%(bucket)s::text)::bigint, 0)
                     + excluded.starved_slots)) AS b
                WHERE b.key::bigint > %(oldest)s
            )
        """,  # noqa: S608
        {
            "rows": rows,
            "now": now,
            "keep": f"$[0 to {RECENT_PASSES - 1}]",
            "bucket": str(starved_bucket(now)),
            "oldest": starved_bucket(now) - STARVED_BUCKETS * STARVED_BUCKET_SECONDS,
        },
    )


# ``OrderPassStats.starved_recent``: slots starved per STARVED_BUCKET_SECONDS, the last
# STARVED_BUCKETS of them.
STARVED_BUCKET_SECONDS = 600
STARVED_BUCKETS = 12


def starved_bucket(moment: datetime) -> int:
    """The Unix seconds at which ``moment``'s ten minutes began."""
    return int(moment.timestamp()) // STARVED_BUCKET_SECONDS * STARVED_BUCKET_SECONDS
