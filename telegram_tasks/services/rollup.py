"""The rollup behind the dashboard and the metrics: tasks created, done and failed (by reason)
per action, provider and hour (``TaskHour``), done and failed per minute for the dashboard's
short ranges (``TaskMinute``, kept a few hours), and running totals of the same (``TaskTotal``,
per provider too).

Each housekeeping pass counts only what happened since the last one — tasks created (a range of
their ULID keys) and finished (a range of the finished index) up to a couple of minutes ago, so
transactions still committing are counted next time — and adds it: its cost follows the work of
the last minute, never the size of the ledger. A success whose ledger step lands later than that
(the rare recovery of a COMMIT whose transaction was lost) is in the ledger but not the charts.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from telegram_tasks.models import (
    GenerationPass,
    RollupMark,
    TaskHour,
    TaskMinute,
    TaskTotal,
    ulid_floor,
)
from telegram_tasks.services import sql
from telegram_tasks.services.liveness import records_pass

# Counted up to this long ago: transactions finishing a task commit within it.
LAG = timedelta(minutes=2)
# A fresh rollup starts this far back (what the dashboard shows at most).
FIRST = timedelta(hours=48)

# Done and failed per minute are kept this long: the dashboard's 6-hour range, and some.
MINUTES_KEPT = timedelta(hours=7)

HOURS = TaskHour._meta.db_table
MINUTES = TaskMinute._meta.db_table
TOTALS = TaskTotal._meta.db_table
MARK = RollupMark._meta.db_table


@records_pass("rollup")
def rollup(*, now: datetime) -> int:
    """Add what was created and finished since the last rollup; returns how many tasks were
    counted. One statement, under the mark's row lock (two passes never count twice)."""
    upto = now - LAG
    with transaction.atomic():
        mark, _ = RollupMark.objects.select_for_update().get_or_create(pk=1)
        created_from = mark.created_until or upto - FIRST
        finished_from = mark.finished_until or upto - FIRST
        if upto <= created_from and upto <= finished_from:
            return 0
        [(counted,)] = sql.rows(
            f"""
            WITH made AS (
                SELECT date_trunc('hour', created_at) AS hour, action,
                       'created' AS outcome, '' AS reason, provider_id, count(*) AS n
                FROM {sql.TASKS}
                WHERE id >= %(created_from)s AND id < %(created_upto)s
                GROUP BY 1, 2, 5
            ), finished AS MATERIALIZED (
                SELECT finished_at, action, status, failure_reason, provider_id
                FROM {sql.TASKS}
                WHERE finished_at >= %(finished_from)s AND finished_at < %(upto)s
            ), ended AS (
                SELECT date_trunc('hour', finished_at) AS hour, action, status AS outcome,
                       CASE WHEN status = {sql.FAILED} THEN failure_reason ELSE '' END AS reason,
                       provider_id, count(*) AS n
                FROM finished
                GROUP BY 1, 2, 3, 4, 5
            ), minutes AS (
                INSERT INTO {MINUTES} AS m (minute, action, outcome, reason, count)
                SELECT date_trunc('minute', finished_at), action, status,
                       CASE WHEN status = {sql.FAILED} THEN failure_reason ELSE '' END, count(*)
                FROM finished
                WHERE finished_at >= %(minutes_from)s
                GROUP BY 1, 2, 3, 4
                ON CONFLICT ON CONSTRAINT tg_task_minute_unique
                DO UPDATE SET count = m.count + EXCLUDED.count
                RETURNING 1
            ), pruned AS (
                DELETE FROM {MINUTES} WHERE minute < %(minutes_from)s RETURNING 1
            ), counted AS (
                SELECT * FROM made UNION ALL SELECT * FROM ended
            ), hours AS (
                INSERT INTO {HOURS} AS h (hour, action, outcome, reason, provider_id, count)
                SELECT hour, action, outcome, reason, provider_id, n FROM counted
                ON CONFLICT ON CONSTRAINT tg_task_hour_provider_unique
                DO UPDATE SET count = h.count + EXCLUDED.count
                RETURNING 1
            ), totals AS (
                INSERT INTO {TOTALS} AS t (action, outcome, reason, provider_id, count)
                SELECT action, outcome, reason, provider_id, sum(n) FROM counted
                GROUP BY 1, 2, 3, 4
                ON CONFLICT ON CONSTRAINT tg_task_total_provider_unique
                DO UPDATE SET count = t.count + EXCLUDED.count
                RETURNING 1
            )
            SELECT COALESCE(sum(n), 0) FROM counted
            """,  # noqa: S608
            {
                "created_from": ulid_floor(max(created_from, upto - FIRST)),
                "created_upto": ulid_floor(upto),
                "finished_from": max(finished_from, upto - FIRST),
                "upto": upto,
                "minutes_from": upto - MINUTES_KEPT,
            },
        )
        mark.created_until = mark.finished_until = upto
        mark.save(update_fields=["created_until", "finished_until"])
    return int(counted)


def record_pass(summary: Any, *, started_at: datetime) -> None:
    """One generation pass, as the dashboard charts it."""
    GenerationPass.objects.create(
        started_at=started_at,
        seconds=summary.seconds,
        examined=summary.examined,
        created=summary.created,
        starved_orders=summary.starved_orders,
        starved_slots=summary.starved_slots,
        unsubscribes=summary.unsubscribes,
        refusals=dict(summary.refusals),
    )
